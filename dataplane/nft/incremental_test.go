package nft

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/go-cmp/cmp"
)

// TestIncrementalBuildMatchesFreshBuild walks one builder through a
// sequence of states and checks, after each step, that (1) the updated
// model renders exactly as a fresh build of the same state, and (2) the
// recorded delta names every set and chain that changed, with its
// previous value.
func TestIncrementalBuildMatchesFreshBuild(t *testing.T) {
	steps := incrementalStepList()
	for _, mode := range []ClassMode{ClassAuto, ClassDirect} {
		for _, min := range []int{-1, 1} {
			for _, deltas := range []bool{false, true} {
				t.Run(fmt.Sprintf("ClassMode=%d,IndexMinPolicies=%d,deltas=%v", mode, min, deltas), func(t *testing.T) {
					incrementalSteps(t, Config{IndexMinPolicies: min, ClassMode: mode, RetainPoliciesFor: -1}.withDefaults(), steps, deltas)
				})
			}
		}
	}
}

// step is one named state of a sequence.
type step struct {
	name string
	s    *desired.State
}

// incrementalStepList is a sequence of states that reaches every kind of
// change the builder tracks: set members and families, set kinds, policy
// rules and footprints, profiles, endpoints, config, removals; from
// "kitchen sink (shared from here)" on, each state shares the maps of the
// one before for the collections that did not change, as calc's do.
func incrementalStepList() []step {
	a, c, d := netip.MustParseAddr("10.65.0.1"), netip.MustParseAddr("10.65.0.2"), netip.MustParseAddr("10.65.0.3")
	pci := func() *desired.State { return pciState(a, c, d, "calif", "calio", "calid") }
	pciMore := pci()
	pciMore.IPSets.Set(selPCIFrontend, addrSet("10.65.0.1", "10.65.0.2"))
	pciV6 := pci()
	pciV6.IPSets.Set(selPCIFrontend, addrSet("10.65.0.1", "fd00::1"))
	// calc gives a selector a Nets set: single addresses are a plain
	// kernel set, and a network's CIDR makes it an interval set (another
	// name) and back.
	pciNets := pci()
	pciNets.IPSets.Set(selPCIFrontend, netSet("10.65.0.1/32", "fd00::1/128"))
	pciWide := pci()
	pciWide.IPSets.Set(selPCIFrontend, netSet("10.65.0.1/32", "10.65.8.0/24", "fd00::1/128"))
	noDB := pci()
	noDB.Endpoints.Delete("calid")
	noProfile := pci()
	noProfile.Profiles.Delete("kns.default")
	ks2 := kitchenSink()
	ks2.Config.DefaultEndpointToHostAction = desired.EndpointToHostReturn
	ks2.Policies.Delete(desired.PolicyID{Tier: "default", Name: "log-all", Namespace: "prod", Kind: "NetworkPolicy"})
	ep, _ := ks2.Endpoints.Get("cali12345")
	ep.Tiers = ep.Tiers[:1]
	ks2.Endpoints.Set("cali12345", ep)
	// A policy's protocol changes and nothing else: tier indexes over
	// it are rebuilt although no endpoint changed.
	ks3 := kitchenSink()
	logAll := desired.PolicyID{Tier: "default", Name: "log-all", Namespace: "prod", Kind: "NetworkPolicy"}
	lp, _ := ks3.Policies.Get(logAll)
	lp.Inbound = slices.Clone(lp.Inbound)
	udp := uint8(desired.ProtoUDP)
	lp.Inbound[0].Protocol = &udp
	ks3.Policies.Set(logAll, lp)

	steps := []step{
		{"empty", &desired.State{}},
		{"pci", pci()},
		{"pci again (new values, equal)", pci()},
		{"set member added", pciMore},
		{"first v6 member", pciV6},
		{"nets, single addresses", pciNets},
		{"nets, a network joins", pciWide},
		{"nets, the network leaves", pciNets},
		{"endpoint removed", noDB},
		{"profile removed", noProfile},
		{"pci", pci()},
		{"kitchen sink", kitchenSink()},
		{"kitchen sink changed", ks2},
		{"kitchen sink", kitchenSink()},
		{"log-all's protocol changed", ks3},
		{"kitchen sink", kitchenSink()},
		{"empty", &desired.State{}},
	}
	// States that share the previous state's maps for the collections
	// that did not change (as calc hands them out), so the builder skips
	// those collections by identity.
	ks := kitchenSink()
	steps = append(steps, step{"kitchen sink (shared from here)", ks})
	add := func(name string, change func(s *desired.State)) {
		prev := steps[len(steps)-1].s
		steps = append(steps, step{name, derive(prev, change)})
	}
	add("shared: nothing changed", func(*desired.State) {})
	add("shared: a set member added", func(s *desired.State) {
		s.IPSets.Set("s:web", addrSet("10.65.0.2", "10.65.0.3", "10.65.0.4"))
	})
	add("shared: a set's first v6 member", func(s *desired.State) {
		s.IPSets.Set("s:web", addrSet("10.65.0.2", "fd00::2"))
	})
	add("shared: a set loses its v6 member", func(s *desired.State) {
		s.IPSets.Set("s:quarantined", addrSet("10.65.0.9"))
	})
	add("shared: log-all's protocol changed", func(s *desired.State) {
		lp, _ := ks3.Policies.Get(logAll)
		s.Policies.Set(logAll, lp)
	})
	add("shared: web gains a Pass rule (later policies must test the pass bit)", func(s *desired.State) {
		web := desired.PolicyID{Tier: "default", Name: "web", Namespace: "prod", Kind: "NetworkPolicy"}
		p, _ := s.Policies.Get(web)
		p.Inbound = append(slices.Clone(p.Inbound), desired.Rule{Action: desired.Pass})
		s.Policies.Set(web, p)
	})
	add("shared: a profile removed", func(s *desired.State) {
		s.Profiles.Delete("kns.prod")
	})
	add("shared: an endpoint removed", func(s *desired.State) {
		s.Endpoints.Delete("cali12345")
	})
	add("shared: config changed", func(s *desired.State) {
		s.Config.DefaultEndpointToHostAction = desired.EndpointToHostAccept
	})
	add("shared: a policy removed", func(s *desired.State) {
		s.Policies.Delete(logAll)
		for iface, ep := range s.Endpoints.All() {
			ep.Tiers = slices.Clone(ep.Tiers)
			for i, tp := range ep.Tiers {
				tp.IngressPolicies = slices.DeleteFunc(slices.Clone(tp.IngressPolicies), func(id desired.PolicyID) bool { return id == logAll })
				tp.EgressPolicies = slices.DeleteFunc(slices.Clone(tp.EgressPolicies), func(id desired.PolicyID) bool { return id == logAll })
				ep.Tiers[i] = tp
			}
			s.Endpoints.Set(iface, ep)
		}
	})
	add("shared: a set removed", func(s *desired.State) {
		for id := range s.IPSets.All() {
			if !setUsed(s, id) {
				s.IPSets.Delete(id)
			}
		}
	})
	return steps
}

// setUsed reports whether a rule of s uses set id.
func setUsed(s *desired.State, id string) bool {
	uses := func(rs []desired.Rule) bool {
		for _, r := range rs {
			for _, m := range []desired.Match{r.Src, r.Dst} {
				for _, ids := range [][]string{m.IPSetIDs, m.NotIPSetIDs, m.NamedPortIPSetIDs, m.NotNamedPortIPSetIDs, {m.NetsIPSetID, m.NotNetsIPSetID}} {
					if slices.Contains(ids, id) {
						return true
					}
				}
			}
		}
		return false
	}
	for _, p := range s.Policies.All() {
		if uses(p.Inbound) || uses(p.Outbound) {
			return true
		}
	}
	for _, p := range s.Profiles.All() {
		if uses(p.Inbound) || uses(p.Outbound) {
			return true
		}
	}
	return false
}

func policyKeys(m map[desired.PolicyID]*rulesEntry) []string {
	var out []string
	for id := range m {
		out = append(out, id.String())
	}
	slices.Sort(out)
	return out
}

var testGen atomic.Uint64

// nextGen numbers the test's states as calc.State does its own.
func nextGen() uint64 { return testGen.Add(1) }

// withDelta returns next with a Gen and a Delta since prevGen naming
// every key whose value differs from prev's, as calc.State gives them.
func withDelta(prev, next *desired.State, prevGen uint64) *desired.State {
	c := *next
	c.Gen = nextGen()
	// Every key is named twice: a Delta names at least what changed, and
	// a key named again must not be handled twice.
	c.Delta = &desired.Delta{Since: prevGen,
		IPSets:    twice(changedKeys(prev.IPSets, next.IPSets, desired.IPSet.Equal)),
		Policies:  twice(changedKeys(prev.Policies, next.Policies, desired.Policy.Equal)),
		Profiles:  twice(changedKeys(prev.Profiles, next.Profiles, desired.Profile.Equal)),
		Endpoints: twice(changedKeys(prev.Endpoints, next.Endpoints, desired.Endpoint.Equal)),
	}
	return &c
}

func twice[K any](ks []K) []K { return append(ks, ks...) }

func changedKeys[K comparable, V any](a, b desired.Map[K, V], equal func(V, V) bool) []K {
	var out []K
	for k, x := range a.All() {
		if y, ok := b.Get(k); !ok || !equal(x, y) {
			out = append(out, k)
		}
	}
	for k := range b.Keys() {
		if !a.Has(k) {
			out = append(out, k)
		}
	}
	return out
}

// incrementalSteps builds the steps one after another with one builder
// and checks each model against a fresh build of the step. With deltas,
// each step carries a Delta since the one before (the builder then looks
// only at what it names).
func incrementalSteps(t *testing.T, cfg Config, steps []step, deltas bool) {
	b := newBuilder(cfg)
	prev, prevGen := &desired.State{}, uint64(0)
	generic := 0 // steps that left generic classes
	defer func() {
		if cfg.ClassMode == ClassAuto && generic == 0 && !t.Failed() {
			t.Error("no step left a generic class")
		}
	}()
	for _, st := range steps {
		if err := st.s.Validate(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		s := st.s
		if deltas {
			s = withDelta(prev, st.s, prevGen)
			prev, prevGen = st.s, s.Gen
			if b.deltaOf(s) == nil && b.lastGen != 0 {
				t.Fatalf("%s: the builder does not take the step's Delta", st.name)
			}
		}
		prevSets, prevChains, prevElems := maps.Clone(b.m.sets), maps.Clone(b.m.chains), inPlaceElems(b)
		m, err := b.build(s)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		checkJournal(t, st.name, b, prevElems)
		if b.genericClasses() > 0 {
			generic++
		}
		checkDelta(t, st.name, b, prevSets, prevChains)
		// Then every generic class gets its own chain (Settle): the
		// result is a fresh build's.
		prevSets, prevChains, prevElems = maps.Clone(b.m.sets), maps.Clone(b.m.chains), inPlaceElems(b)
		if b.promote() {
			checkDelta(t, st.name+" (promoted)", b, prevSets, prevChains)
			checkJournal(t, st.name+" (promoted)", b, prevElems)
		}
		fb := newBuilder(cfg)
		fresh, err := fb.build(st.s)
		if err != nil {
			t.Fatalf("%s: fresh: %v", st.name, err)
		}
		fb.promote() // settled, as the other side
		if diff := cmp.Diff(classView(fb, fresh), classView(b, m)); diff != "" {
			t.Fatalf("%s: incremental model differs from a fresh build (-fresh +incremental):\n%s", st.name, diff)
		}
		// No entry outlives its object: the builder holds what a fresh
		// one holds.
		for what, keys := range map[string][2][]string{
			"sets":     {slices.Sorted(maps.Keys(fb.sets)), slices.Sorted(maps.Keys(b.sets))},
			"profiles": {slices.Sorted(maps.Keys(fb.profiles)), slices.Sorted(maps.Keys(b.profiles))},
			"eps":      {slices.Sorted(maps.Keys(fb.eps)), slices.Sorted(maps.Keys(b.eps))},
			"policies": {policyKeys(fb.policies), policyKeys(b.policies)},
		} {
			if diff := cmp.Diff(keys[0], keys[1]); diff != "" {
				t.Fatalf("%s: the builder's %s differ from a fresh build's (-fresh +incremental):\n%s", st.name, what, diff)
			}
		}
	}
}

// inPlaceElems copies the elements of the builder's sets (any can be
// changed in place: the generic sets, the verdict maps, a selector set
// whose members changed).
func inPlaceElems(b *builder) map[string]map[string]elem {
	out := map[string]map[string]elem{}
	for name, s := range b.m.sets {
		out[name] = maps.Clone(s.elems)
	}
	return out
}

// checkJournal checks that the builder's element journal turns the
// in-place sets' elements before its last build (prev) into what they
// are now.
func checkJournal(t *testing.T, name string, b *builder, prev map[string]map[string]elem) {
	t.Helper()
	for set, els := range prev {
		if h, noted := b.dSets[set]; noted && h != b.m.sets[set] || b.m.sets[set] == nil {
			continue // created, replaced or deleted: diffed whole
		}
		got := maps.Clone(els)
		if j := b.dElems[set]; j != nil {
			for k := range j.del {
				if _, ok := got[k]; !ok {
					t.Errorf("%s: %s: the journal deletes an element that was not there", name, set)
				}
				delete(got, k)
			}
			for k, e := range j.add {
				if _, ok := got[k]; ok {
					t.Errorf("%s: %s: the journal adds an element that was there", name, set)
				}
				got[k] = e
			}
		}
		if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(b.m.sets[set].elems))) {
			t.Errorf("%s: %s: the journal does not account for the element changes", name, set)
		}
	}
}

// checkDelta checks that the builder's record of its last build (or
// promotion) names every set and chain that changed from prevSets and
// prevChains, with its value before.
func checkDelta(t *testing.T, name string, b *builder, prevSets map[string]*setSpec, prevChains map[string]*chainSpec) {
	t.Helper()
	for _, n := range unionKeys(prevSets, b.m.sets) {
		if prevSets[n] != b.m.sets[n] {
			if old, ok := b.dSets[n]; !ok || old != prevSets[n] {
				t.Errorf("%s: set %s changed but the delta has %v (in delta: %v)", name, n, old, ok)
			}
		}
	}
	for _, n := range unionKeys(prevChains, b.m.chains) {
		if prevChains[n] != b.m.chains[n] {
			if old, ok := b.dChains[n]; !ok || old != prevChains[n] {
				t.Errorf("%s: chain %s changed but the delta has %v (in delta: %v)", name, n, old, ok)
			}
		}
	}
}

// withNewMaps returns a copy of s with copies of its maps (the values are
// shared), as calc.State hands out a changed collection.
func withNewMaps(s *desired.State) *desired.State {
	c := *s
	c.IPSets, c.Policies, c.Profiles, c.Endpoints = newMap(s.IPSets), newMap(s.Policies), newMap(s.Profiles), newMap(s.Endpoints)
	return &c
}

// newMap returns a Map with m's entries that is not the Same as m.
func newMap[K comparable, V any](m desired.Map[K, V]) desired.Map[K, V] {
	return desired.MapOf(maps.Collect(m.All()))
}

// derive returns a State that shares prev's maps except those change
// replaces: a collection the builder has seen is skipped by identity.
func derive(prev *desired.State, change func(s *desired.State)) *desired.State {
	c := *prev
	change(&c)
	return &c
}

// TestIncrementalValidate checks that the builder's incremental
// validation catches what a full validation catches when only part of the
// state changed.
func TestIncrementalValidate(t *testing.T) {
	a, c, d := netip.MustParseAddr("10.65.0.1"), netip.MustParseAddr("10.65.0.2"), netip.MustParseAddr("10.65.0.3")
	cfg := Config{}.withDefaults()
	tests := []struct {
		name   string
		mutate func(*desired.State)
	}{
		{"set removed under an unchanged policy", func(s *desired.State) { s.IPSets.Delete(selPCIFrontend) }},
		{"set retyped under an unchanged policy", func(s *desired.State) { s.IPSets.Set(selPCIFrontend, desired.NewIPSet(desired.NamedPorts)) }},
		{"policy removed under an unchanged endpoint", func(s *desired.State) { s.Policies.Delete(pciPolicy) }},
		{"policy removed under an unchanged endpoint, another endpoint changed", func(s *desired.State) {
			s.Policies.Delete(pciPolicy)
			e, _ := s.Endpoints.Get("calif")
			e.WorkloadID += "-moved"
			s.Endpoints.Set("calif", e)
		}},
		{"set removed under an unchanged policy, an endpoint changed", func(s *desired.State) {
			s.IPSets.Delete(selPCIFrontend)
			e, _ := s.Endpoints.Get("calif")
			e.WorkloadID += "-moved"
			s.Endpoints.Set("calif", e)
		}},
		{"bad member in a changed set", func(s *desired.State) {
			s.IPSets.Set(selPCIFrontend, desired.NewIPSet(desired.Addrs, desired.NetMember(netip.MustParsePrefix("10.0.0.0/8"))))
		}},
		{"bad rule in a changed policy", func(s *desired.State) {
			s.Policies.Set(pciPolicy, desired.Policy{Inbound: []desired.Rule{{Action: desired.Allow, ICMP: &desired.ICMPMatch{Type: 8}}}})
		}},
		{"bad tier in a changed endpoint", func(s *desired.State) {
			e, _ := s.Endpoints.Get("calid")
			e.Tiers = []desired.TierPolicies{{Name: "x", DefaultAction: desired.Log}}
			s.Endpoints.Set("calid", e)
		}},
	}
	for _, tt := range tests {
		for _, deltas := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s,deltas=%v", tt.name, deltas), func(t *testing.T) {
				s := pciState(a, c, d, "calif", "calio", "calid")
				s.Gen = nextGen()
				b := newBuilder(cfg)
				if err := b.validate(s); err != nil {
					t.Fatal(err)
				}
				if _, err := b.build(s); err != nil {
					t.Fatal(err)
				}
				if err := b.validate(s); err != nil {
					t.Fatalf("unchanged state: %v", err)
				}
				n := withNewMaps(s) // a State's maps are not modified after build
				tt.mutate(n)
				if deltas {
					n = withDelta(s, n, s.Gen)
					if b.deltaOf(n) == nil {
						t.Fatal("the builder does not take the Delta")
					}
				}
				full := n.Validate()
				if full == nil {
					t.Fatal("test case is valid")
				}
				if got := b.validate(n); got == nil || got.Error() != full.Error() {
					t.Fatalf("incremental validation = %v, want %v", got, full)
				}
			})
		}
	}
}

// classView renders what a model means independently of class ids and of
// the classes and tier indexes retained for reuse: the model without
// them, then each endpoint's class chain per direction. It also checks
// that the model and the builder's class bookkeeping agree.
func classView(b *builder, m *model) string {
	var out strings.Builder
	var problems []string
	classy := classMachinery
	rest := &model{sets: map[string]*setSpec{}, chains: map[string]*chainSpec{}}
	for k, v := range m.sets {
		if !classy(k) {
			rest.sets[k] = v
		}
	}
	for k, v := range m.chains {
		if !classy(k) {
			rest.chains[k] = v
		}
	}
	out.WriteString(rest.render("brindle"))
	// The generic chains, with each guarded rule as its item (slot
	// numbers depend on history).
	var slotItem [2]map[uint32]string
	for i, l := range b.lay {
		slotItem[i] = map[uint32]string{}
		if l == nil {
			continue
		}
		ruleItem := map[*ruleSpec]string{}
		for k, r := range l.rules {
			ruleItem[r] = strings.ReplaceAll(k, "\x00", " ")
			v, _ := b.slotBits(l.slot[k])
			slotItem[i][v] = ruleItem[r]
		}
		if m.chains[l.top.name] != l.top {
			problems = append(problems, "the generic chain "+l.top.name+" is not in the model")
		}
		fmt.Fprintf(&out, "%s:", l.top.name)
		for _, r := range l.top.rules {
			if item, ok := ruleItem[r]; ok {
				out.WriteString(" [" + item + "]")
				continue
			}
			seg := l.segs[strings.TrimPrefix(r.text, "jump ")]
			if seg == nil {
				out.WriteString(" " + r.text + ";")
				continue
			}
			if m.chains[seg.name] != seg {
				problems = append(problems, "segment "+seg.name+" is not in the model")
			}
			out.WriteString(" {")
			for _, sr := range seg.rules {
				out.WriteString(" [" + ruleItem[sr] + "]")
			}
			out.WriteString(" }")
		}
		out.WriteString("\n")
	}
	for name := range m.chains {
		if n := objName(name); (strings.HasPrefix(n, prefix+"ig-") || strings.HasPrefix(n, prefix+"eg-")) &&
			b.lay[0].segs[name] == nil && b.lay[1].segs[name] == nil {
			problems = append(problems, "segment "+name+" is in no layout")
		}
	}
	gelems := 0
	for _, e := range b.cls.byHash {
		if e.generic {
			for _, el := range e.gelems {
				if _, ok := m.sets[genericSet(e.ingress)].elems[el.mapKey()]; !ok {
					problems = append(problems, fmt.Sprintf("generic class %d has no element %x", e.id, el.key))
				}
			}
			gelems += len(e.gelems)
			continue
		}
		if e.chain == nil {
			problems = append(problems, fmt.Sprintf("class %d is neither generic nor has a chain", e.id))
			continue
		}
		if m.chains[e.chain.name] != e.chain || m.chains[e.setter.name] != e.setter {
			problems = append(problems, "class "+e.chain.name+" is not in the model")
		}
		if _, ok := m.sets[classMap(e.ingress)].elems[e.elem.mapKey()]; !ok {
			problems = append(problems, "class "+e.chain.name+" has no class map element")
		}
	}
	for _, iface := range slices.Sorted(maps.Keys(b.eps)) {
		e := b.eps[iface]
		for i, set := range []string{mapToWL, mapFromWL} {
			if _, ok := m.sets[set].elems[e.vmap[i].mapKey()]; !ok {
				problems = append(problems, iface+": no classify element")
			}
			fmt.Fprintf(&out, "%s %s:", iface, set)
			if c := e.classes[i]; c.generic {
				out.WriteString(" generic:")
				for _, el := range c.gelems[1:] {
					fmt.Fprintf(&out, " %s", slotItem[i][binary.NativeEndian.Uint32(el.key)&^b.cfg.ClassMask])
				}
			} else {
				for _, r := range c.chain.rules {
					out.WriteString(" " + r.text)
				}
			}
			out.WriteString("\n")
		}
	}
	for _, set := range []string{mapToWL, mapFromWL} {
		if len(m.sets[set].elems) != len(b.eps) {
			problems = append(problems, fmt.Sprintf("%s has %d elements for %d endpoints", set, len(m.sets[set].elems), len(b.eps)))
		}
	}
	if n := len(m.sets[setFromGeneric].elems) + len(m.sets[setToGeneric].elems); n != gelems {
		problems = append(problems, fmt.Sprintf("the generic sets have %d elements, the generic classes %d", n, gelems))
	}
	slices.Sort(problems)
	out.WriteString(strings.Join(problems, "\n"))
	return out.String()
}

// classMachinery reports whether a set or chain is class machinery
// (class and mark chains, tier indexes, the classify and dispatch maps,
// the generic chains and sets), which classView compares by meaning.
func classMachinery(name string) bool {
	n := objName(name)
	return strings.HasPrefix(n, prefix+"fc-") || strings.HasPrefix(n, prefix+"tc-") ||
		strings.HasPrefix(n, prefix+"mark-") || strings.HasPrefix(n, prefix+"x") ||
		strings.HasPrefix(n, "xp-") || strings.HasPrefix(n, "xd-") ||
		name == mapFromWL || name == mapToWL || name == mapFromClass || name == mapToClass ||
		name == setFromGeneric || name == setToGeneric || name == chainFromGeneric || name == chainToGeneric ||
		strings.HasPrefix(n, prefix+"ig-") || strings.HasPrefix(n, prefix+"eg-")
}
