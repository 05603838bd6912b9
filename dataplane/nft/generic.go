package nft

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// Generic classes: a new class without a new rule.
//
// A class chain of its own is rules, and on this kernel any transaction
// that adds a rule to the policy table makes the kernel validate the
// whole table at commit (about 8 ms at 5,000 policies). A transaction that
// only adds or deletes set elements is not validated. So a class created
// by a build that adds no rule to the policy table otherwise is made
// *generic*: it runs through its direction's generic chain, which holds,
// in evaluation order, one rule per policy, per tier end and per profile
// the table has, each guarded by a lookup of (class bits | slot number)
// in the direction's guard set:
//
//	chain brindle-tg {
//	    meta mark set meta mark & 0xfdffffff                             # tier default
//	    meta mark & 0x03ff0000 | 0x00000001 @brindle-to-generic jump brindle-pi-<a>
//	    meta mark & 0x03ff0000 | 0x00000002 @brindle-to-generic jump brindle-pi-<b>
//	    meta mark & 0x03ff0000 | 0x00000003 @brindle-to-generic drop   # end of tier default
//	    meta mark set meta mark & 0xfdffffff                             # profiles
//	    meta mark & 0x03ff0000 | 0x00000004 @brindle-to-generic jump brindle-pri-<p>
//	    drop
//	}
//
// A generic class has one element per policy, tier end (default Deny)
// and profile of its own chain, so for it the generic chain does exactly
// what its own chain would: the same policies in the same order, the
// pass bit in the key skipping the rest of a tier after a Pass exactly
// as the pass-bit tests do, the same tier ends and profiles, then drop.
// The dispatch chain sends a class that misses the class map and has the
// element (class bits | 0) to the generic chain.
//
// The price is per new connection: the generic chain looks up every
// slot (tens of nanoseconds each) instead of a tier index's few policies.
// So generic classes are transitional. Every build that adds rules to the
// policy table anyway gives every generic class a chain of its own
// (promotion) and lays the generic chains out anew; so does
// Dataplane.Settle, which the agent calls once it has been idle for a
// moment.
//
// A policy that leaves the state while a generic chain jumps to it keeps
// its chains and sets (it is retained) until the next promotion: deleting
// its slot would be a rule change, and if it comes back (a label flipping
// back) it costs no rule either.

// genericLayout is one direction's generic chain: the slot of each
// policy, tier end and profile, and the chains it jumps to.
type genericLayout struct {
	chain   *chainSpec
	pol     map[desired.PolicyID]uint32
	tierEnd map[string]uint32
	prof    map[string]uint32
	targets map[string]bool
}

// ClassMode chooses how a new class is programmed.
type ClassMode uint8

const (
	// ClassAuto makes a class generic when its build adds no rule to the
	// policy table otherwise, and gives it its own chain when it does.
	ClassAuto ClassMode = iota
	// ClassDirect gives every class its own chain at once.
	ClassDirect
	// ClassGeneric makes every class generic that the generic chain can
	// express (for tests of the generic chains' semantics).
	ClassGeneric
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

func compareOrder(a, b *float64) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return cmp.Compare(*a, *b)
}

// layGeneric lays out one direction's generic chain for the policies and
// profiles the builder has: tiers in the order the endpoints list them,
// policies in a tier by order, name, namespace and kind (as calc sorts
// them), profiles in the order the endpoints list them.
func (b *builder) layGeneric(ingress bool) *genericLayout {
	l := &genericLayout{pol: map[desired.PolicyID]uint32{}, tierEnd: map[string]uint32{},
		prof: map[string]uint32{}, targets: map[string]bool{}}
	c := &chainSpec{name: genericChain(ingress), rank: 2}
	l.chain = c
	add := func(x *rb, comment string) { c.rules = append(c.rules, x.done(comment)) }
	if b.cfg.ClassMode == ClassDirect {
		var x rb
		x.verdict(expr.VerdictDrop, "")
		add(&x, dirName(ingress)+": no generic classes")
		l.pol, l.tierEnd, l.prof, l.targets = nil, nil, nil, nil
		return l
	}
	M, P := b.cfg.ClassMask, b.cfg.PassMark
	set := genericSet(ingress)
	n := uint32(0)
	// slot adds a guarded rule; false when slot numbers ran out.
	slot := func(comment string, verdict expr.VerdictKind, chain string) (uint32, bool) {
		n++
		v, ok := b.slotBits(n)
		if !ok {
			return 0, false
		}
		var x rb
		x.markInSet(M|P, v, set)
		x.verdict(verdict, chain)
		add(&x, comment)
		if chain != "" {
			l.targets[chain] = true
		}
		return n, true
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
	byTier := map[string][]desired.PolicyID{}
	var tierNames []string
	for id := range b.policies {
		if len(byTier[id.Tier]) == 0 {
			tierNames = append(tierNames, id.Tier)
		}
		byTier[id.Tier] = append(byTier[id.Tier], id)
	}
	profNames := make([]string, 0, len(b.profiles))
	for name := range b.profiles {
		profNames = append(profNames, name)
	}
	ok := true
	for _, t := range mergeOrder(tierSeqs, tierNames) {
		pols := byTier[t]
		if len(pols) == 0 || !ok {
			continue
		}
		slices.SortFunc(pols, func(x, y desired.PolicyID) int {
			return cmp.Or(compareOrder(b.policies[x].order, b.policies[y].order),
				cmp.Compare(x.Name, y.Name), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Kind, y.Kind))
		})
		var x rb
		x.markClear(P)
		add(&x, "tier "+t)
		for _, id := range pols {
			var s uint32
			if s, ok = slot("policy "+id.String(), expr.VerdictJump, policyChain(id, ingress)); !ok {
				break
			}
			l.pol[id] = s
		}
		if ok {
			l.tierEnd[t], ok = slot("end of tier "+t+": default deny", expr.VerdictDrop, "")
		}
	}
	var x rb
	x.markClear(P)
	add(&x, "profiles")
	for _, p := range mergeOrder(profSeqs, profNames) {
		if _, have := b.profiles[p]; !have || !ok {
			continue
		}
		l.prof[p], ok = slot("profile "+p, expr.VerdictJump, profileChain(p, ingress))
	}
	x = rb{}
	x.verdict(expr.VerdictDrop, "")
	add(&x, dirName(ingress)+": no profile allowed")
	if !ok {
		// More slots than the free mark bits can number: no generic
		// classes (every class gets its own chain).
		l.pol, l.tierEnd, l.prof, l.targets = nil, nil, nil, nil
		x = rb{}
		x.verdict(expr.VerdictDrop, "")
		c.rules = []*ruleSpec{x.done(fmt.Sprintf("%s: more policies than the mark can number", dirName(ingress)))}
	}
	return l
}

// genericElems returns class e's elements in its generic guard set, or
// false when the generic chain cannot express its chain (a policy,
// profile or tier end without a slot, slots out of order, a missing
// profile).
func (b *builder) genericElems(e *classEntry) ([]elem, bool) {
	l := b.lay[dirIndex(e.ingress)]
	if l == nil || l.pol == nil {
		return nil, false
	}
	v := b.classValue(e.id)
	key := func(slot uint32) elem {
		s, _ := b.slotBits(slot)
		return elem{key: binaryutil.NativeEndian.PutUint32(v | s)}
	}
	out := []elem{key(0)}
	last := uint32(0)
	next := func(slot uint32, ok bool) bool {
		if !ok || slot <= last {
			return false
		}
		last = slot
		out = append(out, key(slot))
		return true
	}
	for _, t := range e.ep.Tiers {
		pols := t.Policies(e.ingress)
		if len(pols) == 0 {
			continue
		}
		for _, id := range pols {
			s, ok := l.pol[id]
			if !next(s, ok) {
				return nil, false
			}
		}
		if t.DefaultAction == desired.Deny {
			s, ok := l.tierEnd[t.Name]
			if !next(s, ok) {
				return nil, false
			}
		}
	}
	for i, p := range e.ep.ProfileIDs {
		s, ok := l.prof[p]
		if !e.have[i] || !next(s, ok) {
			return nil, false
		}
	}
	return out, true
}

// makeGeneric makes class e run through the generic chain.
func (b *builder) makeGeneric(e *classEntry, els []elem) {
	set := b.vmap(genericSet(e.ingress))
	for _, el := range els {
		set.elems[el.mapKey()] = el
	}
	e.generic, e.gelems = true, els
	e.targets = e.targets[:0]
	l := b.lay[dirIndex(e.ingress)]
	for _, t := range e.ep.Tiers {
		for _, id := range t.Policies(e.ingress) {
			e.targets = append(e.targets, policyChain(id, e.ingress))
		}
	}
	for _, p := range e.ep.ProfileIDs {
		e.targets = append(e.targets, profileChain(p, e.ingress))
	}
	e.targets = append(e.targets, l.chain.name)
	b.cls.generic[e] = struct{}{}
}

// unGeneric takes class e out of the generic chain.
func (b *builder) unGeneric(e *classEntry) {
	set := b.vmap(genericSet(e.ingress))
	for _, el := range e.gelems {
		delete(set.elems, el.mapKey())
	}
	e.generic, e.gelems, e.targets = false, nil, nil
	delete(b.cls.generic, e)
}

// validatesPolicyTable reports whether the current build adds a rule to
// the policy table (the kernel then validates it whole at commit).
func (b *builder) validatesPolicyTable() bool {
	for name, old := range b.dChains {
		if inA(name) {
			continue
		}
		c := b.m.chains[name]
		if c != nil && len(c.rules) > 0 && (old == nil || !c.sameRules(old)) {
			return true
		}
	}
	return false
}

// genericStale reports whether a generic chain jumps to a chain the
// current build removed.
func (b *builder) genericStale() bool {
	for name := range b.dChains {
		if b.m.chains[name] != nil {
			continue
		}
		for _, l := range b.lay {
			if l != nil && l.targets[name] {
				return true
			}
		}
	}
	return false
}

// settleClasses decides, at the end of a build, how the classes it
// created are programmed: generic when the build otherwise adds no rule
// to the policy table and the generic chain can express them all, else
// every class (new and generic) gets its own chain and the generic
// chains are laid out anew.
func (b *builder) settleClasses() {
	pending := b.cls.pending
	b.cls.pending = nil
	if b.cfg.ClassMode == ClassAuto && b.lay[0] != nil && !b.validatesPolicyTable() && !b.genericStale() {
		els := make([][]elem, len(pending))
		fits := true
		for i, e := range pending {
			if els[i], fits = b.genericElems(e); !fits {
				break
			}
		}
		if fits {
			for i, e := range pending {
				b.makeGeneric(e, els[i])
			}
			return
		}
	}
	b.promoteAll(pending)
}

// promoteAll gives every pending and generic class a chain of its own
// (ClassGeneric: re-makes them generic), releases retained policies and
// lays out the generic chains anew. Unused generic classes are evicted.
func (b *builder) promoteAll(pending []*classEntry) {
	for id, e := range b.retained {
		b.unuse(e, false)
		delete(b.retained, id)
	}
	for id := range b.orphanSets {
		if b.refs[setUse{id, false}] == 0 && b.refs[setUse{id, true}] == 0 {
			delete(b.sets, id)
		}
		delete(b.orphanSets, id)
	}
	for e := range b.cls.generic {
		b.unGeneric(e)
		if e.refs == 0 {
			b.evictClass(e)
			continue
		}
		pending = append(pending, e)
	}
	for i, ingress := range []bool{true, false} {
		if b.lay[i] != nil && b.cfg.ClassMode == ClassDirect {
			continue // no slots: nothing to lay out again
		}
		l := b.layGeneric(ingress)
		if old := b.m.chains[l.chain.name]; old != nil && old.sameRules(l.chain) {
			l.chain = old
		}
		b.lay[i] = l
		b.putChain(l.chain)
	}
	// Class ids in order, so that the result does not depend on map order.
	slices.SortFunc(pending, func(x, y *classEntry) int {
		return cmp.Or(cmp.Compare(dirIndex(x.ingress), dirIndex(y.ingress)), cmp.Compare(x.id, y.id))
	})
	for _, e := range pending {
		if b.cfg.ClassMode == ClassGeneric {
			if els, ok := b.genericElems(e); ok {
				b.makeGeneric(e, els)
				continue
			}
		}
		b.materialize(e)
	}
	b.trimClasses()
}

// promote gives every generic class a chain of its own and drops
// retained policies, recording the change like a build; false when there
// is nothing to do.
func (b *builder) promote() bool {
	if len(b.cls.generic) == 0 && len(b.retained) == 0 {
		return false
	}
	b.dSets, b.dChains = map[string]*setSpec{}, map[string]*chainSpec{}
	b.promoteAll(nil)
	return true
}

// genericClasses counts the classes that run through a generic chain.
func (b *builder) genericClasses() int { return len(b.cls.generic) }
