package calc

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
)

// stateWorld is a small world in which every object has a few versions
// (index 0 is the base, nil is absent): tiers, a namespace profile,
// local and remote pods (one of which can take another's interface), a
// network set, policies using selector, named-port and CIDR sets, and the
// default FelixConfiguration. Between them the versions reach every kind
// of change State tracks.
func stateWorld() (keys []string, versions map[string][]Update) {
	versions = map[string][]Update{}
	add := func(kind string, objs ...api.Object) {
		var key string
		var us []Update
		for _, o := range objs {
			if o == nil {
				us = append(us, Update{Kind: kind, Namespace: us[0].Namespace, Name: us[0].Name})
				continue
			}
			key = kind + "/" + joinName(o.GetNamespace(), o.GetName())
			us = append(us, Update{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName(), Object: o})
		}
		keys = append(keys, key)
		versions[key] = us
	}
	f := func(v float64) *float64 { return &v }
	tcp := api.ProtocolFromString("TCP")
	tier := func(order float64) *api.Tier {
		return &api.Tier{ObjectMeta: metav1.ObjectMeta{Name: "t1"}, Spec: api.TierSpec{Order: f(order)}}
	}
	add(KindTier, tier(10), tier(2_000_000), nil)
	add(KindProfile, api.NamespaceProfile("ns1", map[string]string{"team": "a"}), api.NamespaceProfile("ns1", map[string]string{"team": "b"}), nil)
	pod := func(name, node, iface, ip, role string, port uint16) *api.WorkloadEndpoint {
		w := &api.WorkloadEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: name, Labels: map[string]string{"role": role}},
			Spec: api.WorkloadEndpointSpec{Node: node, InterfaceName: iface, IPNetworks: []string{ip},
				Profiles: []string{"kns.ns1", "projectcalico-default-allow"}},
		}
		if port != 0 {
			w.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: tcp, Port: port}}
		}
		return w
	}
	add(KindWorkloadEndpoint, pod("a", "h", "cali-a", "10.0.0.1/32", "web", 80), pod("a", "h", "cali-a", "10.0.0.1/32", "db", 80),
		pod("a", "h", "cali-a2", "10.0.0.11/32", "web", 0), nil)
	add(KindWorkloadEndpoint, pod("b", "h", "cali-b", "10.0.0.2/32", "db", 0), pod("b", "h", "cali-a", "10.0.0.2/32", "db", 0),
		pod("b", "other", "cali-b", "10.0.0.2/32", "db", 0), nil)
	add(KindWorkloadEndpoint, pod("c", "other", "cali-c", "10.0.1.3/32", "db", 8080), pod("c", "other", "cali-c", "10.0.1.3/32", "web", 8080),
		pod("c", "other", "cali-c", "10.0.1.33/32", "db", 8081), nil)
	add(KindWorkloadEndpoint, pod("d", "other", "cali-d", "10.0.1.4/32", "db", 0), pod("d", "other", "cali-d", "10.0.1.4/32", "web", 0), nil)
	gns := func(region string) *api.GlobalNetworkSet {
		return &api.GlobalNetworkSet{ObjectMeta: metav1.ObjectMeta{Name: "gns", Labels: map[string]string{"region": region}},
			Spec: api.GlobalNetworkSetSpec{Nets: []string{"192.0.2.0/24"}}}
	}
	add(KindGlobalNetworkSet, gns("r1"), gns("r2"), nil)
	p1 := func(sel, from, tier string) *api.GlobalNetworkPolicy {
		return &api.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p1"}, Spec: api.GlobalNetworkPolicySpec{
			Tier: tier, Order: f(100), Selector: sel, Types: []api.PolicyType{api.PolicyTypeIngress, api.PolicyTypeEgress},
			Ingress: []api.Rule{
				{Action: api.Allow, Source: api.EntityRule{Selector: from}},
				{Action: api.Deny, Source: api.EntityRule{Selector: "region == 'r1'"}},
			},
			Egress: []api.Rule{{Action: api.Allow, Protocol: &tcp, Destination: api.EntityRule{Selector: from, Ports: []api.Port{api.NamedPort("http")}}}},
		}}
	}
	add(KindGlobalNetworkPolicy, p1("role == 'web'", "role == 'db'", ""), p1("role == 'web'", "role == 'web'", ""),
		p1("role == 'web'", "role == 'db'", "t1"), p1("role == 'nobody'", "role == 'db'", ""), nil)
	np := func(order float64, nets string) *api.NetworkPolicy {
		return &api.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "p2"}, Spec: api.NetworkPolicySpec{
			Order: f(order), Selector: "pcns.team == 'a'", Types: []api.PolicyType{api.PolicyTypeIngress},
			Ingress: []api.Rule{{Action: api.Deny, Source: api.EntityRule{Nets: []string{nets}}}},
		}}
	}
	add(KindNetworkPolicy, np(1, "198.51.100.0/24"), np(1000, "198.51.100.0/24"), np(1, "203.0.113.0/24"), nil)
	add(KindGlobalNetworkPolicy, &api.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p3"}, Spec: api.GlobalNetworkPolicySpec{
		Tier: "t1", Order: f(1), Selector: "role == 'db'", Ingress: []api.Rule{{Action: api.Pass}}}}, nil)
	felix := func(action string) *api.FelixConfiguration {
		return &api.FelixConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "default"},
			Spec: api.FelixConfigurationSpec{DefaultEndpointToHostAction: action}}
	}
	add(KindFelixConfiguration, felix("Accept"), felix("Return"), nil)
	return keys, versions
}

// freshState is the State of a new Calc fed cur (key: version index).
func freshState(t *testing.T, keys []string, versions map[string][]Update, cur map[string]int) desired.State {
	t.Helper()
	c := New(Config{Hostname: "h"})
	for _, k := range keys {
		if u := versions[k][cur[k]]; u.Object != nil {
			mustUpdate(t, c, u)
		}
	}
	return c.State()
}

// cloneState deep-copies a State.
func cloneState(s desired.State) desired.State {
	return desired.State{
		Config:    desired.Config{InterfacePrefixes: slices.Clone(s.Config.InterfacePrefixes), DefaultEndpointToHostAction: s.Config.DefaultEndpointToHostAction},
		IPSets:    s.IPSets.Clone(desired.IPSet.Clone),
		Policies:  s.Policies.Clone(desired.Policy.Clone),
		Profiles:  s.Profiles.Clone(desired.Profile.Clone),
		Endpoints: s.Endpoints.Clone(desired.Endpoint.Clone),
	}
}

// TestStateSnapshotsStay takes State A, applies a change, takes State B:
// A's contents must be unchanged and still equal a fresh computation of
// the old objects, B must equal a fresh computation of the new ones, and
// the collections the change does not touch must be the very maps A has
// (State costs what changed, not the whole state).
func TestStateSnapshotsStay(t *testing.T) {
	keys, versions := stateWorld()
	for _, tc := range []struct {
		name   string
		change map[string]int // key: version
		// same are the collections B shares with A.
		same []string
	}{
		{"nothing: a repeated update", map[string]int{"WorkloadEndpoint/ns1/c": 0}, []string{"IPSets", "Policies", "Profiles", "Endpoints"}},
		{"remote label: set members only", map[string]int{"WorkloadEndpoint/ns1/c": 1}, []string{"Policies", "Profiles", "Endpoints"}},
		{"remote address and port", map[string]int{"WorkloadEndpoint/ns1/c": 2}, []string{"Policies", "Profiles", "Endpoints"}},
		{"remote endpoint deleted", map[string]int{"WorkloadEndpoint/ns1/d": 2}, []string{"Policies", "Profiles", "Endpoints"}},
		{"network set label", map[string]int{"GlobalNetworkSet/gns": 1}, []string{"Policies", "Profiles", "Endpoints"}},
		{"local label: policy deactivated", map[string]int{"WorkloadEndpoint/ns1/a": 1}, []string{"Profiles"}},
		{"local interface and address", map[string]int{"WorkloadEndpoint/ns1/a": 2}, []string{"IPSets", "Policies", "Profiles"}},
		{"interface conflict", map[string]int{"WorkloadEndpoint/ns1/b": 1}, []string{"IPSets", "Policies", "Profiles"}},
		{"local endpoint moves away", map[string]int{"WorkloadEndpoint/ns1/b": 2}, []string{"IPSets", "Profiles"}},
		{"policy rules", map[string]int{"GlobalNetworkPolicy/p1": 1}, []string{"Profiles", "Endpoints"}},
		{"policy tier", map[string]int{"GlobalNetworkPolicy/p1": 2}, []string{"IPSets", "Profiles"}},
		{"policy selector: deactivated", map[string]int{"GlobalNetworkPolicy/p1": 3}, []string{"Profiles"}},
		{"policy order", map[string]int{"NetworkPolicy/ns1/p2": 1}, []string{"IPSets", "Profiles"}},
		{"policy CIDRs", map[string]int{"NetworkPolicy/ns1/p2": 2}, []string{"Profiles", "Endpoints"}},
		{"tier order", map[string]int{"Tier/t1": 1}, []string{"IPSets", "Policies", "Profiles"}},
		{"profile labels", map[string]int{"Profile/kns.ns1": 1}, []string{"Profiles"}},
		{"profile deleted", map[string]int{"Profile/kns.ns1": 2}, nil},
		{"felix config", map[string]int{"FelixConfiguration/default": 1}, []string{"IPSets", "Policies", "Profiles", "Endpoints"}},
		{"several at once", map[string]int{"WorkloadEndpoint/ns1/c": 1, "GlobalNetworkPolicy/p1": 2, "Tier/t1": 2, "WorkloadEndpoint/ns1/a": 3}, []string{"Profiles"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := map[string]int{}
			c := New(Config{Hostname: "h"})
			for _, k := range keys {
				mustUpdate(t, c, versions[k][0])
			}
			a := c.State()
			aCopy := cloneState(a)
			next := maps.Clone(base)
			for k, v := range tc.change {
				if _, ok := versions[k]; !ok {
					t.Fatalf("no object %s", k)
				}
				next[k] = v
				mustUpdate(t, c, versions[k][v])
			}
			b := c.State()
			if !a.Equal(&aCopy) {
				t.Error("State A changed after a later update")
			}
			if want := freshState(t, keys, versions, base); !a.Equal(&want) {
				t.Error("State A is not the state of its objects")
			}
			want := freshState(t, keys, versions, next)
			if !b.Equal(&want) {
				t.Error("State B is not the state of its objects")
			}
			shared := map[string]bool{
				"IPSets": a.IPSets.Same(b.IPSets), "Policies": a.Policies.Same(b.Policies),
				"Profiles": a.Profiles.Same(b.Profiles), "Endpoints": a.Endpoints.Same(b.Endpoints),
			}
			for name, got := range shared {
				if want := slices.Contains(tc.same, name); got != want {
					t.Errorf("%s shared with State A: %v, want %v", name, got, want)
				}
			}
			if tc.name != "nothing: a repeated update" && a.Equal(&b) {
				t.Error("the change did not change the state")
			}
			// What did not change is the same object, as consumers
			// recognise it.
			keptSame(t, "IP set", a.IPSets, b.IPSets, desired.IPSet.Equal, sameIPSet)
			keptSame(t, "policy", a.Policies, b.Policies, desired.Policy.Equal, samePolicy)
			keptSame(t, "profile", a.Profiles, b.Profiles, desired.Profile.Equal, sameProfile)
			keptSame(t, "endpoint", a.Endpoints, b.Endpoints, desired.Endpoint.Equal, sameEndpoint)
		})
	}
}

// TestStateRandomChanges applies random versions of stateWorld's objects,
// taking a State after most batches: each State must equal a fresh
// computation of its objects, and the States taken before must keep their
// contents.
func TestStateRandomChanges(t *testing.T) {
	keys, versions := stateWorld()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x57a7e))
			c := New(Config{Hostname: "h"})
			cur := map[string]int{}
			for _, k := range keys {
				cur[k] = len(versions[k]) - 1 // absent
			}
			type held struct {
				s, copy desired.State
				step    int
			}
			var prev []held
			for step := range 300 {
				for range 1 + rng.IntN(3) {
					k := keys[rng.IntN(len(keys))]
					cur[k] = rng.IntN(len(versions[k]))
					mustUpdate(t, c, versions[k][cur[k]])
				}
				if rng.IntN(4) == 0 {
					continue // let changes pile up across batches
				}
				s := c.State()
				if want := freshState(t, keys, versions, cur); !s.Equal(&want) {
					t.Fatalf("step %d: State is not the state of its objects", step)
				}
				for _, p := range prev {
					if !p.s.Equal(&p.copy) {
						t.Fatalf("step %d: the State of step %d changed", step, p.step)
					}
				}
				// The Delta names every key that differs from the last
				// State handed out.
				if len(prev) > 0 {
					last := prev[len(prev)-1]
					if s.Delta == nil || s.Delta.Since != last.s.Gen || s.Gen <= last.s.Gen {
						t.Fatalf("step %d: Gen %d, Delta %+v; want a Delta since %d and a later Gen", step, s.Gen, s.Delta, last.s.Gen)
					}
					deltaCovers(t, step, "IP set", last.copy.IPSets, s.IPSets, s.Delta.IPSets, desired.IPSet.Equal)
					deltaCovers(t, step, "policy", last.copy.Policies, s.Policies, s.Delta.Policies, desired.Policy.Equal)
					deltaCovers(t, step, "profile", last.copy.Profiles, s.Profiles, s.Delta.Profiles, desired.Profile.Equal)
					deltaCovers(t, step, "endpoint", last.copy.Endpoints, s.Endpoints, s.Delta.Endpoints, desired.Endpoint.Equal)
				} else if s.Delta != nil || s.Gen == 0 {
					t.Fatalf("step %d: the first State has Gen %d and Delta %+v; want a Gen and no Delta", step, s.Gen, s.Delta)
				}
				prev = append(prev, held{s, cloneState(s), step})
				if len(prev) > 8 {
					prev = prev[1:]
				}
			}
		})
	}
}

// deltaCovers reports every key whose value was added, removed or changed
// between before and after that the delta does not name.
func deltaCovers[K comparable, V any](t *testing.T, step int, what string, before, after desired.Map[K, V], delta []K, equal func(V, V) bool) {
	t.Helper()
	named := map[K]bool{}
	for _, k := range delta {
		named[k] = true
	}
	for k, x := range before.All() {
		if y, ok := after.Get(k); (!ok || !equal(x, y)) && !named[k] {
			t.Errorf("step %d: %s %v changed or went, and the Delta does not say so", step, what, k)
		}
	}
	for k := range after.Keys() {
		if !before.Has(k) && !named[k] {
			t.Errorf("step %d: %s %v is new, and the Delta does not say so", step, what, k)
		}
	}
}

// keptSame reports every object of before that after holds equal but not
// as the same object (same), which consumers could then not recognise as
// unchanged.
func keptSame[K comparable, V any](t *testing.T, what string, before, after desired.Map[K, V], equal, same func(V, V) bool) {
	t.Helper()
	for k, x := range before.All() {
		if y, ok := after.Get(k); ok && equal(x, y) && !same(x, y) {
			t.Errorf("%s %v is equal but not the same object", what, k)
		}
	}
}
