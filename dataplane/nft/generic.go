package nft

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// Generic classes: a new class without a new rule.
//
// A class chain of its own is rules, and on this kernel any transaction
// that adds a rule to the policy table makes the kernel validate the
// whole table at commit (about 8 ms at 5,000 policies). A transaction that
// only adds or deletes elements of plain sets is not validated. So a new
// class is made *generic*: it runs through its direction's generic
// chains, which hold, in evaluation order, one rule per policy, per tier
// end and per profile the table has, each guarded by a lookup of (class
// bits | slot number) in the direction's guard set:
//
//	chain brindle-tg {
//	    meta mark set meta mark & 0xfdffffff               # tier default
//	    jump brindle-ig-<h1>                                # a segment: ~32 policies
//	    jump brindle-ig-<h2>
//	    meta mark & 0x03ff0000 | 0x00000003 @brindle-to-generic drop   # end of tier default
//	    meta mark set meta mark & 0xfdffffff               # profiles
//	    jump brindle-ig-<h3>
//	    drop
//	}
//	chain brindle-ig-<h1> {
//	    meta mark & 0x03ff0000 | 0x00000001 @brindle-to-generic jump brindle-pi-<a>
//	    meta mark & 0x03ff0000 | 0x00000002 @brindle-to-generic jump brindle-pi-<b>
//	}
//
// A generic class has one element per policy, tier end (default Deny)
// and profile of its own chain, plus (class bits | 0), which the dispatch
// chain looks up when the class map has no chain for the class. For it
// the generic chains do exactly what its own chain would: the same
// policies in the same order, the pass bit in the key skipping the rest
// of a tier after a Pass as the pass-bit tests do, the same tier ends and
// profiles, then drop. A class they cannot express (a missing profile,
// policies in an order the layout does not have) gets its own chain at
// once.
//
// The price is per new connection: the generic chains look up every
// slot (tens of nanoseconds each) instead of a tier index's few
// policies. So generic classes are transitional: Dataplane.Settle, which
// the agent calls once it has been idle for a moment (and at most
// SettleMaxDelay after the first), gives each its own chain in one
// transaction. The first Apply gives every class its own chain (it
// validates the whole table anyway) and leaves the generic chains empty:
// a rule per policy would make the start of day's transaction a third
// longer; the first Settle lays them out.
//
// The generic chains change only when a policy or profile comes that
// they lack (a transaction that adds its chain, and so rules, anyway), a
// chain they jump to goes, or a policy's order changes. Slots are stable,
// so a generic class's elements stay valid across such changes, and a
// new policy rewrites only its segment. A policy that leaves the state
// while a generic chain jumps to it keeps its chains and sets (it is
// retained) for Config.RetainPoliciesFor, released by the first Settle
// after that: deleting its slot would be a rule change, and if it comes
// back meanwhile (a label flipping back) it costs no rule either.

// genericLayout is one direction's generic chains: a top chain with,
// per tier, a pass-bit clear, jumps to the tier's segment chains and the
// tier end, then the profiles' segments and a drop; each segment chain
// holds the guarded jumps of a run of consecutive policies (or
// profiles). Segments end where a policy's hash says so (about 32
// policies each), so a policy that comes or goes rewrites its segment
// only. Slot numbers are stable for an item's life in the layout (a
// generic class's elements stay valid when other items come and go);
// pos orders items as the chains do.
type genericLayout struct {
	top   *chainSpec
	segs  map[string]*chainSpec
	slot  map[string]uint32 // by item: policy or profile chain name, or "end\x00"+tier
	pos   map[string]int
	rules map[string]*ruleSpec // each item's guarded rule
	next  uint32
	// free slots can be given out again; freed slots only once no
	// generic class has elements (promote), as a class's elements may
	// still name them.
	free, freed []uint32
}

// has reports whether the generic chains have item key (a policy's
// target key, a profile's chain).
func (l *genericLayout) has(key string) bool {
	if l == nil {
		return false
	}
	_, ok := l.pos[key]
	return ok
}

// ClassMode chooses how a new class is programmed.
type ClassMode uint8

const (
	// ClassAuto makes a class generic when the generic chains can
	// express it, until Settle gives it a chain of its own.
	ClassAuto ClassMode = iota
	// ClassDirect gives every class its own chain at once (no generic
	// chains).
	ClassDirect
)

func genericSet(ingress bool) string {
	if ingress {
		return setToGeneric
	}
	return setFromGeneric
}

func genericChain(ingress bool) string {
	if ingress {
		return chainToGeneric
	}
	return chainFromGeneric
}

// slotBits spreads slot number n over the mark bits that are neither
// class bits nor the pass bit; ok is false when n does not fit.
func (b *builder) slotBits(n uint32) (uint32, bool) {
	free := ^(b.cfg.ClassMask | b.cfg.PassMark)
	var v uint32
	for bit := uint32(1); n != 0 && bit != 0; bit <<= 1 {
		if free&bit != 0 {
			if n&1 != 0 {
				v |= bit
			}
			n >>= 1
		}
	}
	return v, n == 0
}

// mergeOrder orders the items of several sequences so that each
// sequence's order is kept where the sequences agree (a topological
// sort; ties, and items in no sequence, by name).
func mergeOrder(seqs [][]string, extra []string) []string {
	after := map[string]map[string]bool{}
	indeg := map[string]int{}
	add := func(s string) {
		if _, ok := indeg[s]; !ok {
			indeg[s] = 0
			after[s] = map[string]bool{}
		}
	}
	for _, seq := range seqs {
		for i, s := range seq {
			add(s)
			if i > 0 && !after[seq[i-1]][s] && seq[i-1] != s {
				after[seq[i-1]][s] = true
				indeg[s]++
			}
		}
	}
	for _, s := range extra {
		add(s)
	}
	var ready, out []string
	for s, n := range indeg {
		if n == 0 {
			ready = append(ready, s)
		}
	}
	for len(out) < len(indeg) {
		if len(ready) == 0 { // a cycle: take the least remaining item
			for s, n := range indeg {
				if n > 0 && (len(ready) == 0 || s < ready[0]) {
					ready = []string{s}
				}
			}
			indeg[ready[0]] = 0
		}
		slices.Sort(ready)
		s := ready[0]
		ready = ready[1:]
		indeg[s] = -1
		out = append(out, s)
		for t := range after[s] {
			if indeg[t] > 0 {
				indeg[t]--
				if indeg[t] == 0 {
					ready = append(ready, t)
				}
			}
		}
	}
	return out
}

// segmentEvery is the mean number of items per segment chain.
const segmentEvery = 32

// segmentStart reports whether item key starts a segment: a stable hash
// (the same on every host and run, so a restarted agent lays the same
// segments out) picks one item in segmentEvery.
func segmentStart(key string) bool {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()%segmentEvery == 0
}

// layGeneric lays out one direction's generic chains anew for the
// policies (active and retained) and profiles the builder has: tiers in
// the order the endpoints list them, policies in a tier by order, name,
// namespace and kind (as calc sorts them), profiles in the order the
// endpoints list them. Items keep their slots; only the chains whose
// rules differ change.
func (b *builder) layGeneric(ingress bool) {
	d := dirIndex(ingress)
	l := b.lay[d]
	if l == nil {
		l = &genericLayout{segs: map[string]*chainSpec{}, slot: map[string]uint32{},
			rules: map[string]*ruleSpec{}}
		b.lay[d] = l
	}
	l.pos = make(map[string]int, len(l.slot))
	top := &chainSpec{name: genericChain(ingress), rank: 2}
	add := func(c *chainSpec, x *rb, comment string) { c.rules = append(c.rules, x.done(comment)) }
	if b.cfg.ClassMode == ClassDirect || b.layPending {
		var x rb
		x.verdict(expr.VerdictDrop, "")
		add(top, &x, dirName(ingress)+": no generic classes")
		b.putChain(top)
		l.top, l.segs = top, map[string]*chainSpec{}
		return
	}
	M, P := b.cfg.ClassMask, b.cfg.PassMark
	set := genericSet(ingress)
	full := false
	// item returns the guarded rule of one item, giving it a slot.
	// comment is called only for an item new to the layout.
	item := func(key string, comment func() string, verdict expr.VerdictKind, chain string) *ruleSpec {
		l.pos[key] = len(l.pos) + 1
		if r := l.rules[key]; r != nil {
			return r
		}
		n := l.next + 1
		if len(l.free) > 0 {
			n, l.free = l.free[len(l.free)-1], l.free[:len(l.free)-1]
		}
		v, ok := b.slotBits(n)
		if !ok {
			full = true
			return nil
		}
		l.next = max(l.next, n)
		var x rb
		x.markInSet(M|P, v, set)
		x.verdict(verdict, chain)
		l.slot[key] = n
		l.rules[key] = x.done(comment())
		return l.rules[key]
	}
	segs := make(map[string]*chainSpec, len(l.segs))
	// segments adds a run of items as segment chains jumped to from top.
	segments := func(keys []string, rule func(key string) *ruleSpec) {
		var c *chainSpec
		for i, k := range keys {
			if i == 0 || segmentStart(k) {
				name := prefix + dirName(ingress)[:1] + "g-" + hashID(dirName(ingress)+"\x00"+k)
				c = &chainSpec{name: name, rank: 2}
				segs[name] = c
				var x rb
				x.verdict(expr.VerdictJump, name)
				add(top, &x, "")
			}
			if r := rule(k); r != nil {
				c.rules = append(c.rules, r)
			}
		}
	}
	var tierSeqs, profSeqs [][]string
	for _, e := range b.eps {
		var ts []string
		for _, t := range e.ep.Tiers {
			if len(t.Policies(ingress)) > 0 {
				ts = append(ts, t.Name)
			}
		}
		tierSeqs = append(tierSeqs, ts)
		profSeqs = append(profSeqs, e.ep.ProfileIDs)
	}
	// A tier's policies with what sorting and naming them needs, so that
	// the sort looks nothing up (5,000 policies: most of a layout's time
	// was map lookups in the comparison).
	type pol struct {
		id     desired.PolicyID
		order  *float64
		target policyTarget
	}
	both := []map[desired.PolicyID]*rulesEntry{b.policies, b.retained}
	perTier := map[string]int{}
	for _, m := range both {
		for id := range m {
			perTier[id.Tier]++
		}
	}
	byTier := make(map[string][]pol, len(perTier))
	var tierNames []string
	for _, m := range both {
		for id, e := range m {
			if byTier[id.Tier] == nil {
				tierNames = append(tierNames, id.Tier)
				byTier[id.Tier] = make([]pol, 0, perTier[id.Tier])
			}
			if t, ok := e.target(ingress); ok {
				byTier[id.Tier] = append(byTier[id.Tier], pol{id, e.order, t})
			}
		}
	}
	// A tier whose policies have no rules this way still gets its header
	// and end: its default Deny applies to the classes that list it.
	for _, t := range mergeOrder(tierSeqs, tierNames) {
		pols := byTier[t]
		slices.SortFunc(pols, func(x, y pol) int {
			if c := desired.CompareOrder(x.order, y.order); c != 0 {
				return c
			}
			if c := cmp.Compare(x.id.Name, y.id.Name); c != 0 {
				return c
			}
			return cmp.Or(cmp.Compare(x.id.Namespace, y.id.Namespace), cmp.Compare(x.id.Kind, y.id.Kind))
		})
		var x rb
		x.markClear(P)
		add(top, &x, "tier "+t)
		keys := make([]string, len(pols))
		byKey := make(map[string]*pol, len(pols))
		for i := range pols {
			keys[i] = pols[i].target.key
			byKey[keys[i]] = &pols[i]
		}
		segments(keys, func(k string) *ruleSpec {
			p := byKey[k]
			return item(k, func() string { return "policy " + p.id.String() }, p.target.verdict, p.target.chain)
		})
		if r := item("end\x00"+t, func() string { return "end of tier " + t + ": default deny" }, expr.VerdictDrop, ""); r != nil {
			top.rules = append(top.rules, r)
		}
	}
	var x rb
	x.markClear(P)
	add(top, &x, "profiles")
	profNames := make([]string, 0, len(b.profiles))
	for name := range b.profiles {
		profNames = append(profNames, name)
	}
	var keys []string
	names := map[string]string{}
	for _, p := range mergeOrder(profSeqs, profNames) {
		if _, have := b.profiles[p]; have {
			k := profileChain(p, ingress)
			keys = append(keys, k)
			names[k] = p
		}
	}
	segments(keys, func(k string) *ruleSpec {
		return item(k, func() string { return "profile " + names[k] }, expr.VerdictJump, k)
	})
	x = rb{}
	x.verdict(expr.VerdictDrop, "")
	add(top, &x, dirName(ingress)+": no profile allowed")
	if full {
		// More items than the free mark bits can number: no generic
		// classes (every class gets its own chain).
		l.pos = map[string]int{}
		top.rules = []*ruleSpec{x.done(fmt.Sprintf("%s: more policies than the mark can number", dirName(ingress)))}
		clear(segs)
	}
	// Items gone from the layout give their slots back.
	for k, n := range l.slot {
		if _, ok := l.pos[k]; !ok {
			l.freed = append(l.freed, n)
			delete(l.slot, k)
			delete(l.rules, k)
		}
	}
	put := func(c *chainSpec) {
		if old := b.m.chains[c.name]; old != nil && old.sameRules(c) {
			return
		}
		b.putChain(c)
	}
	put(top)
	l.top = b.m.chains[top.name]
	for name := range l.segs {
		if segs[name] == nil {
			b.dropChain(name)
		}
	}
	for name, c := range segs {
		put(c)
		segs[name] = b.m.chains[name]
	}
	l.segs = segs
}

// policyTarget returns policy id's target in one direction (the policy
// in the state, or retained); false when it has no rules that way, and
// so no item in the generic chains. A policy the builder does not have
// (a retained class's) is a jump to its chain.
func (b *builder) policyTarget(id desired.PolicyID, ingress bool) (policyTarget, bool) {
	e := b.policies[id]
	if e == nil {
		e = b.retained[id]
	}
	if e == nil {
		name := policyChain(id, ingress)
		return policyTarget{key: name, verdict: expr.VerdictJump, chain: name}, true
	}
	return e.target(ingress)
}

// genericElems returns class e's elements in its generic guard set, or
// false when the generic chains cannot express its chain (a policy,
// profile or tier end not in them, its items out of their order, a
// missing profile).
func (b *builder) genericElems(e *classEntry) ([]elem, bool) {
	l := b.lay[dirIndex(e.ingress)]
	if l == nil || b.cfg.ClassMode == ClassDirect {
		return nil, false
	}
	v := b.classValue(e.id)
	out := []elem{{key: binaryutil.NativeEndian.PutUint32(v)}}
	last := 0
	next := func(key string) bool {
		p, ok := l.pos[key]
		if !ok || p <= last {
			return false
		}
		last = p
		s, _ := b.slotBits(l.slot[key])
		out = append(out, elem{key: binaryutil.NativeEndian.PutUint32(v | s)})
		return true
	}
	for _, t := range e.ep.Tiers {
		pols := t.Policies(e.ingress)
		if len(pols) == 0 {
			continue
		}
		for _, id := range pols {
			pt, ok := b.policyTarget(id, e.ingress)
			if !ok {
				continue // no rules this way
			}
			// The layout groups policies by their own tier.
			if id.Tier != t.Name || !next(pt.key) {
				return nil, false
			}
		}
		if t.DefaultAction == desired.Deny && !next("end\x00"+t.Name) {
			return nil, false
		}
	}
	for i, p := range e.ep.ProfileIDs {
		if !e.have[i] || !next(profileChain(p, e.ingress)) {
			return nil, false
		}
	}
	return out, true
}

// elemJournal is the element changes of a set the builder changes in
// place: the generic sets and the verdict maps, which can hold thousands
// of elements (copying and diffing them whole on every build cost more
// than the rest of a label change, and a copy of each verdict map it
// touched was ~10% of the agent's allocation in the label benchmark).
type elemJournal struct{ add, del map[string]elem }

// setElemInPlace adds (or, with del, deletes) an element of set name in
// place and journals it for the transaction.
func (b *builder) setElemInPlace(name string, el elem, del bool) {
	b.journalElem(b.m.sets[name], el, del)
}

// journalElem adds (or deletes) an element of set in place and journals
// it under the set's name.
func (b *builder) journalElem(set *setSpec, el elem, del bool) {
	name := set.name
	j := b.dElems[name]
	if j == nil {
		j = &elemJournal{add: map[string]elem{}, del: map[string]elem{}}
		b.dElems[name] = j
	}
	k := el.mapKey()
	_, had := set.elems[k]
	switch {
	case del && had:
		delete(set.elems, k)
		if _, added := j.add[k]; added {
			delete(j.add, k)
		} else {
			j.del[k] = el
		}
	case !del && !had:
		set.elems[k] = el
		if _, deleted := j.del[k]; deleted {
			delete(j.del, k)
		} else {
			j.add[k] = el
		}
	}
}

// makeGeneric makes class e run through the generic chain.
func (b *builder) makeGeneric(e *classEntry, els []elem) {
	for _, el := range els {
		b.setElemInPlace(genericSet(e.ingress), el, false)
	}
	e.generic, e.gelems = true, els
	e.targets = e.targets[:0]
	l := b.lay[dirIndex(e.ingress)]
	for _, t := range e.ep.Tiers {
		for _, id := range t.Policies(e.ingress) {
			if pt, ok := b.policyTarget(id, e.ingress); ok && pt.chain != "" {
				e.targets = append(e.targets, pt.chain)
			}
		}
	}
	for _, p := range e.ep.ProfileIDs {
		e.targets = append(e.targets, profileChain(p, e.ingress))
	}
	e.targets = append(e.targets, l.top.name)
	b.cls.generic[e] = struct{}{}
}

// unGeneric takes class e out of the generic chain.
func (b *builder) unGeneric(e *classEntry) {
	for _, el := range e.gelems {
		b.setElemInPlace(genericSet(e.ingress), el, true)
	}
	e.generic, e.gelems, e.targets = false, nil, nil
	delete(b.cls.generic, e)
}

// genericStale reports whether a generic chain jumps to a chain the
// current build removed.
func (b *builder) genericStale() bool {
	for name := range b.dChains {
		if b.m.chains[name] != nil {
			continue
		}
		for _, l := range b.lay {
			if l.has(name) { // a chain's name is its item's key
				return true
			}
		}
	}
	return false
}

// settleClasses programs the classes the current build created: generic
// when the generic chains can express them (laid out anew first when
// they lack one of the classes' policies or profiles, or jump to a
// removed chain, or a policy's order changed), else with chains of their
// own. The first build gives every class its own chain (it validates
// the whole table anyway, and nobody waits for a start of day's
// latency).
func (b *builder) settleClasses() {
	pending := b.cls.pending
	b.cls.pending = nil
	first := b.lay[0] == nil
	if first && b.cfg.ClassMode == ClassAuto && !b.cfg.GenericFromStart {
		// The first transaction holds everything already: the generic
		// chains (a rule per policy) come with the first Settle.
		b.layPending = true
	}
	if b.cfg.ClassMode == ClassDirect || b.layPending {
		if first {
			b.layGeneric(true)
			b.layGeneric(false)
		}
		for _, e := range pending {
			b.materialize(e)
		}
		return
	}
	relay := first || b.layDirty || b.genericStale()
	for _, e := range pending {
		if relay {
			break
		}
		relay = b.lacksItems(e)
	}
	b.layDirty = false
	if relay {
		b.layGeneric(true)
		b.layGeneric(false)
		// An order change can leave a generic class out of order.
		pending = append(pending, b.takeGeneric(func(e *classEntry) bool {
			els, ok := b.genericElems(e)
			return !ok || !slices.EqualFunc(els, e.gelems, func(x, y elem) bool { return x.mapKey() == y.mapKey() })
		})...)
	}
	sortClasses(pending)
	for _, e := range pending {
		if els, ok := b.genericElems(e); ok && (!first || b.cfg.GenericFromStart) {
			b.makeGeneric(e, els)
			continue
		}
		b.materialize(e)
	}
}

// takeGeneric takes the generic classes for which take is true out of
// the generic chains; it evicts the unused ones and returns the others.
func (b *builder) takeGeneric(take func(*classEntry) bool) []*classEntry {
	var out []*classEntry
	for e := range b.cls.generic {
		if !take(e) {
			continue
		}
		b.unGeneric(e)
		if e.refs == 0 {
			b.evictClass(e)
			continue
		}
		out = append(out, e)
	}
	return out
}

// sortClasses puts classes in direction and id order, so that what is
// done with them does not depend on map order.
func sortClasses(cs []*classEntry) {
	slices.SortFunc(cs, func(x, y *classEntry) int {
		return cmp.Or(cmp.Compare(dirIndex(x.ingress), dirIndex(y.ingress)), cmp.Compare(x.id, y.id))
	})
}

// lacksItems reports whether the generic chains lack a policy or profile
// of class e.
func (b *builder) lacksItems(e *classEntry) bool {
	l := b.lay[dirIndex(e.ingress)]
	for _, t := range e.ep.Tiers {
		for _, id := range t.Policies(e.ingress) {
			if pt, ok := b.policyTarget(id, e.ingress); ok && !l.has(pt.key) {
				return true
			}
		}
	}
	for i, p := range e.ep.ProfileIDs {
		if _, ok := l.pos[profileChain(p, e.ingress)]; e.have[i] && !ok {
			return true
		}
	}
	return false
}

// promote gives generic classes chains of their own, at most
// Config.SettleBatch of them; once none is left it drops the retained
// policies that are due (Config.RetainPoliciesFor) and lays the generic
// chains out without them. It records the change like a build; false
// when there is nothing to do.
func (b *builder) promote() bool {
	if !b.unsettled() {
		return false
	}
	b.dSets, b.dChains, b.dElems = map[string]*setSpec{}, map[string]*chainSpec{}, map[string]*elemJournal{}
	b.takeGeneric(func(e *classEntry) bool { return e.refs == 0 }) // unused: evicted
	// At most SettleBatch classes per transaction (lowest ids first), so
	// that a settle holds the agent's loop for a bounded time; the
	// retained policies and the layout wait for the last batch.
	used := slices.Collect(maps.Keys(b.cls.generic))
	sortClasses(used)
	if k := b.cfg.SettleBatch; k > 0 && len(used) > k {
		used = used[:k]
	}
	for _, e := range used {
		b.unGeneric(e)
		b.materialize(e)
	}
	if len(b.cls.generic) > 0 {
		return true
	}
	b.layPending = false
	now := b.cfg.Now()
	for id := range b.retained {
		if b.retainDue(id, now) {
			b.releaseRetained(id)
		}
	}
	b.forgetOrphans()
	b.layGeneric(true)
	b.layGeneric(false)
	b.layDirty = false // laid out with every policy and profile, in order
	for _, l := range b.lay {
		l.free, l.freed = append(l.free, l.freed...), nil
	}
	b.trimClasses()
	return true
}

// unsettled reports whether promote has something to do: generic
// classes, policies retained for Config.RetainPoliciesFor, or generic
// chains not laid out yet.
func (b *builder) unsettled() bool {
	if len(b.cls.generic) > 0 || b.layPending {
		return true
	}
	until := b.retainedUntil()
	return !until.IsZero() && !b.cfg.Now().Before(until)
}

// retainDue reports whether retained policy id is due for release at now.
func (b *builder) retainDue(id desired.PolicyID, now time.Time) bool {
	return b.cfg.RetainPoliciesFor < 0 || !now.Before(b.retained[id].left.Add(b.cfg.RetainPoliciesFor))
}

// retainedUntil returns when the first retained policy is due for
// release; zero when none is retained.
func (b *builder) retainedUntil() time.Time {
	if len(b.retained) == 0 {
		return time.Time{}
	}
	if b.oldestRetained.IsZero() {
		for _, e := range b.retained {
			if b.oldestRetained.IsZero() || e.left.Before(b.oldestRetained) {
				b.oldestRetained = e.left
			}
		}
	}
	return b.oldestRetained.Add(max(b.cfg.RetainPoliciesFor, 0))
}

// genericClasses counts the classes that run through a generic chain.
func (b *builder) genericClasses() int { return len(b.cls.generic) }
