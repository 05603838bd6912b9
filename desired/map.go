package desired

import (
	"hash/maphash"
	"iter"
	"maps"
)

// mapShards is the number of shards of a Map. A change to one key of a
// 5,000-entry Map copies one shard (~20 entries) and the shard table
// (256 pointers) instead of the whole map.
const mapShards = 256

// mapSeed places keys in shards; every Map in the process uses it, so that
// a Map and its edits agree on where a key is.
var mapSeed = maphash.MakeSeed()

// Map is an immutable map that a changed copy shares in part: its entries
// are spread over shards by key hash, and an edit copies only the shards it
// changes. It is how a State's producer hands out a new state with a few
// policies changed without copying every policy (the copy of a whole map
// per change was most of what the agent allocated; see
// docs/benchmarks-agent.md).
//
// The zero Map is empty and ready to use. A Map value is never written
// once built: Set and Delete replace the receiver's shard table with a new
// one, so copies of the value made earlier keep their contents. Equal maps
// need not be the same; Same reports whether two Maps are the same value.
type Map[K comparable, V any] struct {
	shards *[mapShards]map[K]V
	n      int
}

// MapOf returns a Map holding m's entries. m is not kept.
func MapOf[K comparable, V any](m map[K]V) Map[K, V] {
	var e MapEdit[K, V]
	for k, v := range m {
		e.Set(k, v)
	}
	return e.Map()
}

func shardOf[K comparable](k K) int {
	return int(maphash.Comparable(mapSeed, k) % mapShards)
}

// Get returns the value of k and whether k is present.
func (m Map[K, V]) Get(k K) (V, bool) {
	if m.shards == nil {
		var zero V
		return zero, false
	}
	v, ok := m.shards[shardOf(k)][k]
	return v, ok
}

// Has reports whether k is present.
func (m Map[K, V]) Has(k K) bool {
	_, ok := m.Get(k)
	return ok
}

// Len returns the number of entries.
func (m Map[K, V]) Len() int { return m.n }

// All yields every entry, in no particular order.
func (m Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		if m.shards == nil {
			return
		}
		for _, sh := range m.shards {
			for k, v := range sh {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// Keys yields every key, in no particular order.
func (m Map[K, V]) Keys() iter.Seq[K] {
	return func(yield func(K) bool) {
		for k := range m.All() {
			if !yield(k) {
				return
			}
		}
	}
}

// Same reports whether m and o are the same value (the same shards), which
// implies equal contents. Two empty Maps are the same.
func (m Map[K, V]) Same(o Map[K, V]) bool {
	return m.shards == o.shards
}

// Clone returns a Map whose values are copied with clone.
func (m Map[K, V]) Clone(clone func(V) V) Map[K, V] {
	var e MapEdit[K, V]
	for k, v := range m.All() {
		e.Set(k, clone(v))
	}
	return e.Map()
}

// EqualFunc reports whether m and o have the same keys with values equal
// by eq.
func (m Map[K, V]) EqualFunc(o Map[K, V], eq func(a, b V) bool) bool {
	if m.n != o.n {
		return false
	}
	if m.Same(o) {
		return true
	}
	for k, v := range m.All() {
		w, ok := o.Get(k)
		if !ok || !eq(v, w) {
			return false
		}
	}
	return true
}

// Set sets k to v in m. Other copies of m are unchanged. A series of
// changes is cheaper through Edit.
func (m *Map[K, V]) Set(k K, v V) {
	e := m.Edit()
	e.Set(k, v)
	*m = e.Map()
}

// Delete removes k from m, if present. Other copies of m are unchanged.
func (m *Map[K, V]) Delete(k K) {
	e := m.Edit()
	e.Delete(k)
	*m = e.Map()
}

// Edit returns an edit of m: a series of Sets and Deletes whose result
// Map returns, copying each shard at most once. m is never written.
func (m Map[K, V]) Edit() *MapEdit[K, V] {
	return &MapEdit[K, V]{base: m.shards, n: m.n}
}

// MapEdit builds a Map from another one. The zero MapEdit starts from an
// empty Map.
type MapEdit[K comparable, V any] struct {
	base   *[mapShards]map[K]V // the shards edited from; never written
	shards *[mapShards]map[K]V // nil until the first change
	owned  [mapShards]bool     // shards[i] is this edit's own copy
	n      int
}

// shard returns k's shard, made the edit's own to write.
func (e *MapEdit[K, V]) shard(k K) map[K]V {
	if e.shards == nil {
		e.shards = new([mapShards]map[K]V)
		if e.base != nil {
			*e.shards = *e.base
		}
	}
	i := shardOf(k)
	if !e.owned[i] {
		if old := e.shards[i]; old != nil {
			e.shards[i] = maps.Clone(old)
		} else {
			e.shards[i] = map[K]V{}
		}
		e.owned[i] = true
	}
	return e.shards[i]
}

// Set sets k to v.
func (e *MapEdit[K, V]) Set(k K, v V) {
	sh := e.shard(k)
	if _, ok := sh[k]; !ok {
		e.n++
	}
	sh[k] = v
}

// Delete removes k, if present.
func (e *MapEdit[K, V]) Delete(k K) {
	if !e.has(k) {
		return
	}
	delete(e.shard(k), k)
	e.n--
}

func (e *MapEdit[K, V]) has(k K) bool {
	sh := e.shards
	if sh == nil {
		sh = e.base
	}
	if sh == nil {
		return false
	}
	_, ok := sh[shardOf(k)][k]
	return ok
}

// Map returns the edited Map. The edit may go on; later changes copy
// their shards again and do not reach the Map returned.
func (e *MapEdit[K, V]) Map() Map[K, V] {
	if e.shards == nil {
		return Map[K, V]{shards: e.base, n: e.n}
	}
	m := Map[K, V]{shards: e.shards, n: e.n}
	e.base, e.shards, e.owned = e.shards, nil, [mapShards]bool{}
	return m
}
