package desired

import (
	"hash/maphash"
	"iter"
	"maps"
	"reflect"
	"slices"
)

// A Map has a power of two shards, at most maxShards, about shardSize
// entries each: a change to one key of a 5,000-entry Map copies one shard
// (~20 entries) and the shard table (256 pointers) instead of the whole
// map, and a small Map (most IP sets) is one plain map.
const (
	maxShards = 256
	shardSize = 16
)

// mapSeed places keys in shards; every Map in the process uses it, so that
// a Map and its edits agree on where a key is.
var mapSeed = maphash.MakeSeed()

// Map is an immutable map that a changed copy shares in part: its entries
// are spread over shards by key hash, and an edit copies only the shards it
// changes. It is how a State's producer hands out a new state with a few
// objects changed without copying every object (the copy of whole maps per
// change was most of what the agent allocated; see
// docs/benchmarks-agent.md).
//
// The zero Map is empty and ready to use. A Map value is never written
// once built: Set and Delete replace the receiver's shard table with a new
// one, so copies of the value made earlier keep their contents. Equal maps
// need not be the same; Same reports whether two Maps are the same value.
type Map[K comparable, V any] struct {
	shards []map[K]V // len 0 (empty) or a power of two
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

// shardOf returns k's shard among n (a power of two).
func shardOf[K comparable](k K, n int) int {
	if n == 1 {
		return 0
	}
	return int(maphash.Comparable(mapSeed, k) & uint64(n-1))
}

// shardsFor returns the shard count for n entries.
func shardsFor(n int) int {
	c := 1
	for c < maxShards && c*shardSize < n {
		c *= 2
	}
	return c
}

// Get returns the value of k and whether k is present.
func (m Map[K, V]) Get(k K) (V, bool) {
	if len(m.shards) == 0 {
		var zero V
		return zero, false
	}
	v, ok := m.shards[shardOf(k, len(m.shards))][k]
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
	return len(m.shards) == len(o.shards) && (len(m.shards) == 0 || &m.shards[0] == &o.shards[0])
}

// Diff yields each key present in only one of m and old and, when eq is
// not nil, each key in both whose values eq says differ. Shards m shares
// with old are skipped, so the changes of an edit cost the shards it
// copied, not the size of the Map.
func (m Map[K, V]) Diff(old Map[K, V], eq func(a, b V) bool) iter.Seq[K] {
	return func(yield func(K) bool) {
		if m.Same(old) {
			return
		}
		if len(m.shards) != len(old.shards) { // resharded: compare whole
			_ = diffEntries(m.All(), old.Get, eq, yield) && diffEntries(old.All(), m.Get, nil, yield)
			return
		}
		for i, sh := range m.shards {
			was := old.shards[i]
			if sameMap(sh, was) {
				continue
			}
			if !diffEntries(maps.All(sh), lookup(was), eq, yield) || !diffEntries(maps.All(was), lookup(sh), nil, yield) {
				return
			}
		}
	}
}

// sameMap reports whether a and b are the same map object (shards shared).
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// diffEntries yields each key of from that other lacks or (eq not nil)
// holds with a value eq says differs; it reports false when yield asked
// to stop.
func diffEntries[K comparable, V any](from iter.Seq2[K, V], other func(K) (V, bool), eq func(a, b V) bool, yield func(K) bool) bool {
	for k, v := range from {
		w, ok := other(k)
		if (!ok || (eq != nil && !eq(v, w))) && !yield(k) {
			return false
		}
	}
	return true
}

func lookup[K comparable, V any](m map[K]V) func(K) (V, bool) {
	return func(k K) (V, bool) { v, ok := m[k]; return v, ok }
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
// by eq: Diff finds nothing (it skips the shards m shares with o).
func (m Map[K, V]) EqualFunc(o Map[K, V], eq func(a, b V) bool) bool {
	if m.n != o.n {
		return false
	}
	for range m.Diff(o, eq) {
		return false
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
	base   []map[K]V // the shards edited from; never written
	shards []map[K]V // nil until the first change
	owned  []bool    // shards[i] is this edit's own copy
	n      int
}

// shard returns k's shard, made the edit's own to write.
func (e *MapEdit[K, V]) shard(k K) map[K]V {
	if e.shards == nil {
		if len(e.base) == 0 {
			e.shards = []map[K]V{{}}
			e.owned = []bool{true}
		} else {
			e.shards = slices.Clone(e.base)
			e.owned = make([]bool, len(e.base))
		}
	}
	i := shardOf(k, len(e.shards))
	if !e.owned[i] {
		e.shards[i] = maps.Clone(e.shards[i])
		e.owned[i] = true
	}
	return e.shards[i]
}

// Grow prepares an edit of an empty Map, before its first change, for
// about n entries: they are spread over the shards that size needs, each
// sized for its share, so that filling a new IP set neither rehashes a
// growing map nor reshards at Map. Any other edit is left as it is.
func (e *MapEdit[K, V]) Grow(n int) {
	if e.shards != nil || len(e.base) != 0 || n <= shardSize {
		return
	}
	c := shardsFor(n)
	e.shards, e.owned = make([]map[K]V, c), make([]bool, c)
	for i := range e.shards {
		e.shards[i] = make(map[K]V, n/c+1)
		e.owned[i] = true
	}
}

// Has reports whether the edited Map has k.
func (e *MapEdit[K, V]) Has(k K) bool { return e.has(k) }

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
	if len(sh) == 0 {
		return false
	}
	_, ok := sh[shardOf(k, len(sh))][k]
	return ok
}

// Map returns the edited Map. The edit may go on; later changes copy
// their shards again and do not reach the Map returned. A Map that grew
// past its shards' size (or shrank well below it) is spread over a new
// shard count, which copies it whole: its size doubled or halved since
// that last happened.
func (e *MapEdit[K, V]) Map() Map[K, V] {
	if e.shards == nil {
		return Map[K, V]{shards: e.base, n: e.n}
	}
	if want := shardsFor(e.n); want > len(e.shards) || want*4 <= len(e.shards) {
		e.reshard(want)
	}
	m := Map[K, V]{shards: e.shards, n: e.n}
	if e.n == 0 {
		m.shards = nil
	}
	e.base, e.shards, e.owned = m.shards, nil, nil
	return m
}

// reshard spreads the edit's entries over n shards.
func (e *MapEdit[K, V]) reshard(n int) {
	shards := make([]map[K]V, n)
	for i := range shards {
		shards[i] = make(map[K]V, e.n/n+1)
	}
	for _, sh := range e.shards {
		for k, v := range sh {
			shards[shardOf(k, n)][k] = v
		}
	}
	e.shards = shards
	e.owned = nil // not used again: Map follows
}
