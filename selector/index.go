package selector

import (
	"maps"
	"slices"
)

// Index maintains which items each selector matches, as items, their
// parents' labels and selectors come, change and go, and reports each
// change of membership through the callbacks given to NewIndex.
//
// Items are labelled things (endpoints, network sets). An item's labels
// are its own labels layered over those of its parents (profiles, whose
// labelsToApply are inherited): own labels win, then parents in the order
// given. Selector and item IDs are the caller's strings; one *Selector may
// be registered under several selector IDs.
//
// Selectors are indexed on a label (key, value) or key that any item they
// match must carry, taken from the AST: k == v, k in {…}, an Or of such
// terms, or has(k) / contains / starts with / ends with, and for an And
// the most selective of its operands. Selectors with no such requirement
// (for example !has(k) or k != v) sit in a fallback set that every item
// change considers. One item's change therefore considers only the
// selectors indexed on its new labels, the fallback set and the selectors
// it currently matches, and of those evaluates only the ones that read a
// label whose value changed. A new selector whose requirement is exactly
// what it matches (k == v, k in {…}, has(k), or an Or of those) takes the
// items carrying it without evaluating them. A selector's index entry is
// re-chosen from current label statistics when it keeps being evaluated
// without matching.
//
// Items are indexed by label only under "tracked" keys: those that such
// terms of registered selectors name. A selector naming a key that is not
// tracked fills that key's entries from the stored labels of all items;
// a key whose last selector goes is kept (idle) for a while in case one
// comes back.
//
// Callbacks run synchronously inside the call that caused them and must
// not call back into the Index. An Index is not safe for concurrent use.
// Label maps passed in are kept, not copied: do not modify them afterwards.
type Index struct {
	onStart, onStop func(selID, itemID string, data any)

	selIDs   map[string]uint32
	sels     []*selEntry // indexed by selector number; nil when free
	freeSels []uint32
	fallback idSet // selectors with no index requirement

	itemIDs   map[string]uint32
	items     [][]itemEntry // chunks of itemChunk entries; see item
	nItems    uint32        // item numbers in use or free
	freeItems []uint32

	// keys holds, for each tracked key, the items and the selectors
	// indexed under it and under each of its values.
	keys map[string]*keyIndex
	// idle lists keys whose last selector went, oldest first, with the
	// idleSeq they went idle at; see untrack.
	idle    []idleKey
	idleSeq uint64

	parents map[string]*parentEntry

	// Scratch state reused across calls.
	selMark  []uint32 // selector number → epoch when last collected
	itemMark []uint32 // item number → epoch when last collected
	epoch    uint32
	cand     []uint32
	oldView  view
	newView  view
	// Merged labels of the item being relabelled (when it has parents).
	oldMerged, newMerged map[string]string
	newMatches           []uint32
	changed              []string // keys whose effective value changed
}

type kv struct{ k, v string }

// itemChunk is how many item entries are allocated at a time. Chunks are
// never moved, so growing to 100,000 items copies nothing.
const itemChunk = 1024

// item returns item number it's entry.
func (x *Index) item(it uint32) *itemEntry {
	return &x.items[it/itemChunk][it%itemChunk]
}

// keyIndex is the index entry of a tracked label key.
type keyIndex struct {
	refs   int                  // registered selectors whose requirement may use the key
	idleAt uint64               // idleSeq when refs last fell to 0
	items  idSet                // items carrying the key
	sels   idSet                // selectors indexed on the key's presence
	vals   map[string]*valIndex // by value; an entry goes when both its sets are empty
}

type idleKey struct {
	key string
	at  uint64
}

// maxIdleKeys is how many tracked keys without selectors are kept, so that
// a selector that comes and goes does not refill its key over every item
// each time it comes back.
const maxIdleKeys = 16

// valIndex is the index entry of one value of a tracked key.
type valIndex struct {
	items idSet // items carrying key=value
	sels  idSet // selectors indexed on key=value
}

// requirement is a set of labels one of which every matching item carries.
type requirement struct {
	kvs  []kv
	keys []string
}

type selEntry struct {
	id      string
	sel     *Selector
	keys    []string // label keys the selector reads, sorted
	tracked []string // keys its requirement may use (it holds a ref on each), sorted
	req     requirement
	indexed bool   // req is entered in keys; otherwise in fallback
	exact   bool   // indexed, and every item carrying req matches (k == v, has(k), …)
	wasted  uint32 // fruitless candidate evaluations since the last re-choice
}

type itemEntry struct {
	id      string
	data    any  // UpdateItemWithData's, for the callbacks
	live    bool // false for a free slot
	own     map[string]string
	parents []*parentEntry
	matches []uint32 // selector numbers, sorted
}

type parentEntry struct {
	id       string
	labels   map[string]string
	defined  bool  // UpdateParent was called and DeleteParent was not
	children idSet // item numbers
}

// reChooseAfter is how many fruitless evaluations of a selector as a
// candidate trigger re-choosing its index entry.
const reChooseAfter = 32

// NewIndex returns an empty index reporting membership changes to onStart
// and onStop (either may be nil), with the data the item was last updated
// with (UpdateItemWithData; nil otherwise).
func NewIndex(onStart, onStop func(selID, itemID string, data any)) *Index {
	nop := func(string, string, any) {}
	if onStart == nil {
		onStart = nop
	}
	if onStop == nil {
		onStop = nop
	}
	return &Index{
		onStart: onStart,
		onStop:  onStop,
		selIDs:  map[string]uint32{},
		itemIDs: map[string]uint32{},
		keys:    map[string]*keyIndex{},
		parents: map[string]*parentEntry{},
	}
}

// view is an item's effective labels: own over parents, in order. While a
// parent's labels change, swap/swapLabels make it read the parent's
// previous labels.
type view struct {
	own        map[string]string
	parents    []*parentEntry
	swap       *parentEntry
	swapLabels map[string]string
}

func (v *view) parentLabels(p *parentEntry) map[string]string {
	if p == v.swap {
		return v.swapLabels
	}
	return p.labels
}

// Get implements Labels.
func (v *view) Get(k string) (string, bool) {
	if val, ok := v.own[k]; ok {
		return val, true
	}
	for _, p := range v.parents {
		if val, ok := v.parentLabels(p)[k]; ok {
			return val, true
		}
	}
	return "", false
}

// each calls fn once for each effective label.
func (v *view) each(fn func(k, val string)) {
	for k, val := range v.own {
		fn(k, val)
	}
	for i, p := range v.parents {
	next:
		for k, val := range v.parentLabels(p) {
			if _, ok := v.own[k]; ok {
				continue
			}
			for _, q := range v.parents[:i] {
				if _, ok := v.parentLabels(q)[k]; ok {
					continue next
				}
			}
			fn(k, val)
		}
	}
}

func (v *view) eval(s *Selector) bool {
	if len(v.parents) == 0 {
		return s.Evaluate(v.own)
	}
	return s.EvaluateLabels(v)
}

// val returns k's entry for v, creating it.
func (ki *keyIndex) val(v string) *valIndex {
	vi := ki.vals[v]
	if vi == nil {
		vi = &valIndex{}
		ki.vals[v] = vi
	}
	return vi
}

// gcVal drops v's entry if it holds nothing.
func (ki *keyIndex) gcVal(v string, vi *valIndex) {
	if vi.items.len() == 0 && vi.sels.len() == 0 {
		delete(ki.vals, v)
	}
}

// itemCount returns how many items carry k=v (isVal) or k (!isVal); 0
// when k is not tracked.
func (x *Index) itemCount(k, v string, isVal bool) int {
	ki := x.keys[k]
	switch {
	case ki == nil:
		return 0
	case !isVal:
		return ki.items.len()
	}
	if vi := ki.vals[v]; vi != nil {
		return vi.items.len()
	}
	return 0
}

// track takes a ref on each key. Keys not tracked yet are filled from
// every item's effective labels, in one pass over the items.
func (x *Index) track(keys []string) {
	var fresh []*keyIndex
	var freshKeys []string
	for _, k := range keys {
		if ki := x.keys[k]; ki != nil {
			ki.refs++
			continue
		}
		ki := &keyIndex{refs: 1, vals: map[string]*valIndex{}}
		x.keys[k] = ki
		fresh, freshKeys = append(fresh, ki), append(freshKeys, k)
	}
	if len(fresh) == 0 {
		return
	}
	for i := range x.nItems {
		item := x.item(i)
		if !item.live {
			continue
		}
		v := view{own: item.own, parents: item.parents}
		for j, ki := range fresh {
			if val, ok := v.Get(freshKeys[j]); ok {
				ki.items.add(i)
				ki.val(val).items.add(i)
			}
		}
	}
}

// untrack drops a ref on each key. A key left without one stays tracked
// (idle) until maxIdleKeys keys have gone idle after it, unless a
// selector takes it up again.
func (x *Index) untrack(keys []string) {
	for _, k := range keys {
		ki := x.keys[k]
		if ki.refs--; ki.refs > 0 {
			continue
		}
		x.idleSeq++
		ki.idleAt = x.idleSeq
		x.idle = append(x.idle, idleKey{k, x.idleSeq})
		if len(x.idle) > maxIdleKeys {
			old := x.idle[0]
			x.idle = append(x.idle[:0], x.idle[1:]...)
			// Unless taken up again since (refs) or idle again since (at).
			if oi := x.keys[old.key]; oi != nil && oi.refs == 0 && oi.idleAt == old.at {
				delete(x.keys, old.key)
			}
		}
	}
}

// trackedKeys returns the sorted keys that requirementOf may use for n.
func trackedKeys(n *node) []string {
	keys, _ := appendReqKeys(nil, n)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// appendReqKeys appends the keys of the terms requirementOf may choose from
// for n and reports whether it finds a requirement; it follows the same
// structure.
func appendReqKeys(dst []string, n *node) ([]string, bool) {
	switch n.op {
	case opEq, opIn, opHas, opContains, opStartsWith, opEndsWith:
		return append(dst, n.key), true
	case opAnd:
		ok := false
		for _, k := range n.kids {
			var kok bool
			dst, kok = appendReqKeys(dst, k)
			ok = ok || kok
		}
		return dst, ok
	case opOr:
		if n.key != "" {
			return append(dst, n.key), true
		}
		mark := len(dst)
		for _, k := range n.kids {
			var kok bool
			if dst, kok = appendReqKeys(dst, k); !kok {
				return dst[:mark], false
			}
		}
		return dst, true
	}
	return dst, false
}

// ---- Selectors ----

// UpdateSelector adds the selector under id or replaces the one there.
func (x *Index) UpdateSelector(id string, sel *Selector) {
	si, exists := x.selIDs[id]
	var e *selEntry
	x.nextEpoch()
	x.cand = x.cand[:0]
	if exists {
		e = x.sels[si]
		if e.sel == sel || e.sel.UniqueID() == sel.UniqueID() {
			e.sel = sel
			return
		}
		x.collectItems(e) // the old matches are among these
		x.unindexSelector(si)
	} else {
		si = x.allocSelector(id)
		e = x.sels[si]
	}
	oldTracked := e.tracked
	e.sel, e.keys, e.tracked = sel, sel.LabelKeys(), trackedKeys(sel.root)
	x.track(e.tracked) // before untracking the old keys: no needless refill
	x.untrack(oldTracked)
	x.indexSelector(si)
	x.collectItems(e)
	slices.Sort(x.cand)
	// A new selector's candidates all carry its requirement; an updated
	// one's include the old selector's.
	exact := e.exact && !exists
	for _, it := range x.cand {
		item := x.item(it)
		now := exact
		if !now {
			x.newView = view{own: item.own, parents: item.parents}
			now = x.newView.eval(sel)
		}
		was := hasSorted(item.matches, si)
		switch {
		case now && !was:
			item.matches = sortedInsert(item.matches, si)
			x.onStart(id, item.id, item.data)
		case was && !now:
			item.matches = sortedRemove(item.matches, si)
			x.onStop(id, item.id, item.data)
		}
	}
	x.newView = view{}
}

// collectItems appends to x.cand, once each (per epoch), the items that
// carry one of e's requirement labels, or every item when e is not
// indexed. Every item e matches is among them.
func (x *Index) collectItems(e *selEntry) {
	if n := int(x.nItems); len(x.itemMark) < n {
		x.itemMark = append(x.itemMark, make([]uint32, n-len(x.itemMark))...)
	}
	add := func(it uint32) {
		if x.itemMark[it] != x.epoch {
			x.itemMark[it] = x.epoch
			x.cand = append(x.cand, it)
		}
	}
	if !e.indexed {
		for i := range x.nItems {
			if x.item(i).live {
				add(i)
			}
		}
		return
	}
	for _, p := range e.req.kvs {
		if vi := x.keys[p.k].vals[p.v]; vi != nil {
			for it := range vi.items.each {
				add(it)
			}
		}
	}
	for _, k := range e.req.keys {
		for it := range x.keys[k].items.each {
			add(it)
		}
	}
}

// matchedItems returns the sorted items selector si matches, in x.cand.
func (x *Index) matchedItems(si uint32) []uint32 {
	x.nextEpoch()
	x.cand = x.cand[:0]
	x.collectItems(x.sels[si])
	matched := x.cand[:0]
	for _, it := range x.cand {
		if hasSorted(x.item(it).matches, si) {
			matched = append(matched, it)
		}
	}
	slices.Sort(matched)
	x.cand = matched
	return matched
}

// DeleteSelector removes the selector registered under id, reporting the
// end of each of its matches. Deleting an unknown ID does nothing.
func (x *Index) DeleteSelector(id string) { x.deleteSelector(id, true) }

// DropSelector removes the selector registered under id like
// DeleteSelector, without reporting the end of its matches: for a caller
// that drops everything it kept for the selector anyway (calc's set of a
// selector no rule uses any more: up to one callback per endpoint of the
// cluster, for nothing).
func (x *Index) DropSelector(id string) { x.deleteSelector(id, false) }

func (x *Index) deleteSelector(id string, report bool) {
	si, ok := x.selIDs[id]
	if !ok {
		return
	}
	for _, it := range x.matchedItems(si) {
		item := x.item(it)
		item.matches = sortedRemove(item.matches, si)
		if report {
			x.onStop(id, item.id, item.data)
		}
	}
	x.unindexSelector(si)
	x.untrack(x.sels[si].tracked)
	delete(x.selIDs, id)
	x.sels[si] = nil
	x.freeSels = append(x.freeSels, si)
}

func (x *Index) allocSelector(id string) uint32 {
	var si uint32
	if n := len(x.freeSels); n > 0 {
		si = x.freeSels[n-1]
		x.freeSels = x.freeSels[:n-1]
	} else {
		si = uint32(len(x.sels))
		x.sels = append(x.sels, nil)
		x.selMark = append(x.selMark, 0)
	}
	x.sels[si] = &selEntry{id: id}
	x.selIDs[id] = si
	return si
}

func (x *Index) indexSelector(si uint32) {
	e := x.sels[si]
	req, _, ok := x.requirementOf(e.sel.root)
	e.req, e.indexed, e.exact, e.wasted = req, ok, ok && exactly(e.sel.root), 0
	if !ok {
		e.req = requirement{}
		x.fallback.add(si)
		return
	}
	for _, p := range req.kvs {
		x.keys[p.k].val(p.v).sels.add(si)
	}
	for _, k := range req.keys {
		x.keys[k].sels.add(si)
	}
}

func (x *Index) unindexSelector(si uint32) {
	e := x.sels[si]
	if !e.indexed {
		x.fallback.remove(si)
		return
	}
	for _, p := range e.req.kvs {
		ki := x.keys[p.k]
		if vi := ki.vals[p.v]; vi != nil {
			vi.sels.remove(si)
			ki.gcVal(p.v, vi)
		}
	}
	for _, k := range e.req.keys {
		x.keys[k].sels.remove(si)
	}
}

// reChoose re-derives a selector's index entry from current statistics.
// Its matches do not change, so nothing is re-evaluated.
func (x *Index) reChoose(si uint32) {
	x.unindexSelector(si)
	x.indexSelector(si)
}

// requirementOf returns labels one of which every item matching n
// carries, with an estimate of how many items carry them; ok is false
// when no such requirement can be read from n. An empty requirement with
// ok true means n can never match.
func (x *Index) requirementOf(n *node) (r requirement, cost int, ok bool) {
	kvCost := func(p kv) int { return 1 + x.itemCount(p.k, p.v, true) }
	switch n.op {
	case opEq:
		p := kv{n.key, n.val}
		return requirement{kvs: []kv{p}}, kvCost(p), true
	case opIn:
		return x.setRequirement(n.key, n.set)
	case opHas, opContains, opStartsWith, opEndsWith:
		// Presence is a weaker filter than a value: weigh it so that a
		// value test wins a tie before any items exist.
		return requirement{keys: []string{n.key}}, 8 + x.itemCount(n.key, "", false), true
	case opAnd:
		for _, k := range n.kids {
			kr, kc, kok := x.requirementOf(k)
			if kok && (!ok || kc < cost) {
				r, cost, ok = kr, kc, true
			}
		}
		return r, cost, ok
	case opOr:
		if n.key != "" { // folded k == v1 || k == v2 || …
			return x.setRequirement(n.key, n.set)
		}
		for _, k := range n.kids {
			kr, kc, kok := x.requirementOf(k)
			if !kok {
				return requirement{}, 0, false
			}
			r.kvs = append(r.kvs, kr.kvs...)
			r.keys = append(r.keys, kr.keys...)
			cost += kc
		}
		return r, cost, true
	}
	return requirement{}, 0, false
}

// exactly reports whether n matches exactly the items that carry its
// requirement (requirementOf), so that a candidate found through the
// index needs no evaluation: k == v, k in {…}, has(k), and an Or of those.
func exactly(n *node) bool {
	switch n.op {
	case opEq, opIn, opHas:
		return true
	case opOr:
		return n.key != "" || !slices.ContainsFunc(n.kids, func(k *node) bool { return !exactly(k) })
	}
	return false
}

func (x *Index) setRequirement(key string, vals []string) (requirement, int, bool) {
	r := requirement{kvs: make([]kv, len(vals))}
	cost := 0
	for i, v := range vals {
		r.kvs[i] = kv{key, v}
		cost += 1 + x.itemCount(key, v, true)
	}
	return r, cost, true
}

// ---- Items ----

// UpdateItem adds or replaces an item with no parents.
func (x *Index) UpdateItem(id string, labels map[string]string) {
	x.UpdateItemWithParents(id, labels, nil)
}

// UpdateItemWithParents adds or replaces an item whose effective labels
// are own over the labels of the named parents (first parent first).
// Parents not yet given to UpdateParent have no labels until they are.
func (x *Index) UpdateItemWithParents(id string, own map[string]string, parentIDs []string) {
	x.UpdateItemWithData(id, nil, own, parentIDs)
}

// UpdateItemWithData is UpdateItemWithParents for an item that carries
// data: the callbacks about the item get the data it was last given (in
// this update's callbacks, this one's), so that the caller need not look
// it up by ID (calc: one lookup per member of a set it fills, thousands
// when a policy comes back).
func (x *Index) UpdateItemWithData(id string, data any, own map[string]string, parentIDs []string) {
	it, exists := x.itemIDs[id]
	if !exists {
		it = x.allocItem(id)
	}
	item := x.item(it)
	item.data = data
	oldParents := item.parents
	var parents []*parentEntry
	if len(parentIDs) > 0 {
		parents = make([]*parentEntry, len(parentIDs))
		for i, pid := range parentIDs {
			parents[i] = x.parent(pid)
		}
	}
	if exists && maps.Equal(item.own, own) && slices.Equal(oldParents, parents) {
		item.own = own
		return
	}
	x.oldView = view{own: item.own, parents: oldParents}
	x.newView = view{own: own, parents: parents}
	item.own, item.parents = own, parents
	x.relabel(it, !exists)
	for _, p := range oldParents {
		if !slices.Contains(parents, p) {
			p.children.remove(it)
			x.gcParent(p)
		}
	}
	for _, p := range parents {
		p.children.add(it)
	}
}

// DeleteItem removes an item, reporting the end of each of its matches.
// Deleting an unknown ID does nothing.
func (x *Index) DeleteItem(id string) {
	it, ok := x.itemIDs[id]
	if !ok {
		return
	}
	item := x.item(it)
	x.reindexItem(it, x.merged(&view{own: item.own, parents: item.parents}, &x.oldMerged), nil)
	for _, si := range item.matches {
		x.onStop(x.sels[si].id, id, item.data)
	}
	for _, p := range item.parents {
		p.children.remove(it)
		x.gcParent(p)
	}
	*item = itemEntry{}
	delete(x.itemIDs, id)
	x.freeItems = append(x.freeItems, it)
}

func (x *Index) allocItem(id string) uint32 {
	var it uint32
	if n := len(x.freeItems); n > 0 {
		it = x.freeItems[n-1]
		x.freeItems = x.freeItems[:n-1]
	} else {
		it = x.nItems
		if it%itemChunk == 0 {
			x.items = append(x.items, make([]itemEntry, itemChunk))
		}
		x.nItems++
	}
	item := x.item(it)
	item.id, item.live = id, true
	x.itemIDs[id] = it
	return it
}

// relabel moves item it from x.oldView to x.newView: it updates the
// label → item indexes and re-evaluates the candidate selectors.
//
// A selector's result depends only on the labels it reads, so for an
// existing item (full false) candidates that read none of the changed keys
// keep their result without evaluation. A new item (full true) evaluates
// every candidate.
func (x *Index) relabel(it uint32, full bool) {
	oldL := x.merged(&x.oldView, &x.oldMerged)
	newL := x.merged(&x.newView, &x.newMerged)
	x.reindexItem(it, oldL, newL)
	x.reevaluate(it, newL, full)
	x.oldView, x.newView = view{}, view{}
}

// merged returns v's effective labels as a map: the own map itself when
// there are no parents, otherwise *scratch refilled.
func (x *Index) merged(v *view, scratch *map[string]string) map[string]string {
	if len(v.parents) == 0 {
		return v.own
	}
	if *scratch == nil {
		*scratch = map[string]string{}
	}
	m := *scratch
	clear(m)
	v.each(func(k, val string) { m[k] = val })
	return m
}

// reindexItem updates the label → item indexes of the tracked keys for
// item it, whose effective labels change from oldL to newL, and sets
// x.changed to the keys whose value or presence changed.
func (x *Index) reindexItem(it uint32, oldL, newL map[string]string) {
	x.changed = x.changed[:0]
	for k, v := range oldL {
		nv, ok := newL[k]
		if ok && nv == v {
			continue
		}
		x.changed = append(x.changed, k)
		ki := x.keys[k]
		if ki == nil {
			continue
		}
		if !ok {
			ki.items.remove(it)
		}
		if vi := ki.vals[v]; vi != nil {
			vi.items.remove(it)
			ki.gcVal(v, vi)
		}
	}
	for k, v := range newL {
		ov, ok := oldL[k]
		if ok && ov == v {
			continue
		}
		if !ok {
			x.changed = append(x.changed, k)
		}
		ki := x.keys[k]
		if ki == nil {
			continue
		}
		if !ok {
			ki.items.add(it)
		}
		ki.val(v).items.add(it)
	}
}

// readsChanged reports whether a selector reading keys reads any of
// x.changed.
func (x *Index) readsChanged(keys []string) bool {
	for _, c := range x.changed {
		for _, k := range keys {
			if k == c {
				return true
			}
		}
	}
	return false
}

// reevaluate re-evaluates the candidate selectors for item it, whose
// effective labels are labels: those indexed on one of its labels, the
// fallback set and those it matched. The candidates include every old
// match, so the new match list is the candidates that match, in order.
func (x *Index) reevaluate(it uint32, labels map[string]string, full bool) {
	x.nextEpoch()
	x.cand = x.cand[:0]
	x.collectLabelSels(labels)
	x.collectSels(&x.fallback)
	item := x.item(it)
	for _, si := range item.matches {
		x.collect(si)
	}
	slices.Sort(x.cand)

	old := item.matches
	next := x.newMatches[:0]
	j := 0
	for _, si := range x.cand {
		e := x.sels[si]
		for j < len(old) && old[j] < si {
			j++
		}
		was := j < len(old) && old[j] == si
		now := was
		if full || x.readsChanged(e.keys) {
			now = e.sel.Evaluate(labels)
		} else if !was {
			continue
		}
		if now {
			next = append(next, si)
		}
		switch {
		case now && !was:
			x.onStart(e.id, item.id, item.data)
		case was && !now:
			x.onStop(e.id, item.id, item.data)
		case !now && !was && e.indexed:
			if e.wasted++; e.wasted >= reChooseAfter {
				x.reChoose(si)
			}
		}
	}
	if len(next) == 0 {
		item.matches = nil
	} else {
		item.matches = append(old[:0], next...)
	}
	x.newMatches = next[:0]
}

func (x *Index) collect(si uint32) {
	if x.selMark[si] != x.epoch {
		x.selMark[si] = x.epoch
		x.cand = append(x.cand, si)
	}
}

func (x *Index) collectSels(s *idSet) {
	for si := range s.each {
		x.collect(si)
	}
}

// collectLabelSels collects the selectors indexed on one of labels.
func (x *Index) collectLabelSels(labels map[string]string) {
	for k, v := range labels {
		ki := x.keys[k]
		if ki == nil {
			continue
		}
		x.collectSels(&ki.sels)
		if vi := ki.vals[v]; vi != nil {
			x.collectSels(&vi.sels)
		}
	}
}

func (x *Index) nextEpoch() {
	x.epoch++
	if x.epoch == 0 { // wrapped: forget all marks
		clear(x.selMark)
		clear(x.itemMark)
		x.epoch = 1
	}
}

// ---- Parents ----

func (x *Index) parent(id string) *parentEntry {
	p := x.parents[id]
	if p == nil {
		p = &parentEntry{id: id}
		x.parents[id] = p
	}
	return p
}

// gcParent forgets a parent nobody refers to and nobody defined.
func (x *Index) gcParent(p *parentEntry) {
	if !p.defined && p.children.len() == 0 {
		delete(x.parents, p.id)
	}
}

// UpdateParent sets a parent's labels; only its children are re-evaluated.
func (x *Index) UpdateParent(id string, labels map[string]string) {
	p := x.parent(id)
	p.defined = true
	x.setParentLabels(p, labels)
}

// DeleteParent removes a parent's labels. Items that name it keep naming
// it and see no labels from it until it is updated again.
func (x *Index) DeleteParent(id string) {
	p, ok := x.parents[id]
	if !ok {
		return
	}
	p.defined = false
	x.setParentLabels(p, nil)
	x.gcParent(p)
}

func (x *Index) setParentLabels(p *parentEntry, labels map[string]string) {
	old := p.labels
	p.labels = labels
	if maps.Equal(old, labels) {
		return
	}
	children := p.children.appendTo(nil)
	slices.Sort(children)
	for _, it := range children {
		item := x.item(it)
		x.oldView = view{own: item.own, parents: item.parents, swap: p, swapLabels: old}
		x.newView = view{own: item.own, parents: item.parents}
		x.relabel(it, false)
	}
}

// ---- Queries ----

// Matches returns the sorted IDs of the items the selector registered
// under selID matches.
func (x *Index) Matches(selID string) []string {
	si, ok := x.selIDs[selID]
	if !ok {
		return nil
	}
	var ids []string
	for _, it := range x.matchedItems(si) {
		ids = append(ids, x.item(it).id)
	}
	slices.Sort(ids)
	return ids
}

// SelectorsMatching returns the sorted IDs of the selectors that match the
// item registered under itemID.
func (x *Index) SelectorsMatching(itemID string) []string {
	it, ok := x.itemIDs[itemID]
	if !ok {
		return nil
	}
	var ids []string
	for _, si := range x.item(it).matches {
		ids = append(ids, x.sels[si].id)
	}
	slices.Sort(ids)
	return ids
}

// Labels returns the item's effective labels (own over parents), or nil
// for an unknown item.
func (x *Index) Labels(itemID string) map[string]string {
	it, ok := x.itemIDs[itemID]
	if !ok {
		return nil
	}
	item := x.item(it)
	v := view{own: item.own, parents: item.parents}
	out := map[string]string{}
	v.each(func(k, val string) { out[k] = val })
	return out
}

func sortedInsert(s []uint32, v uint32) []uint32 {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

func sortedRemove(s []uint32, v uint32) []uint32 {
	i, found := slices.BinarySearch(s, v)
	if !found {
		return s
	}
	if len(s) == 1 {
		return nil
	}
	return slices.Delete(s, i, i+1)
}

func hasSorted(s []uint32, v uint32) bool {
	_, found := slices.BinarySearch(s, v)
	return found
}
