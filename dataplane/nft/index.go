package nft

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/nftables/expr"
)

// A tier index replaces a tier's linear walk (one jump per policy, each
// costing a new connection ~90 ns on the test machine) by two verdict-map
// lookups that lead to a list of only the policies that can match the
// packet's protocol and destination port, in tier order:
//
//	chain brindle-x-<h> {                    # jumped to by the endpoint chain
//		meta l4proto vmap @xp-<h>            # every protocol 0-255 has an element
//		drop                                 # only if l4proto cannot be read
//	}
//	chain brindle-x-<h>-6 {                  # a protocol some policy limits to ports
//		th dport vmap @xd-<h>-6              # every port 0-65535 has an element
//		drop                                 # only if the port cannot be read
//	}
//	chain brindle-xl-<list> {                # the policies for one key range
//		jump brindle-pi-<a>
//		meta mark & <pass> == 0 jump brindle-pi-<b>
//	}
//
// A key range no policy can match returns from the map; a range only one
// policy can match goes straight to that policy's chain.
//
// Skipping a policy none of whose rules can match is exact: such a policy
// chain would return without a verdict. Every path visits a superset of
// the policies that can match, in tier order, so Pass, Log, Allow and
// Deny behave as in the linear walk. The maps cover their whole key space,
// so the drop after each lookup is reached only when the key cannot be
// read: a header conntrack has already called invalid (and the dispatch
// chain dropped), or a map damaged behind our back (Resync repairs it);
// either way the index fails closed. An index is shared by every endpoint with the
// same tier policies in the same direction, and named by a hash of those
// policies and of what each can match (its footprint), so a footprint
// change makes a new index rather than editing one in place.

// footprint is what one policy, in one direction, can match on the
// packet's protocol and destination port.
type footprint struct {
	// wild: some rule matches regardless of protocol.
	wild bool
	// full holds protocols some rule matches on any port.
	full map[uint8]bool
	// ports holds, for protocols not in full, the destination port
	// ranges rules match.
	ports map[uint8][]portRange
	// pass: some rule's action is Pass, so after this policy the pass
	// bit may be set (later policies in the tier test it; the tier's end
	// drop does too). Without a Pass before them they need no test.
	pass bool
	// sig is the canonical text of the above, for index hashes.
	sig string
}

// portProtocol reports whether p has ports a rule can match.
func portProtocol(p uint8) bool {
	return p == desired.ProtoTCP || p == desired.ProtoUDP || p == desired.ProtoSCTP || p == protoUDPLite
}

const protoUDPLite = 136

func footprintOf(rules []desired.Rule) footprint {
	f := matchFootprint(rules)
	f.pass = slices.ContainsFunc(rules, func(r desired.Rule) bool { return r.Action == desired.Pass })
	f.sig = f.signature()
	return f
}

// matchFootprint is footprintOf's protocol and port part.
func matchFootprint(rules []desired.Rule) footprint {
	var f footprint
	for _, r := range rules {
		if r.Protocol == nil {
			return footprint{wild: true}
		}
		p := *r.Protocol
		if f.full[p] {
			continue
		}
		if !portProtocol(p) || len(r.Dst.Ports) == 0 || len(r.Dst.NamedPortIPSetIDs) > 0 {
			// A named port's protocol and port live in its set, which
			// changes with endpoints: treat it as any port.
			if f.full == nil {
				f.full = map[uint8]bool{}
			}
			f.full[p] = true
			delete(f.ports, p)
			continue
		}
		if f.ports == nil {
			f.ports = map[uint8][]portRange{}
		}
		f.ports[p] = append(f.ports[p], ranges(r.Dst.Ports)...)
	}
	return f
}

// empty reports whether no packet can match.
func (f footprint) empty() bool { return !f.wild && len(f.full) == 0 && len(f.ports) == 0 }

// has reports whether the footprint can match protocol p on port port
// (any port when anyPort).
func (f footprint) has(p uint8, port uint16, anyPort bool) bool {
	if f.wild || f.full[p] {
		return true
	}
	rs, ok := f.ports[p]
	if !ok {
		return false
	}
	if anyPort {
		return true
	}
	for _, r := range rs {
		if port >= r.min && port <= r.max {
			return true
		}
	}
	return false
}

// signature computes the canonical text of the footprint.
func (f footprint) signature() string {
	if f.pass {
		g := f
		g.pass = false
		return "P" + g.signature()
	}
	if f.wild {
		return "*"
	}
	var parts []string
	for p := range f.full {
		parts = append(parts, protoNumber(p))
	}
	for p, rs := range f.ports {
		rs = slices.Clone(rs)
		slices.SortFunc(rs, func(a, b portRange) int { return int(a.min) - int(b.min) })
		var b strings.Builder
		b.WriteString(protoNumber(p))
		for _, r := range rs {
			fmt.Fprintf(&b, ":%d-%d", r.min, r.max)
		}
		parts = append(parts, b.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func protoNumber(p uint8) string { return strconv.Itoa(int(p)) }

// indexEntry is one tier index: its chains and maps, and how many
// endpoint chains use it.
type indexEntry struct {
	hash   string
	chains []*chainSpec
	sets   []*setSpec
	refs   int
}

// indexBudget caps the jumps in an index's list chains: overlapping port
// ranges can make many lists of many policies, and past this the linear
// walk is the better trade.
func indexBudget(policies int) int { return 8*policies + 64 }

// tierIndex returns the chain to jump to for a tier whose policies (in
// one direction) are pols, building or sharing an index, or "" when the
// tier is walked linearly: too few policies, or an index over budget.
// Each index returned is appended to *used and must be released.
func (b *builder) tierIndex(pols []desired.PolicyID, ingress bool, used *[]*indexEntry) string {
	if b.cfg.IndexMinPolicies < 0 || len(pols) < b.cfg.IndexMinPolicies {
		return ""
	}
	fps := make([]footprint, len(pols))
	var key strings.Builder
	if ingress {
		key.WriteString("in")
	} else {
		key.WriteString("out")
	}
	for i, id := range pols {
		fps[i] = b.policies[id].fp[dirIndex(ingress)]
		fmt.Fprintf(&key, "\x00%s=%s", policyChain(id, ingress), b.policies[id].sig(dirIndex(ingress)))
	}
	h := hashID(key.String())
	if e := b.indexes[h]; e != nil {
		e.refs++
		*used = append(*used, e)
		return indexChain(h)
	}
	e, ok := b.buildIndex(h, ingress, pols, fps)
	if !ok {
		return ""
	}
	e.refs = 1
	for _, c := range e.chains {
		b.putChain(c)
	}
	for _, s := range e.sets {
		b.putSet(s)
	}
	b.indexes[h] = e
	*used = append(*used, e)
	return indexChain(h)
}

// release drops one use of each index; an index nobody uses leaves the
// model.
func (b *builder) release(used []*indexEntry) {
	for _, e := range used {
		e.refs--
		if e.refs > 0 {
			continue
		}
		for _, c := range e.chains {
			b.dropChain(c.name)
		}
		for _, s := range e.sets {
			b.dropSet(s.name)
		}
		delete(b.indexes, e.hash)
	}
}

func dirIndex(ingress bool) int {
	if ingress {
		return 0
	}
	return 1
}

// buildIndex builds the chains and maps of index h, or reports that it
// would exceed the budget.
func (b *builder) buildIndex(h string, ingress bool, pols []desired.PolicyID, fps []footprint) (*indexEntry, bool) {
	e := &indexEntry{hash: h}
	targets := make([]policyTarget, len(pols)) // of those with rules (footprints not empty)
	for i, id := range pols {
		targets[i], _ = b.policies[id].target(ingress)
	}
	lists := map[string]string{} // list key -> chain name
	jumps, budget := 0, indexBudget(len(pols))
	list := func(keep func(footprint) bool) string {
		if jumps > budget {
			return ""
		}
		var idx []int
		var key strings.Builder
		for i, f := range fps {
			if !f.empty() && keep(f) {
				idx = append(idx, i)
				fmt.Fprintf(&key, "%d,", i)
			}
		}
		if name, ok := lists[key.String()]; ok {
			return name
		}
		// No policy: the element returns. One policy: the element goes
		// to its chain, whose end returns to the endpoint chain as the
		// list's would. Each list chain is more for the kernel to
		// validate on every transaction that adds a rule to the table.
		switch {
		case len(idx) == 0:
			lists[key.String()] = ""
			return ""
		case len(idx) == 1 && targets[idx[0]].chain != "": // not inline
			name := targets[idx[0]].chain
			jumps++
			lists[key.String()] = name
			return name
		}
		c := &chainSpec{name: indexListChain(h, key.String()), rank: 2}
		passBefore := false
		for _, i := range idx {
			var x rb
			if passBefore {
				x.markTest(b.cfg.PassMark, true)
			}
			passBefore = passBefore || fps[i].pass
			x.verdict(targets[i].verdict, targets[i].chain)
			c.rules = append(c.rules, x.done("policy "+pols[i].String()))
		}
		jumps += len(idx)
		lists[key.String()] = c.name
		e.chains = append(e.chains, c)
		return c.name
	}

	// Protocols some policy names, and for each where the packet goes.
	var protos []uint8
	seen := map[uint8]bool{}
	for _, f := range fps {
		for p := range f.full {
			seen[p] = true
		}
		for p := range f.ports {
			seen[p] = true
		}
	}
	if len(seen) == 0 {
		return nil, false // every policy matches any protocol: nothing to index
	}
	for p := range seen {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	target := map[uint8]string{}
	for _, p := range protos {
		ranged := false
		for _, f := range fps {
			if _, ok := f.ports[p]; ok {
				ranged = true
			}
		}
		if !ranged {
			target[p] = list(func(f footprint) bool { return f.has(p, 0, true) })
			continue
		}
		// Elementary port intervals: every range start and every range
		// end + 1 is a boundary.
		cuts := map[int]bool{0: true}
		for _, f := range fps {
			for _, r := range f.ports[p] {
				cuts[int(r.min)] = true
				cuts[int(r.max)+1] = true
			}
		}
		var bounds []int
		for c := range cuts {
			if c <= 0xffff {
				bounds = append(bounds, c)
			}
		}
		slices.Sort(bounds)
		ports := &setSpec{name: indexPortMap(h, p), kind: kindPortVmap,
			comment: "tier index: " + protoName(p) + " by destination port", elems: map[string]elem{}}
		var prev *elem
		for _, lo := range bounds {
			jump := list(func(f footprint) bool { return f.has(p, uint16(lo), false) })
			if prev != nil && prev.jump == jump {
				continue // same list: the previous interval extends
			}
			if prev != nil {
				prev.end = be16(uint16(lo))
				ports.elems[prev.mapKey()] = *prev
			}
			prev = &elem{key: be16(uint16(lo)), jump: jump}
		}
		ports.elems[prev.mapKey()] = *prev
		c := &chainSpec{name: indexPortChain(h, p), rank: 2}
		var x rb
		x.dportVmap(ports.name)
		c.rules = append(c.rules, x.done(protoName(p)+" by destination port"))
		x = rb{}
		x.verdict(expr.VerdictDrop, "")
		c.rules = append(c.rules, x.done("no port to read: fail closed"))
		e.chains = append(e.chains, c)
		e.sets = append(e.sets, ports)
		target[p] = c.name
	}

	// The protocol map covers 0-255: protocols no policy names go to
	// the policies that match any protocol.
	wild := list(func(f footprint) bool { return f.wild })
	pm := &setSpec{name: indexProtoMap(h), kind: kindProtoVmap, comment: "tier index by protocol", elems: map[string]elem{}}
	var prev *elem
	for v := 0; v <= 0xff; v++ {
		jump, ok := target[uint8(v)]
		if !ok {
			jump = wild
		}
		if prev != nil && prev.jump == jump {
			continue
		}
		if prev != nil {
			prev.end = []byte{uint8(v)}
			pm.elems[prev.mapKey()] = *prev
		}
		prev = &elem{key: []byte{uint8(v)}, jump: jump}
	}
	pm.elems[prev.mapKey()] = *prev

	c := &chainSpec{name: indexChain(h), rank: 2}
	var x rb
	x.l4protoVmap(pm.name)
	c.rules = append(c.rules, x.done("tier index of "+policies(len(pols))))
	x = rb{}
	x.verdict(expr.VerdictDrop, "")
	c.rules = append(c.rules, x.done("no protocol to read: fail closed"))
	e.chains = append(e.chains, c)
	e.sets = append(e.sets, pm)
	if jumps > budget {
		return nil, false
	}
	return e, true
}

func policies(n int) string {
	if n == 1 {
		return "1 policy"
	}
	return fmt.Sprintf("%d policies", n)
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
