package nft

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"

	"github.com/brindle-net/brindle/desired"
)

// genericWalk drives one builder through states with Deltas, as the agent
// does.
type genericWalk struct {
	t    *testing.T
	b    *builder
	prev *desired.State
	gen  uint64
}

func newGenericWalk(t *testing.T, cfg Config) *genericWalk {
	return &genericWalk{t: t, b: newBuilder(cfg.withDefaults()), prev: &desired.State{}}
}

func (w *genericWalk) apply(s *desired.State) {
	w.t.Helper()
	s = withDelta(w.prev, s, w.gen)
	if err := w.b.validate(s); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.b.build(s); err != nil {
		w.t.Fatal(err)
	}
	w.prev, w.gen = s, s.Gen
	checkGenericInvariants(w.t, "", w.b)
}

// oneEndpointState: endpoint calia with the given default-tier ingress
// policies and profile kns.
func oneEndpointState(sets map[string]desired.IPSet, pols map[desired.PolicyID]desired.Policy, tier []desired.PolicyID) *desired.State {
	var tiers []desired.TierPolicies
	if len(tier) > 0 {
		tiers = []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: tier}}
	}
	return &desired.State{
		IPSets:    desired.MapOf(sets),
		Policies:  desired.MapOf(pols),
		Profiles:  desired.MapOf(map[string]desired.Profile{"kns": allowAll}),
		Endpoints: desired.MapOf(map[string]desired.Endpoint{"calia": ep("a", nil, tiers, "kns")}),
	}
}

func gpol(name string) desired.PolicyID {
	return desired.PolicyID{Tier: "default", Name: name, Kind: "GlobalNetworkPolicy"}
}

func fromSet(a desired.Action, set string) desired.Policy {
	return desired.Policy{Inbound: []desired.Rule{{Action: a, Src: desired.Match{IPSetIDs: []string{set}}}}}
}

// checkGenericInvariants: every rule names a set of the model; slots are
// unique and none in use is free; each generic set is exactly the union
// of its classes' elements, which are what genericElems gives them now;
// every class is generic or has a chain, not both.
func checkGenericInvariants(t *testing.T, name string, b *builder) {
	t.Helper()
	for cn, c := range b.m.chains {
		for _, r := range c.rules {
			for _, x := range r.exprs {
				if l, ok := x.(*expr.Lookup); ok && l.SetName != "" && b.m.sets[l.SetName] == nil && b.m.sets[keyA+l.SetName] == nil {
					t.Errorf("%s: chain %s names set %s, which is not in the model", name, objName(cn), l.SetName)
				}
			}
		}
	}
	for d, l := range b.lay {
		if l == nil {
			continue
		}
		live := map[uint32]string{}
		for k, n := range l.slot {
			if o, dup := live[n]; dup {
				t.Errorf("%s: slot %d is both %q and %q", name, n, o, k)
			}
			live[n] = k
		}
		for _, n := range l.free {
			if k, ok := live[n]; ok {
				t.Errorf("%s: slot %d of %q is free", name, n, k)
			}
		}
		union := map[string]bool{}
		for e := range b.cls.generic {
			if dirIndex(e.ingress) != d {
				continue
			}
			els, ok := b.genericElems(e)
			if !ok || !cmp.Equal(keysOf(els), keysOf(e.gelems)) {
				t.Errorf("%s: generic class %d: elements %v, now %v (expressible: %v)", name, e.id, keysOf(e.gelems), keysOf(els), ok)
			}
			for _, el := range e.gelems {
				union[el.mapKey()] = true
			}
		}
		have := map[string]bool{}
		for k := range b.m.sets[genericSet(d == 0)].elems {
			have[k] = true
		}
		if !maps.Equal(have, union) {
			t.Errorf("%s: %s holds %d elements, its classes %d", name, genericSet(d == 0), len(have), len(union))
		}
	}
	// setUsers indexes exactly the policies of the table (active and
	// retained) by the sets they name.
	want := map[string]map[desired.PolicyID]struct{}{}
	for _, m := range []map[desired.PolicyID]*rulesEntry{b.policies, b.retained} {
		for id, e := range m {
			for set := range e.refs {
				if want[set] == nil {
					want[set] = map[desired.PolicyID]struct{}{}
				}
				want[set][id] = struct{}{}
			}
		}
	}
	if !cmp.Equal(want, b.setUsers) {
		t.Errorf("%s: setUsers is not the index of the table's policies (-want +got):\n%s", name, cmp.Diff(want, b.setUsers))
	}
	for _, e := range b.cls.byHash {
		if e.generic == (e.chain != nil) {
			t.Errorf("%s: class %d: generic %v, chain %v", name, e.id, e.generic, e.chain != nil)
		}
	}
}

func keysOf(es []elem) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.mapKey()
	}
	return out
}

// TestRetainedPolicySetReshaped: a set a retained policy uses changes
// kind (a wider prefix joins: its kernel set is renamed) or gains a
// family while the policy is retained. The retained policy goes for good
// (its rules no longer fit the set), so no rule names a set that is gone,
// and when it comes back it is built anew: its chain is a fresh build's.
func TestRetainedPolicySetReshaped(t *testing.T) {
	p1, p2 := gpol("p1"), gpol("p2")
	t.Run("kind", func(t *testing.T) {
		w := newGenericWalk(t, Config{})
		sets := map[string]desired.IPSet{"s:x": netSet("10.65.0.1/32")}
		w.apply(oneEndpointState(sets, map[desired.PolicyID]desired.Policy{p1: fromSet(desired.Allow, "s:x"), p2: fromSet(desired.Allow, "s:x")}, []desired.PolicyID{p1, p2}))
		w.b.promote()
		w.apply(oneEndpointState(sets, map[desired.PolicyID]desired.Policy{p1: fromSet(desired.Allow, "s:x")}, []desired.PolicyID{p1}))
		if w.b.retained[p2] == nil {
			t.Fatal("p2 is not retained")
		}
		w.apply(oneEndpointState(map[string]desired.IPSet{"s:x": netSet("10.65.0.1/32", "10.65.8.0/24")},
			map[desired.PolicyID]desired.Policy{p1: fromSet(desired.Allow, "s:x")}, []desired.PolicyID{p1}))
		if w.b.retained[p2] != nil {
			t.Error("p2 is still retained after its set changed kind")
		}
	})
	t.Run("family", func(t *testing.T) {
		w := newGenericWalk(t, Config{})
		sets := map[string]desired.IPSet{"s:x": addrSet("10.65.0.1")}
		both := map[desired.PolicyID]desired.Policy{p1: fromSet(desired.Deny, "s:x"), p2: fromSet(desired.Allow, "s:x")}
		w.apply(oneEndpointState(sets, both, []desired.PolicyID{p1, p2}))
		w.b.promote()
		w.apply(oneEndpointState(sets, map[desired.PolicyID]desired.Policy{p2: both[p2]}, []desired.PolicyID{p2}))
		v6 := map[string]desired.IPSet{"s:x": addrSet("10.65.0.1", "fd00::1")}
		w.apply(oneEndpointState(v6, map[desired.PolicyID]desired.Policy{p2: both[p2]}, []desired.PolicyID{p2}))
		last := oneEndpointState(v6, maps.Clone(both), []desired.PolicyID{p1, p2})
		w.apply(last)
		fb := newBuilder(Config{}.withDefaults())
		if _, err := fb.build(last); err != nil {
			t.Fatal(err)
		}
		n := policyChain(p1, true)
		if diff := cmp.Diff(chainText(fb.m.chains[n]), chainText(w.b.m.chains[n])); diff != "" {
			t.Errorf("p1's inbound chain after coming back (-fresh +builder):\n%s", diff)
		}
	})
}

// TestOrphanSetBack: a set kept only for a retained policy comes back
// into the state; after the retained policy goes (promote), the set's
// entry stays, and a later policy using it builds.
func TestOrphanSetBack(t *testing.T) {
	p, q, q2 := gpol("p"), gpol("q"), gpol("q2")
	w := newGenericWalk(t, Config{})
	w.apply(oneEndpointState(map[string]desired.IPSet{"s:x": addrSet("10.65.0.1")}, map[desired.PolicyID]desired.Policy{p: fromSet(desired.Allow, "s:x")}, []desired.PolicyID{p}))
	w.b.promote()
	w.apply(oneEndpointState(map[string]desired.IPSet{}, map[desired.PolicyID]desired.Policy{}, nil))
	if !w.b.orphanSets["s:x"] {
		t.Fatal("s:x is not kept for the retained policy")
	}
	back := oneEndpointState(map[string]desired.IPSet{"s:x": desired.NewIPSet(desired.Addrs)}, map[desired.PolicyID]desired.Policy{q: fromSet(desired.Allow, "s:x")}, []desired.PolicyID{q})
	w.apply(back)
	w.b.promote()
	if w.b.sets["s:x"] == nil {
		t.Fatal("promote dropped the entry of a set in the state")
	}
	pols := maps.Collect(back.Policies.All())
	pols[q2] = fromSet(desired.Allow, "s:x")
	w.apply(oneEndpointState(maps.Collect(back.IPSets.All()), pols, []desired.PolicyID{q, q2}))
}

// TestNoRelayAfterSettle: a policy new to the table while the generic
// chains wait for their first layout, then the settle that lays them out:
// the next new combination is set elements (and its mark chain in the
// classify table), with no chain of the policy table laid out again (that cost the first label change after a settle 30-130 ms at
// 5,000 policies).
func TestNoRelayAfterSettle(t *testing.T) {
	p, q := gpol("p"), gpol("q")
	pols := map[desired.PolicyID]desired.Policy{p: {Inbound: []desired.Rule{allowTCP(80)}}}
	w := newGenericWalk(t, Config{})
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{p}))
	pols[q] = desired.Policy{Inbound: []desired.Rule{allowTCP(443)}}
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{p, q})) // q is new
	for w.b.promote() {
	}
	if w.b.layDirty {
		t.Fatal("the settled layout is still marked to be laid out again")
	}
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{q}))
	if w.b.genericClasses() == 0 {
		t.Fatal("the new combination is not a generic class")
	}
	// The class's mark-setting chain is in the classify table (keyA).
	policyTable := slices.DeleteFunc(slices.Collect(maps.Keys(w.b.dChains)), func(n string) bool { return strings.HasPrefix(n, keyA) })
	if len(policyTable) != 0 {
		t.Errorf("a new combination after the settle changed policy-table chains %v; want elements only", policyTable)
	}
}

// TestGenericPolicyWithoutRules: a policy with no rules one way has no
// chain that way. A new combination that lists it that way runs through
// the generic chains without their being laid out again (it needs no
// slot: a jump to no rules would only return), and its class is kept when
// its endpoint leaves it. When the policy gains rules that way, its chain
// comes, the generic chains take it in, and the class is generic again.
func TestGenericPolicyWithoutRules(t *testing.T) {
	p, q := gpol("p"), gpol("q")
	pols := map[desired.PolicyID]desired.Policy{p: {Inbound: []desired.Rule{allowTCP(80)}}, q: {}}
	w := newGenericWalk(t, Config{})
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{p}))
	for w.b.promote() {
	}
	if w.b.m.chains[policyChain(q, true)] != nil || w.b.m.chains[policyChain(p, false)] != nil {
		t.Fatal("a policy has a chain for a direction it has no rules in")
	}
	w.b.lay[0].pos["probe"] = -1                                                          // a layout makes a new pos map
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{p, q})) // q: no rules
	if _, kept := w.b.lay[0].pos["probe"]; !kept {
		t.Error("the generic chains were laid out again for a policy with no rules that way")
	}
	delete(w.b.lay[0].pos, "probe")
	if c := w.b.eps["calia"].classes[0]; !c.generic {
		t.Error("a new combination with a policy that has no inbound rules is not generic")
	}
	// Only the mark chain of the new class, in the classify table, is
	// new.
	if changed := slices.DeleteFunc(slices.Collect(maps.Keys(w.b.dChains)), func(n string) bool { return strings.HasPrefix(n, keyA) }); len(changed) != 0 {
		t.Errorf("the new combination changed policy-table chains %v; want elements only", changed)
	}
	// Left, the class is kept for a flip back (no chain it needs is
	// missing).
	c := w.b.eps["calia"].classes[0]
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{p}))
	if w.b.cls.byHash[c.hash] != c {
		t.Error("the class with q (no inbound rules) was evicted when its endpoint left it")
	}
	pols[q] = desired.Policy{Inbound: []desired.Rule{allowTCP(443)}}
	w.apply(oneEndpointState(map[string]desired.IPSet{}, pols, []desired.PolicyID{p, q}))
	if w.b.m.chains[policyChain(q, true)] == nil {
		t.Fatal("q gained inbound rules but has no inbound chain")
	}
	if c := w.b.eps["calia"].classes[0]; !c.generic || !w.b.lay[0].has(policyChain(q, true)) {
		t.Errorf("after q gained rules: class generic %v, generic chains jump to q %v; want both", c.generic, w.b.lay[0].has(policyChain(q, true)))
	}
}

// TestGenericTierWithoutRules: a tier whose only policy has no rules
// this way still has its header and default-deny end in the generic
// chains, so a new combination listing it is generic (it was given a chain
// of its own, a validated transaction, when the layout left the tier out).
func TestGenericTierWithoutRules(t *testing.T) {
	q := desired.PolicyID{Tier: "t1", Name: "q", Kind: "GlobalNetworkPolicy"}
	p1, p2 := gpol("p1"), gpol("p2")
	pols := map[desired.PolicyID]desired.Policy{q: {}, p1: {Inbound: []desired.Rule{allowTCP(80)}}, p2: {Inbound: []desired.Rule{allowTCP(81)}}}
	tiers := func(t1 bool, p desired.PolicyID) []desired.TierPolicies {
		var ts []desired.TierPolicies
		if t1 {
			ts = append(ts, desired.TierPolicies{Name: "t1", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{q}})
		}
		return append(ts, desired.TierPolicies{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{p}})
	}
	state := func(b []desired.TierPolicies) *desired.State {
		return &desired.State{
			Policies: desired.MapOf(pols),
			Profiles: desired.MapOf(map[string]desired.Profile{"kns": allowAll}),
			Endpoints: desired.MapOf(map[string]desired.Endpoint{
				"calia": ep("a", nil, tiers(true, p1), "kns"),
				"calib": ep("b", nil, b, "kns"),
			}),
		}
	}
	w := newGenericWalk(t, Config{})
	w.apply(state(tiers(false, p2)))
	for w.b.promote() {
	}
	w.apply(state(tiers(true, p2))) // b: t1[q] + default[p2], a new combination
	if c := w.b.eps["calib"].classes[0]; !c.generic {
		t.Error("a new combination with a tier whose only policy has no ingress rules is not generic")
	}
}

// TestIdleClassOfForgottenPolicyKept: a class with a chain of its own
// that lists a policy with no rules (never retained: no chain, no generic
// item) is kept when its endpoint leaves it and the policy goes; when
// both come back it is the same class, with nothing new in the policy
// table and the generic chains not laid out again.
func TestIdleClassOfForgottenPolicyKept(t *testing.T) {
	p, q := gpol("p"), gpol("q")
	with := map[desired.PolicyID]desired.Policy{p: {Inbound: []desired.Rule{allowTCP(80)}}, q: {}}
	without := map[desired.PolicyID]desired.Policy{p: with[p]}
	w := newGenericWalk(t, Config{})
	w.apply(oneEndpointState(nil, with, []desired.PolicyID{p, q}))
	for w.b.promote() {
	}
	c := w.b.eps["calia"].classes[0]
	if c.generic {
		t.Fatal("the first class is generic")
	}
	w.apply(oneEndpointState(nil, without, []desired.PolicyID{p})) // q goes
	if w.b.cls.byHash[c.hash] != c {
		t.Fatal("the idle class that listed q was evicted when q went")
	}
	w.b.lay[0].pos["probe"] = -1 // a layout makes a new pos map
	w.apply(oneEndpointState(nil, with, []desired.PolicyID{p, q}))
	if _, kept := w.b.lay[0].pos["probe"]; !kept {
		t.Error("the generic chains were laid out again for q, which has no rules")
	}
	if w.b.eps["calia"].classes[0] != c {
		t.Error("the endpoint did not get its idle class back")
	}
	if changed := slices.DeleteFunc(slices.Collect(maps.Keys(w.b.dChains)), func(n string) bool { return strings.HasPrefix(n, keyA) }); len(changed) != 0 {
		t.Errorf("coming back changed policy-table chains %v; want none", changed)
	}
}

// TestGenericElemsTierOfPolicy: a tier listing a policy of another tier
// cannot run through the generic chains, which group policies by their
// own tier.
func TestGenericElemsTierOfPolicy(t *testing.T) {
	a := desired.PolicyID{Tier: "a", Name: "x", Kind: "GlobalNetworkPolicy"}
	w := newGenericWalk(t, Config{GenericFromStart: true})
	s := oneEndpointState(map[string]desired.IPSet{}, map[desired.PolicyID]desired.Policy{a: {Inbound: []desired.Rule{allowTCP(80)}}}, nil)
	e, _ := s.Endpoints.Get("calia")
	e.Tiers = []desired.TierPolicies{{Name: "z", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{a}}}
	s.Endpoints.Set("calia", e)
	w.apply(s)
	if c := w.b.eps["calia"].classes[0]; c.generic {
		t.Error("a class whose tier z lists a policy of tier a is generic")
	}
}

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestGenericRandomWalk walks builders through random orders of the
// incremental steps, promoting at random (half the time after the
// retained policies are due), and checks the generic invariants after
// every build and that a promoted builder with nothing retained means
// what a fresh (settled) build means. Retained policies live through
// promotes and come back.
func TestGenericRandomWalk(t *testing.T) {
	steps := incrementalStepList()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	compared, kept := 0, 0
	for _, cfg := range []Config{
		{GenericFromStart: true},
		{GenericFromStart: true, ClassMask: 0x00070000, RetainClasses: 1}, // 7 ids: eviction and id reuse
		{GenericFromStart: true, RetainClasses: -1, IndexMinPolicies: 1},
		{},
		{GenericFromStart: true, RetainPoliciesFor: -1},
	} {
		cfg.Now = clock.now
		cfg = cfg.withDefaults()
		seed := uint64(1)
		rnd := func(n int) int {
			seed = seed*6364136223846793005 + 1442695040888963407
			return int((seed >> 33) % uint64(n))
		}
		for run := range 20 {
			b := newBuilder(cfg)
			for i := range 20 {
				st := steps[rnd(len(steps))]
				name := st.name
				if _, err := b.build(st.s); err != nil {
					break // more classes than ClassMask numbers: the builder is done
				}
				checkGenericInvariants(t, name, b)
				if rnd(4) > 0 {
					continue
				}
				if rnd(2) == 0 {
					clock.advance(cfg.RetainPoliciesFor)
				}
				b.promote()
				checkGenericInvariants(t, name+" (promoted)", b)
				if len(b.retained) > 0 {
					kept++
					continue
				}
				compared++
				fb := newBuilder(cfg)
				if _, err := fb.build(st.s); err != nil {
					t.Fatal(err)
				}
				fb.promote()
				if diff := cmp.Diff(classView(fb, fb.m), classView(b, b.m)); diff != "" {
					t.Fatalf("run %d step %d (%s): promoted builder differs from a fresh one (-fresh +walked):\n%s", run, i, name, diff)
				}
				if t.Failed() {
					return
				}
			}
		}
	}
	if compared == 0 || kept == 0 {
		t.Errorf("%d promotes compared with a fresh build, %d kept retained policies: the walk misses a case", compared, kept)
	}
}

// TestPromoteInBatches: with SettleBatch 1 each promote gives one generic
// class its chain (lowest id first); the retained policies and the
// layout wait for the last, after which the builder means what a fresh
// build means.
func TestPromoteInBatches(t *testing.T) {
	p := []desired.PolicyID{gpol("p1"), gpol("p2"), gpol("p3"), gpol("p4")}
	pols := map[desired.PolicyID]desired.Policy{}
	for _, id := range p {
		pols[id] = desired.Policy{Inbound: []desired.Rule{allowTCP(80)}}
	}
	state := func(lists map[string][]desired.PolicyID) *desired.State {
		s := &desired.State{Policies: desired.MapOf(pols),
			Profiles: desired.MapOf(map[string]desired.Profile{"kns": allowAll}), Endpoints: desired.MapOf(map[string]desired.Endpoint{})}
		for iface, l := range lists {
			s.Endpoints.Set(iface, ep(iface, nil, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: l}}, "kns"))
		}
		return s
	}
	w := newGenericWalk(t, Config{SettleBatch: 1, RetainPoliciesFor: -1})
	w.apply(state(map[string][]desired.PolicyID{"cali1": p}))
	if !w.b.promote() { // the layout
		t.Fatal("nothing to promote after the first build")
	}
	// Three new combinations; p4 leaves the state (retained).
	delete(pols, p[3])
	last := state(map[string][]desired.PolicyID{"cali1": p[:1], "cali2": p[1:2], "cali3": p[:3]})
	w.apply(last)
	if n := w.b.genericClasses(); n != 3 || w.b.retained[p[3]] == nil {
		t.Fatalf("%d generic classes, p4 retained %v; want 3 and true", n, w.b.retained[p[3]] != nil)
	}
	for want := 2; want >= 0; want-- {
		if !w.b.promote() {
			t.Fatalf("promote did nothing with %d generic classes", want+1)
		}
		checkGenericInvariants(t, "batch", w.b)
		if n := w.b.genericClasses(); n != want {
			t.Fatalf("after a batch of 1: %d generic classes, want %d", n, want)
		}
		if retained := w.b.retained[p[3]] != nil; retained != (want > 0) {
			t.Fatalf("with %d generic classes left, p4 retained: %v", want, retained)
		}
	}
	if w.b.promote() {
		t.Error("promote did something once settled")
	}
	fb := newBuilder(Config{}.withDefaults())
	if _, err := fb.build(last); err != nil {
		t.Fatal(err)
	}
	fb.promote()
	if diff := cmp.Diff(classView(fb, fb.m), classView(w.b, w.b.m)); diff != "" {
		t.Errorf("settled in batches, the builder differs from a fresh one (-fresh +batched):\n%s", diff)
	}
}
