package nft

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// A class is the chain of rules an endpoint needs in one direction (its
// tiers, policies, tier indexes and profiles), shared by every local
// endpoint whose chain renders to the same rules. It lives in the policy
// table (B) as brindle-fc-<hash> (egress) or brindle-tc-<hash>
// (ingress), reached from the dispatch chain through a mark : verdict map
// keyed by the class id. The classify table (A) maps each workload
// interface to a chain that writes its class id into Config.ClassMask.
//
// Moving an endpoint to a class that already exists changes only table A
// (one verdict-map element), and the kernel validates only the table a
// transaction changes: a few hundred microseconds instead of a walk of
// every policy chain. A class no endpoint uses is retained (least
// recently used first out, Config.RetainClasses per direction), so a
// label that flips back costs the same. A retained class whose chain
// jumps to a chain that is gone (a deleted policy or profile) is deleted.

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
}

// classes is the builder's class bookkeeping, per direction (0 ingress,
// 1 egress).
type classes struct {
	byHash map[string]*classEntry
	byID   [2]map[uint32]*classEntry
	idle   [2]map[*classEntry]struct{}
	tick   uint64
}

func newClasses() classes {
	return classes{
		byHash: map[string]*classEntry{},
		byID:   [2]map[uint32]*classEntry{{}, {}},
		idle:   [2]map[*classEntry]struct{}{{}, {}},
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

// acquireClass returns the class for an endpoint chain (unnamed, as
// endpointChain renders it) built with the tier indexes in used, creating
// the class if none has these rules, and counts one more use of it.
func (b *builder) acquireClass(c *chainSpec, used []*indexEntry, ingress bool) (*classEntry, error) {
	var key strings.Builder
	key.WriteString(dirName(ingress))
	for _, r := range c.rules {
		key.WriteString("\x00" + r.id)
	}
	h := hashID(key.String())
	d := dirIndex(ingress)
	if e := b.cls.byHash[h]; e != nil {
		b.release(used) // the class holds its own uses
		if e.refs == 0 {
			delete(b.cls.idle[d], e)
		}
		e.refs++
		return e, nil
	}
	id, err := b.allocClassID(ingress)
	if err != nil {
		b.release(used)
		return nil, err
	}
	c.name = classChain(h, ingress)
	e := &classEntry{hash: h, ingress: ingress, id: id, chain: c, idx: used, refs: 1}
	v := b.classValue(id)
	var x rb
	x.markClass(b.cfg.ClassMask, v)
	e.setter = &chainSpec{name: classMarkChain(id, ingress), rank: 1,
		rules: []*ruleSpec{x.done(fmt.Sprintf("%s class %d", dirName(ingress), id))}}
	e.elem = elem{key: binaryutil.NativeEndian.PutUint32(v), jump: c.name}
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
	b.putChain(e.setter)
	b.vmap(classMap(ingress)).elems[e.elem.mapKey()] = e.elem
	b.cls.byHash[h] = e
	b.cls.byID[d][id] = e
	return e, nil
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
	b.dropChain(e.chain.name)
	b.dropChain(e.setter.name)
	delete(b.vmap(classMap(e.ingress)).elems, e.elem.mapKey())
	b.release(e.idx)
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
// in the model, then the least recently used beyond Config.RetainClasses.
func (b *builder) trimClasses() {
	keep := max(b.cfg.RetainClasses, 0)
	for d := range b.cls.idle {
		var stale []*classEntry
		for e := range b.cls.idle[d] {
			if slices.ContainsFunc(e.targets, func(t string) bool { return b.m.chains[t] == nil }) {
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
}
