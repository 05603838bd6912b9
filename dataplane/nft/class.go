package nft

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// A class is the chain of rules an endpoint needs in one direction (its
// tiers, policies, tier indexes and profiles), shared by every local
// endpoint with the same tiers, policies (and their footprints) and
// profiles (classKey). It lives in the policy table (B) as
// brindle-fc-<hash> (egress) or brindle-tc-<hash> (ingress), reached
// from the dispatch chain through a mark : verdict map keyed by the
// class id, or, while it is generic (generic.go), as elements of the
// generic guard set. The classify table (A) maps each workload
// interface to a chain that writes its class id into Config.ClassMask.
//
// Moving an endpoint to a class that already exists changes only table A
// (one verdict-map element), and the kernel validates only the table a
// transaction changes: a few hundred microseconds instead of a walk of
// every policy chain. A class no endpoint uses is retained (least
// recently used first out, Config.RetainClasses per direction), so a
// label that flips back costs the same. A retained class whose chain
// jumps to a chain that is gone (a deleted policy or profile) is deleted.
// A new class is generic until Settle (generic.go): a new policy
// combination then costs set elements, not rules.

// classEntry is one class: its chain in B, its mark-writing chain in A,
// its element of B's class map, the tier indexes its chain uses, and how
// many endpoints use it.
type classEntry struct {
	hash    string
	ingress bool
	id      uint32 // 1 .. ClassMask>>shift
	chain   *chainSpec
	setter  *chainSpec
	elem    elem
	idx     []*indexEntry
	targets []string // chains its chain and its indexes' chains and maps go to
	refs    int
	idle    uint64 // b.tick when refs fell to 0
	// ep and have are what the class's chain is rendered from (any of
	// its endpoints: they have the same key).
	ep   desired.Endpoint
	have []bool
	// generic: the class runs through its direction's generic chain;
	// gelems are its elements in the generic guard set. A class is
	// generic, or has a chain (chain != nil), or is pending until the
	// end of the build that created it.
	generic bool
	gelems  []elem
}

// classes is the builder's class bookkeeping, per direction (0 ingress,
// 1 egress).
type classes struct {
	byHash map[string]*classEntry
	byID   [2]map[uint32]*classEntry
	idle   [2]map[*classEntry]struct{}
	tick   uint64
	// pending holds the classes created by the current build;
	// generic the classes that run through a generic chain.
	pending []*classEntry
	generic map[*classEntry]struct{}
	// setters holds the mark chains of the ids no class has: a mark
	// chain depends only on its id, so it outlives its class and the
	// next class to take the id uses it (a label flip that creates a
	// class and evicts another then adds and deletes no chain). At most
	// the ids Config.ClassMask can number; nothing jumps to them.
	setters [2]map[uint32]*chainSpec
}

func newClasses() classes {
	return classes{
		byHash:  map[string]*classEntry{},
		byID:    [2]map[uint32]*classEntry{{}, {}},
		idle:    [2]map[*classEntry]struct{}{{}, {}},
		generic: map[*classEntry]struct{}{},
		setters: [2]map[uint32]*chainSpec{{}, {}},
	}
}

// classValue is class id n shifted into the mark bits.
func (b *builder) classValue(n uint32) uint32 {
	return n << bits.TrailingZeros32(b.cfg.ClassMask)
}

// maxClasses is the number of class ids per direction.
func (b *builder) maxClasses() uint32 {
	return b.cfg.ClassMask >> bits.TrailingZeros32(b.cfg.ClassMask)
}

func classMap(ingress bool) string {
	if ingress {
		return mapToClass
	}
	return mapFromClass
}

func dirName(ingress bool) string {
	if ingress {
		return "ingress"
	}
	return "egress"
}

// classKey identifies the class of an endpoint's chain for one
// direction: everything endpointChain renders it from (the tiers with
// policies in that direction, their default actions, the policies and
// their footprints, which decide tier indexes and pass-bit tests, and the
// profiles up to the first missing one). Equal keys render equal chains.
func (b *builder) classKey(ep desired.Endpoint, have []bool, ingress bool) string {
	d := dirIndex(ingress)
	var k strings.Builder
	k.WriteString(dirName(ingress))
	for _, t := range ep.Tiers {
		pols := t.Policies(ingress)
		if len(pols) == 0 {
			continue
		}
		fmt.Fprintf(&k, "\x00t%s\x00%d", t.Name, t.DefaultAction)
		for _, id := range pols {
			k.WriteString("\x00p" + id.String() + "\x00" + b.policies[id].sig(d))
		}
	}
	for i, p := range ep.ProfileIDs {
		k.WriteString("\x00r" + p)
		if !have[i] {
			k.WriteString("\x00missing")
			break
		}
	}
	return k.String()
}

// acquireClass returns the class of an endpoint's chain for one
// direction, creating it if no class has its key, and counts one more
// use of it. A new class gets its id and its mark chain in the classify
// table at once; whether it runs through the generic chain or gets a
// chain of its own is settled at the end of the build (settleClasses).
func (b *builder) acquireClass(ep desired.Endpoint, have []bool, ingress bool) (*classEntry, error) {
	h := hashID(b.classKey(ep, have, ingress))
	d := dirIndex(ingress)
	if e := b.cls.byHash[h]; e != nil {
		if e.refs == 0 {
			delete(b.cls.idle[d], e)
		}
		e.refs++
		return e, nil
	}
	id, err := b.allocClassID(ingress)
	if err != nil {
		return nil, err
	}
	e := &classEntry{hash: h, ingress: ingress, id: id, refs: 1, ep: ep, have: have}
	if e.setter = b.cls.setters[d][id]; e.setter != nil {
		delete(b.cls.setters[d], id)
	} else {
		var x rb
		x.markClass(b.cfg.ClassMask, b.classValue(id))
		e.setter = &chainSpec{name: classMarkChain(id, ingress), rank: 1,
			rules: []*ruleSpec{x.done(fmt.Sprintf("%s class %d", dirName(ingress), id))}}
		b.putChain(e.setter)
	}
	b.cls.byHash[h] = e
	b.cls.byID[d][id] = e
	b.cls.pending = append(b.cls.pending, e)
	return e, nil
}

// materialize gives class e a chain of its own in the policy table and
// its element in the class map (the kernel then validates the table).
func (b *builder) materialize(e *classEntry) {
	var used []*indexEntry
	c := b.endpointChain(e.ep, e.have, e.ingress, &used)
	c.name = classChain(e.hash, e.ingress)
	e.chain, e.idx = c, used
	e.elem = elem{key: binaryutil.NativeEndian.PutUint32(b.classValue(e.id)), jump: c.name}
	e.targets = jumpTargets(nil, c)
	for _, ix := range used {
		for _, ic := range ix.chains {
			e.targets = jumpTargets(e.targets, ic)
		}
		for _, m := range ix.sets {
			for _, el := range m.elems {
				if el.jump != "" {
					e.targets = append(e.targets, el.jump)
				}
			}
		}
	}
	b.putChain(c)
	b.setElemInPlace(classMap(e.ingress), e.elem, false)
}

// jumpTargets appends the chains c's rules jump or go to.
func jumpTargets(out []string, c *chainSpec) []string {
	for _, r := range c.rules {
		for _, x := range r.exprs {
			if v, ok := x.(*expr.Verdict); ok && v.Chain != "" {
				out = append(out, v.Chain)
			}
		}
	}
	return out
}

// releaseClass counts one use less of e; a class no endpoint uses is
// retained until trimClasses or allocClassID evicts it.
func (b *builder) releaseClass(e *classEntry) {
	e.refs--
	if e.refs == 0 {
		b.cls.tick++
		e.idle = b.cls.tick
		b.cls.idle[dirIndex(e.ingress)][e] = struct{}{}
	}
}

// evictClass removes an unused class from the model.
func (b *builder) evictClass(e *classEntry) {
	d := dirIndex(e.ingress)
	if e.chain != nil {
		b.dropChain(e.chain.name)
		b.setElemInPlace(classMap(e.ingress), e.elem, true)
		b.release(e.idx)
	}
	if e.generic {
		b.unGeneric(e)
	}
	b.cls.pending = slices.DeleteFunc(b.cls.pending, func(p *classEntry) bool { return p == e })
	b.cls.setters[d][e.id] = e.setter // kept for the id's next class
	delete(b.cls.idle[d], e)
	delete(b.cls.byID[d], e.id)
	delete(b.cls.byHash, e.hash)
}

// oldestIdle returns the least recently used unused class of a
// direction, or nil.
func (b *builder) oldestIdle(d int) *classEntry {
	var old *classEntry
	for e := range b.cls.idle[d] {
		if old == nil || e.idle < old.idle {
			old = e
		}
	}
	return old
}

// allocClassID returns the lowest free class id of a direction, evicting
// the least recently used unused class when every id is taken. With every
// id used by an endpoint it fails: the ruleset cannot be expressed in
// Config.ClassMask.
func (b *builder) allocClassID(ingress bool) (uint32, error) {
	d := dirIndex(ingress)
	limit := b.maxClasses()
	if uint32(len(b.cls.byID[d])) >= limit {
		old := b.oldestIdle(d)
		if old == nil {
			return 0, fmt.Errorf("local endpoints need more than %d distinct %s classes (distinct policy chains), the most Config.ClassMask %#08x can number (the agent derives it from IptablesMarkMask, at most 9 bits: 511 classes)",
				limit, dirName(ingress), b.cfg.ClassMask)
		}
		b.evictClass(old)
	}
	for n := uint32(1); n <= limit; n++ {
		if b.cls.byID[d][n] == nil {
			return n, nil
		}
	}
	panic("unreachable: a class id is free")
}

// trimClasses deletes the unused classes that jump to a chain no longer
// in the model, and the unused generic ones that list a policy the
// builder no longer has (when one was dropped since the last trim: a
// dropped policy with no rules one way, or with its verdict inline, has no
// chain, and the generic chains' slots can change without it), then the
// least recently used beyond Config.RetainClasses. A class with its own
// chain is fully determined by its key, so it can be used again.
func (b *builder) trimClasses() {
	keep := max(b.cfg.RetainClasses, 0)
	gone := func(id desired.PolicyID) bool { return b.policies[id] == nil && b.retained[id] == nil }
	// An idle class's targets were all there when it fell idle (its chain
	// jumped to them) or at the last trim: only a target dropped since
	// can be missing.
	checkTargets := b.droppedTarget
	b.droppedTarget = false
	for d := range b.cls.idle {
		var stale []*classEntry
		for e := range b.cls.idle[d] {
			if checkTargets && slices.ContainsFunc(e.targets, func(t string) bool { return b.m.chains[t] == nil }) ||
				b.forgot && e.generic && slices.ContainsFunc(e.ep.Tiers, func(t desired.TierPolicies) bool { return slices.ContainsFunc(t.Policies(e.ingress), gone) }) {
				stale = append(stale, e)
			}
		}
		for _, e := range stale {
			b.evictClass(e)
		}
		for len(b.cls.idle[d]) > keep {
			b.evictClass(b.oldestIdle(d))
		}
	}
	b.forgot = false
}
