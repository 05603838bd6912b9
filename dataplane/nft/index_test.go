package nft

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/go-cmp/cmp"
)

// canMatch reports whether rule r can match a packet of protocol p to
// destination port port, read straight from the rule (not through a
// footprint).
func canMatch(r desired.Rule, p uint8, port uint16) bool {
	if r.Protocol == nil {
		return true
	}
	if *r.Protocol != p {
		return false
	}
	if !portProtocol(p) || len(r.Dst.Ports) == 0 || len(r.Dst.NamedPortIPSetIDs) > 0 {
		return true
	}
	return slices.ContainsFunc(r.Dst.Ports, func(pr desired.PortRange) bool { return port >= pr.Min && port <= pr.Max })
}

// walkIndex follows index h in model m for a packet (p, port) the way
// the kernel does and returns the policy chains the list reached jumps
// to, in order.
func walkIndex(t *testing.T, m *model, h string, p uint8, port uint16) []string {
	t.Helper()
	lookup := func(set string, key []byte) string {
		s := m.sets[set]
		if s == nil {
			t.Fatalf("map %s missing", set)
		}
		var hit string
		found := false
		for _, e := range s.elems {
			if bytes.Compare(e.key, key) <= 0 && (e.end == nil || bytes.Compare(key, e.end) < 0) {
				if found {
					t.Fatalf("map %s: key %x in two intervals", set, key)
				}
				hit, found = e.jump, true
			}
		}
		if !found {
			t.Fatalf("map %s: key %x in no interval", set, key)
		}
		return hit
	}
	c := lookup(indexProtoMap(h), []byte{p})
	if c == indexPortChain(h, p) {
		c = lookup(indexPortMap(h, p), be16(port))
	}
	switch {
	case c == "": // return: no policy
		return nil
	case strings.HasPrefix(c, prefix+"pi-"), strings.HasPrefix(c, prefix+"po-"):
		return []string{c} // straight to the only policy
	}
	if m.chains[c] == nil {
		t.Fatalf("map element goes to %s, not in the model", c)
	}
	var out []string
	for _, r := range m.chains[c].rules {
		out = append(out, r.text[strings.LastIndex(r.text, " ")+1:])
	}
	return out
}

func TestTierIndexVisitsExactlyThePoliciesThatCanMatch(t *testing.T) {
	protos := []uint8{desired.ProtoTCP, desired.ProtoUDP, desired.ProtoICMP, desired.ProtoSCTP}
	singleInline := 0 // list chains of one inline policy seen
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		b := newBuilder(Config{IndexMinPolicies: 1}.withDefaults())
		b.dSets, b.dChains = map[string]*setSpec{}, map[string]*chainSpec{}
		n := 1 + r.IntN(30)
		var pols []desired.PolicyID
		rules := map[desired.PolicyID][]desired.Rule{}
		inline := map[desired.PolicyID]bool{}
		for i := range n {
			id := desired.PolicyID{Tier: "default", Name: fmt.Sprintf("p%d", i), Kind: "GlobalNetworkPolicy"}
			var rs []desired.Rule
			for range r.IntN(3) { // zero rules: a policy that can match nothing
				var ru desired.Rule
				if r.IntN(6) > 0 {
					p := protos[r.IntN(len(protos))]
					ru.Protocol = &p
					if portProtocol(p) && r.IntN(4) > 0 {
						for range 1 + r.IntN(2) {
							lo := uint16(r.IntN(40)) * 10
							ru.Dst.Ports = append(ru.Dst.Ports, desired.PortRange{Min: lo, Max: lo + uint16(r.IntN(3))*10})
						}
					}
					if r.IntN(8) == 0 {
						ru.Dst.NamedPortIPSetIDs = []string{"n:http"}
					}
				}
				rs = append(rs, ru)
			}
			pols = append(pols, id)
			rules[id] = rs
			e := &rulesEntry{fp: [2]footprint{footprintOf(rs), footprintOf(rs)}}
			switch {
			case len(rs) == 1 && rs[0].Protocol == nil:
				// An unconditional rule: the policy's verdict is
				// inline, it has no chain (buildRules).
				e.inline = [2]inlineVerdict{inlineAccept, inlineAccept}
				inline[id] = true
			case len(rs) > 0:
				e.chains = [2]*chainSpec{{name: policyChain(id, true)}, {name: policyChain(id, false)}}
			}
			b.policies[id] = e
		}
		var used []*indexEntry
		name := b.tierIndex(pols, true, &used)
		if name == "" {
			// Only a tier where every policy matches any protocol (or
			// none) is left unindexed at this size.
			for _, id := range pols {
				if f := b.policies[id].fp[0]; !f.wild && !f.empty() {
					t.Fatalf("seed %d: tier with protocol-specific policy %s not indexed", seed, id)
				}
			}
			continue
		}
		h := strings.TrimPrefix(name, indexChain(""))
		for _, p := range append(protos, 47) {
			for port := range uint16(420) {
				var want []string
				for _, id := range pols {
					switch {
					case !slices.ContainsFunc(rules[id], func(ru desired.Rule) bool { return canMatch(ru, p, port) }):
					case inline[id]:
						want = append(want, "accept")
					default:
						want = append(want, policyChain(id, true))
					}
				}
				if diff := cmp.Diff(want, walkIndex(t, b.m, h, p, port)); diff != "" {
					t.Fatalf("seed %d, protocol %d port %d (-want +got):\n%s", seed, p, port, diff)
				}
			}
		}
		// A list chain is made only for two policies or more, or for
		// one whose verdict is inline.
		for name, c := range b.m.chains {
			if strings.HasPrefix(name, prefix+"xl-") && len(c.rules) == 1 && strings.HasSuffix(c.rules[0].text, "accept") {
				singleInline++
			}
			if strings.HasPrefix(name, prefix+"xl-") && len(c.rules) < 2 && !strings.HasSuffix(c.rules[0].text, "accept") {
				t.Fatalf("seed %d: list chain %s has %d rules", seed, name, len(c.rules))
			}
		}
		// A key that cannot be read fails closed.
		for name, c := range b.m.chains {
			if strings.HasPrefix(name, indexChain(h)) && c.rules[len(c.rules)-1].text != "drop" {
				t.Fatalf("seed %d: %s does not end in drop:\n%s", seed, name, chainText(c))
			}
		}
		// Releasing the last use removes every object of the index.
		b.release(used)
		for name := range b.m.chains {
			if strings.Contains(name, h) || strings.HasPrefix(name, prefix+"xl-") {
				t.Fatalf("seed %d: chain %s left after release", seed, name)
			}
		}
		if len(b.m.sets) != 6 || len(b.indexes) != 0 { // the 4 fixed maps and 2 generic sets
			t.Fatalf("seed %d: %d sets, %d indexes left after release", seed, len(b.m.sets), len(b.indexes))
		}
	}
	if singleInline == 0 {
		t.Error("no seed made a list of one policy whose verdict is inline")
	}
}

// chainText is a chain's rules as text, one per line.
func chainText(c *chainSpec) string {
	var s []string
	for _, r := range c.rules {
		s = append(s, r.text)
	}
	return strings.Join(s, "\n")
}

func TestTierIndexSharedAndOverBudget(t *testing.T) {
	b := newBuilder(Config{IndexMinPolicies: 2}.withDefaults())
	b.dSets, b.dChains = map[string]*setSpec{}, map[string]*chainSpec{}
	tcp := uint8(desired.ProtoTCP)
	var pols []desired.PolicyID
	for i := range 3 {
		id := desired.PolicyID{Tier: "default", Name: fmt.Sprint(i), Kind: "GlobalNetworkPolicy"}
		rs := []desired.Rule{{Protocol: &tcp, Dst: desired.Match{Ports: []desired.PortRange{{Min: uint16(80 + i), Max: uint16(80 + i)}}}}}
		b.policies[id] = &rulesEntry{fp: [2]footprint{footprintOf(rs), footprintOf(rs)}}
		pols = append(pols, id)
	}
	var used []*indexEntry
	if b.tierIndex(pols[:1], true, &used) != "" {
		t.Fatal("a tier below IndexMinPolicies was indexed")
	}
	a1 := b.tierIndex(pols, true, &used)
	a2 := b.tierIndex(pols, true, &used)
	if a1 == "" || a1 != a2 || len(used) != 2 || used[0] != used[1] || used[0].refs != 2 {
		t.Fatalf("same tier twice: %q %q, %d uses, refs %d; want one shared index", a1, a2, len(used), used[0].refs)
	}
	if out := b.tierIndex(pols, false, &used); out == a1 || out == "" {
		t.Fatalf("egress index %q: want its own", out)
	}
	b.release(used[:1])
	if b.m.chains[a1] == nil {
		t.Fatal("index dropped while still used")
	}

	// Nested ranges: policy i matches ports [i, 1000-i], so n policies
	// make 2n lists of up to n jumps: over budget, walked linearly.
	b2 := newBuilder(Config{IndexMinPolicies: 2}.withDefaults())
	b2.dSets, b2.dChains = map[string]*setSpec{}, map[string]*chainSpec{}
	var nested []desired.PolicyID
	for i := range 200 {
		id := desired.PolicyID{Tier: "default", Name: fmt.Sprint(i), Kind: "GlobalNetworkPolicy"}
		rs := []desired.Rule{{Protocol: &tcp, Dst: desired.Match{Ports: []desired.PortRange{{Min: uint16(i), Max: uint16(1000 - i)}}}}}
		b2.policies[id] = &rulesEntry{fp: [2]footprint{footprintOf(rs), footprintOf(rs)}}
		nested = append(nested, id)
	}
	var used2 []*indexEntry
	if got := b2.tierIndex(nested, true, &used2); got != "" || len(b2.m.chains) != 0 {
		t.Fatalf("over-budget tier indexed as %q (%d chains in the model)", got, len(b2.m.chains))
	}
}
