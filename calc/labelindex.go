package calc

import (
	"slices"

	"github.com/brindle-net/brindle/selector"
)

// labelIndex keeps, for every selector it holds, the set of items the
// selector matches, and reports each change of that relation through
// onMatch as it happens. Items have their own labels and an ordered list of
// parents (profiles) whose labels they inherit: an item's effective value
// for a key is its own, else the first parent's that has the key. A parent
// may be named before it exists; it then has no labels.
//
// Work is proportional to what changes: a new selector is evaluated only
// against the items that carry one of its requirements (see requirements)
// — or all items when it has none — and a changed item only against the
// selectors whose requirement its effective labels meet, the selectors
// without requirements, and the ones it matched before.
//
// onMatch must not call back into the index.
type labelIndex[T comparable] struct {
	items   map[T]*idxItem[T]
	parents map[string]*idxParent[T]
	sels    map[string]*idxSel[T]

	itemsByLabel   map[kv]map[T]struct{}
	parentsByLabel map[kv]map[string]struct{}
	selsByLabel    map[kv]map[string]struct{}
	unconstrained  map[string]struct{}

	onMatch func(selID string, item T, matched bool)
	view    labelView[T]
}

type kv struct{ k, v string }

type idxItem[T comparable] struct {
	labels  map[string]string
	parents []*idxParent[T]
	// matches are the IDs of the selectors matching the item: usually
	// few, so a slice (a map per item costs far more at 100,000 items).
	matches []string
}

func (it *idxItem[T]) matched(sid string) bool { return slices.Contains(it.matches, sid) }

func (it *idxItem[T]) addMatch(sid string) { it.matches = append(it.matches, sid) }

func (it *idxItem[T]) removeMatch(sid string) {
	if i := slices.Index(it.matches, sid); i >= 0 {
		last := len(it.matches) - 1
		it.matches[i] = it.matches[last]
		it.matches = it.matches[:last]
		if last == 0 {
			it.matches = nil
		}
	}
}

type idxParent[T comparable] struct {
	name   string
	labels map[string]string
	// items are the items naming this parent.
	items map[T]struct{}
}

type idxSel[T comparable] struct {
	sel     *selector.Selector
	req     *requirement
	matches map[T]struct{}
}

// labelView is an item's effective labels, as selector.Labels.
type labelView[T comparable] struct {
	own     map[string]string
	parents []*idxParent[T]
}

func (l *labelView[T]) Get(k string) (string, bool) {
	if v, ok := l.own[k]; ok {
		return v, true
	}
	for _, p := range l.parents {
		if v, ok := p.labels[k]; ok {
			return v, true
		}
	}
	return "", false
}

func newLabelIndex[T comparable](onMatch func(selID string, item T, matched bool)) *labelIndex[T] {
	return &labelIndex[T]{
		items:          map[T]*idxItem[T]{},
		parents:        map[string]*idxParent[T]{},
		sels:           map[string]*idxSel[T]{},
		itemsByLabel:   map[kv]map[T]struct{}{},
		parentsByLabel: map[kv]map[string]struct{}{},
		selsByLabel:    map[kv]map[string]struct{}{},
		unconstrained:  map[string]struct{}{},
		onMatch:        onMatch,
	}
}

func addTo[K, V comparable](m map[K]map[V]struct{}, k K, v V) {
	s := m[k]
	if s == nil {
		s = map[V]struct{}{}
		m[k] = s
	}
	s[v] = struct{}{}
}

func removeFrom[K, V comparable](m map[K]map[V]struct{}, k K, v V) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// UpdateParent sets a parent's labels; nil labels mean the parent does not
// exist (an item naming it inherits nothing). Items inheriting from it are
// re-evaluated.
func (x *labelIndex[T]) UpdateParent(name string, labels map[string]string) {
	p := x.parents[name]
	if p == nil {
		if labels == nil {
			return
		}
		p = &idxParent[T]{name: name, items: map[T]struct{}{}}
		x.parents[name] = p
	}
	for k, v := range p.labels {
		removeFrom(x.parentsByLabel, kv{k, v}, name)
	}
	p.labels = labels
	for k, v := range labels {
		addTo(x.parentsByLabel, kv{k, v}, name)
	}
	for id := range p.items {
		x.reevaluate(id, x.items[id])
	}
	x.gcParent(p)
}

func (x *labelIndex[T]) gcParent(p *idxParent[T]) {
	if p.labels == nil && len(p.items) == 0 {
		delete(x.parents, p.name)
	}
}

// UpdateItem adds or replaces an item. labels must not be modified by the
// caller afterwards.
func (x *labelIndex[T]) UpdateItem(id T, labels map[string]string, parents []string) {
	it := x.items[id]
	if it == nil {
		it = &idxItem[T]{}
		x.items[id] = it
	} else {
		x.unlinkItem(id, it)
	}
	it.labels = labels
	for k, v := range labels {
		addTo(x.itemsByLabel, kv{k, v}, id)
	}
	it.parents = it.parents[:0]
	for _, name := range parents {
		p := x.parents[name]
		if p == nil {
			p = &idxParent[T]{name: name, items: map[T]struct{}{}}
			x.parents[name] = p
		}
		if _, dup := p.items[id]; dup {
			continue // a repeated parent adds nothing
		}
		p.items[id] = struct{}{}
		it.parents = append(it.parents, p)
	}
	x.reevaluate(id, it)
}

// unlinkItem removes an item's labels and parents from the indexes.
func (x *labelIndex[T]) unlinkItem(id T, it *idxItem[T]) {
	for k, v := range it.labels {
		removeFrom(x.itemsByLabel, kv{k, v}, id)
	}
	for _, p := range it.parents {
		delete(p.items, id)
		x.gcParent(p)
	}
}

// DeleteItem removes an item, reporting the end of each of its matches.
func (x *labelIndex[T]) DeleteItem(id T) {
	it := x.items[id]
	if it == nil {
		return
	}
	for _, sid := range it.matches {
		delete(x.sels[sid].matches, id)
		x.onMatch(sid, id, false)
	}
	x.unlinkItem(id, it)
	delete(x.items, id)
}

// effective calls f for each of an item's effective labels.
func (x *labelIndex[T]) effective(it *idxItem[T], f func(kv)) {
	for k, v := range it.labels {
		f(kv{k, v})
	}
	for i, p := range it.parents {
	labels:
		for k, v := range p.labels {
			if _, ok := it.labels[k]; ok {
				continue
			}
			for _, q := range it.parents[:i] {
				if _, ok := q.labels[k]; ok {
					continue labels
				}
			}
			f(kv{k, v})
		}
	}
}

func (x *labelIndex[T]) eval(s *selector.Selector, it *idxItem[T]) bool {
	x.view.own, x.view.parents = it.labels, it.parents
	ok := s.EvaluateLabels(&x.view)
	x.view.own, x.view.parents = nil, nil
	return ok
}

// reevaluate brings an item's matches up to date.
func (x *labelIndex[T]) reevaluate(id T, it *idxItem[T]) {
	// Selectors already matching are checked first (they may stop
	// matching); the others only when they might match.
	for i := len(it.matches) - 1; i >= 0; i-- {
		sid := it.matches[i]
		if s := x.sels[sid]; !x.eval(s.sel, it) {
			it.removeMatch(sid)
			delete(s.matches, id)
			x.onMatch(sid, id, false)
		}
	}
	check := func(sid string) {
		if it.matched(sid) {
			return
		}
		if s := x.sels[sid]; x.eval(s.sel, it) {
			it.addMatch(sid)
			s.matches[id] = struct{}{}
			x.onMatch(sid, id, true)
		}
	}
	for sid := range x.unconstrained {
		check(sid)
	}
	x.effective(it, func(l kv) {
		for sid := range x.selsByLabel[l] {
			check(sid)
		}
	})
}

// UpdateSelector adds a selector under id, or replaces the one there.
// Replacing a selector by an equal one does nothing.
func (x *labelIndex[T]) UpdateSelector(id string, sel *selector.Selector) {
	if old := x.sels[id]; old != nil {
		if old.sel.UniqueID() == sel.UniqueID() {
			return
		}
		x.DeleteSelector(id)
	}
	s := &idxSel[T]{sel: sel, matches: map[T]struct{}{}}
	x.sels[id] = s
	s.req = x.bestRequirement(sel)
	if s.req == nil {
		x.unconstrained[id] = struct{}{}
		for iid, it := range x.items {
			x.consider(id, s, iid, it)
		}
		return
	}
	for _, v := range s.req.values {
		l := kv{s.req.key, v}
		addTo(x.selsByLabel, l, id)
		for iid := range x.itemsByLabel[l] {
			x.consider(id, s, iid, x.items[iid])
		}
		for pname := range x.parentsByLabel[l] {
			for iid := range x.parents[pname].items {
				x.consider(id, s, iid, x.items[iid])
			}
		}
	}
}

func (x *labelIndex[T]) consider(sid string, s *idxSel[T], id T, it *idxItem[T]) {
	if _, done := s.matches[id]; done || !x.eval(s.sel, it) {
		return
	}
	s.matches[id] = struct{}{}
	it.addMatch(sid)
	x.onMatch(sid, id, true)
}

// bestRequirement picks the requirement with the fewest candidate items.
func (x *labelIndex[T]) bestRequirement(sel *selector.Selector) *requirement {
	var best *requirement
	bestCost := 0
	reqs := requirements(sel)
	for i := range reqs {
		r := &reqs[i]
		cost := 0
		for _, v := range r.values {
			l := kv{r.key, v}
			cost += len(x.itemsByLabel[l])
			for pname := range x.parentsByLabel[l] {
				cost += len(x.parents[pname].items)
			}
		}
		if best == nil || cost < bestCost {
			best, bestCost = r, cost
		}
	}
	return best
}

// DeleteSelector removes a selector, reporting the end of each match.
func (x *labelIndex[T]) DeleteSelector(id string) {
	s := x.sels[id]
	if s == nil {
		return
	}
	for iid := range s.matches {
		x.items[iid].removeMatch(id)
		x.onMatch(id, iid, false)
	}
	if s.req == nil {
		delete(x.unconstrained, id)
	} else {
		for _, v := range s.req.values {
			removeFrom(x.selsByLabel, kv{s.req.key, v}, id)
		}
	}
	delete(x.sels, id)
}

// Matches returns the items a selector matches (nil when it is not held).
// The caller must not modify the map.
func (x *labelIndex[T]) Matches(id string) map[T]struct{} {
	if s := x.sels[id]; s != nil {
		return s.matches
	}
	return nil
}
