package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

func TestScopeEntitySelector(t *testing.T) {
	tests := []struct {
		name string
		er   api.EntityRule
		ns   string
		want string
	}{
		{"nothing", api.EntityRule{}, "x", ""},
		{"nets only", api.EntityRule{Nets: []string{"10.0.0.0/8"}}, "x", ""},
		{"selector in namespaced policy", api.EntityRule{Selector: "role == 'a'"}, "x",
			"(projectcalico.org/namespace == 'x') && (role == 'a')"},
		{"selector in global policy", api.EntityRule{Selector: "role == 'a'"}, "", "role == 'a'"},
		{"namespaceSelector replaces the namespace", api.EntityRule{Selector: "role == 'a'", NamespaceSelector: "team == 'b'"}, "x",
			`(pcns.team == "b") && (role == 'a')`},
		{"namespaceSelector alone", api.EntityRule{NamespaceSelector: "team == 'b'"}, "", `pcns.team == "b"`},
		{"all()", api.EntityRule{NamespaceSelector: "all()"}, "x", "has(projectcalico.org/namespace)"},
		{"global()", api.EntityRule{NamespaceSelector: "global()", Selector: "a == 'b'"}, "x",
			"(!has(projectcalico.org/namespace)) && (a == 'b')"},
		{"notSelector alone namespaced", api.EntityRule{NotSelector: "has(x)"}, "x", "projectcalico.org/namespace == 'x'"},
		{"notSelector alone global", api.EntityRule{NotSelector: "has(x)"}, "", ""},
		{"service account names", api.EntityRule{ServiceAccounts: &api.ServiceAccountMatch{Names: []string{"b", "a"}}}, "x",
			`(projectcalico.org/namespace == 'x') && (projectcalico.org/serviceaccount in {"a", "b"})`},
		{"service account selector, names and selector", api.EntityRule{Selector: "k == 'v'",
			ServiceAccounts: &api.ServiceAccountMatch{Names: []string{"a"}, Selector: "role == 'x'"}}, "",
			`((pcsa.role == "x") && (projectcalico.org/serviceaccount in {"a"})) && (k == 'v')`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ScopeEntitySelector(&tc.er, tc.ns)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	if _, err := ScopeEntitySelector(&api.EntityRule{NamespaceSelector: "a = 'b'"}, "x"); err == nil || !strings.Contains(err.Error(), "namespaceSelector") {
		t.Errorf("bad namespaceSelector: err = %v, want one naming namespaceSelector", err)
	}
}

func TestScopePolicySelector(t *testing.T) {
	tests := []struct {
		name, ns, sel, nsSel, saSel, want string
	}{
		{"namespaced, no selector", "x", "", "", "", "projectcalico.org/namespace == 'x'"},
		{"namespaced", "x", "app == 'a'", "", "", "(app == 'a') && projectcalico.org/namespace == 'x'"},
		{"namespaced with SA selector", "x", "app == 'a'", "", "role == 'r'",
			`((app == 'a') && projectcalico.org/namespace == 'x') && pcsa.role == "r"`},
		{"global", "", "app == 'a'", "", "", "app == 'a'"},
		{"global with namespaceSelector", "", "", "env == 'prod'", "", `pcns.env == "prod"`},
		{"global all() namespaceSelector", "", "app == 'a'", "all()", "", "(app == 'a') && has(projectcalico.org/namespace)"},
		{"global all() SA selector", "", "", "", "all()", "has(projectcalico.org/serviceaccount)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ScopePolicySelector(tc.ns, tc.sel, tc.nsSel, tc.saSel)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func f64(v float64) *float64 { return &v }

func TestOrdering(t *testing.T) {
	ps := []*Policy{
		{Name: "nil-a"}, {Name: "b", Order: f64(10)}, {Name: "a", Order: f64(10)},
		{Name: "first", Order: f64(-5)}, {Name: "a", Namespace: "x", Order: f64(10)},
	}
	m, err := Compile(Input{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, t := range m.Tiers {
		names = append(names, t.Name)
	}
	if diff := cmp.Diff([]string{"kube-admin", "default", "kube-baseline"}, names); diff != "" {
		t.Errorf("built-in tier order (-want +got):\n%s", diff)
	}
	sortPolicies(ps)
	names = nil
	for _, p := range ps {
		names = append(names, p.ID())
	}
	if diff := cmp.Diff([]string{"first", "a", "x/a", "b", "nil-a"}, names); diff != "" {
		t.Errorf("policy order (-want +got):\n%s", diff)
	}
}

func sortPolicies(ps []*Policy) {
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if ComparePolicies(ps[j], ps[i]) < 0 {
				ps[i], ps[j] = ps[j], ps[i]
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	deny := api.Action("Reject")
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"bad action", Input{NetworkPolicies: []*api.NetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "x"},
			Spec: api.NetworkPolicySpec{Ingress: []api.Rule{{Action: "Drop"}}}}}},
			`NetworkPolicy x/p: spec.ingress[0]: action "Drop" must be Allow, Deny, Log or Pass`},
		{"bad net", Input{GlobalNetworkPolicies: []*api.GlobalNetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "g"},
			Spec: api.GlobalNetworkPolicySpec{Egress: []api.Rule{{Action: api.Allow, Destination: api.EntityRule{Nets: []string{"10.0.0.0/33"}}}}}}}},
			`GlobalNetworkPolicy g: spec.egress[0]: destination: nets[0]: "10.0.0.0/33" is not a CIDR or an IP address`},
		{"missing tier", Input{GlobalNetworkPolicies: []*api.GlobalNetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "t.g"},
			Spec: api.GlobalNetworkPolicySpec{Tier: "t"}}}}, `GlobalNetworkPolicy t.g: tier "t" does not exist`},
		{"bad tier action", Input{Tiers: []*api.Tier{{ObjectMeta: metav1.ObjectMeta{Name: "t"}, Spec: api.TierSpec{DefaultAction: &deny}}}},
			`Tier t: spec.defaultAction "Reject" must be Deny or Pass`},
		{"bad selector", Input{NetworkPolicies: []*api.NetworkPolicy{{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "x"},
			Spec: api.NetworkPolicySpec{Selector: "a ="}}}}, "NetworkPolicy x/p: spec.selector"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTypesDefaulting(t *testing.T) {
	allow := []api.Rule{{Action: api.Allow}}
	tests := []struct {
		in, eg         []api.Rule
		types          []api.PolicyType
		wantIn, wantEg bool
	}{
		{nil, nil, nil, true, false},
		{allow, nil, nil, true, false},
		{nil, allow, nil, false, true},
		{allow, allow, nil, true, true},
		{nil, allow, []api.PolicyType{"ingress", "egress"}, true, true},
	}
	for i, tc := range tests {
		p, err := CompileNetworkPolicy(&api.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "x"},
			Spec: api.NetworkPolicySpec{Ingress: tc.in, Egress: tc.eg, Types: tc.types}})
		if err != nil {
			t.Fatal(err)
		}
		if p.AppliesIngress != tc.wantIn || p.AppliesEgress != tc.wantEg {
			t.Errorf("case %d: ingress %v egress %v, want %v %v", i, p.AppliesIngress, p.AppliesEgress, tc.wantIn, tc.wantEg)
		}
	}
}

// world builds a small two-namespace world with k8s profiles.
func testEvaluator(t *testing.T, in Input) (*Evaluator, map[string]netip.Addr) {
	t.Helper()
	in.Profiles = append(in.Profiles,
		api.NamespaceProfile("x", map[string]string{"team": "a"}),
		api.ServiceAccountProfile("x", "default", nil),
	)
	m, err := Compile(in)
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]netip.Addr{
		"x/a": netip.MustParseAddr("10.0.0.1"),
		"x/b": netip.MustParseAddr("10.0.0.2"),
	}
	w := &World{
		Endpoints: []*Endpoint{
			K8sPod(Pod{Namespace: "x", Name: "a", Labels: map[string]string{"role": "client"}, IPs: []netip.Addr{ips["x/a"]}}),
			K8sPod(Pod{Namespace: "x", Name: "b", Labels: map[string]string{"app": "db"}, IPs: []netip.Addr{ips["x/b"]},
				Ports: []NamedPort{{Name: "pg", Protocol: 6, Port: 5432}}}),
		},
		NetworkSets: []*NetworkSet{{Name: "ext", Labels: map[string]string{"kind": "ext"}, Nets: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	}
	return NewEvaluator(m, w), ips
}

func TestEvaluateVerdicts(t *testing.T) {
	order := f64(100)
	ev, ips := testEvaluator(t, Input{
		NetworkPolicies: []*api.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "x"},
			Spec: api.NetworkPolicySpec{Order: order, Selector: "app == 'db'", Ingress: []api.Rule{
				{Action: api.Log},
				{Action: api.Deny, Protocol: &api.Protocol{Name: "UDP"}},
				{Action: api.Allow, Protocol: &api.Protocol{Name: "TCP"}, Source: api.EntityRule{Selector: "role == 'client'"},
					Destination: api.EntityRule{Ports: []api.Port{api.NamedPort("pg")}}},
				{Action: api.Allow, Source: api.EntityRule{Selector: "kind == 'ext'", NamespaceSelector: "global()"}},
			}},
		}},
	})
	pkt := func(src, dst string, proto uint8, port uint16) Packet {
		s, ok := ips[src]
		if !ok {
			s = netip.MustParseAddr(src)
		}
		return Packet{Src: s, Dst: ips[dst], Protocol: proto, DstPort: port}
	}
	tests := []struct {
		name string
		p    Packet
		want string
		rsn  Reason
		rule int
	}{
		{"named port", pkt("x/a", "x/b", 6, 5432), `ingress x/b: allowed by tier "default" policy db ingress rule 2`, RuleAllow, 2},
		{"udp denied", pkt("x/a", "x/b", 17, 5432), `ingress x/b: denied by tier "default" policy db ingress rule 1`, RuleDeny, 1},
		{"wrong port", pkt("x/a", "x/b", 6, 5433),
			`ingress x/b: denied by end of tier "default" (policy db selected the endpoint, no rule matched)`, TierDefault, -1},
		{"global netset", pkt("192.0.2.9", "x/b", 6, 1), `ingress x/b: allowed by tier "default" policy db ingress rule 3`, RuleAllow, 3},
		{"outside", pkt("198.51.100.1", "x/b", 6, 5432),
			`ingress x/b: denied by end of tier "default" (policy db selected the endpoint, no rule matched)`, TierDefault, -1},
		{"no policy", pkt("x/b", "x/a", 6, 80), `ingress x/a: allowed by profile "kns.x" ingress rule 0 (no policy selected the endpoint)`, ProfileAllow, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ev.Evaluate(tc.p)
			if got := r.Ingress.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if r.Ingress.Reason != tc.rsn || r.Ingress.RuleIndex != tc.rule {
				t.Errorf("reason %v rule %d, want %v %d", r.Ingress.Reason, r.Ingress.RuleIndex, tc.rsn, tc.rule)
			}
			if len(r.Ingress.Trace) == 0 {
				t.Errorf("Evaluate returned no trace")
			}
			d := ev.Decide(tc.p)
			if d.Allowed != r.Allowed || d.Ingress.Reason != r.Ingress.Reason || d.Ingress.Trace != nil {
				t.Errorf("Decide = %+v, disagrees with Evaluate %+v or has a trace", d, r)
			}
		})
	}
	// The source side of a packet from outside is not ours.
	r := ev.Evaluate(pkt("198.51.100.1", "x/b", 6, 5432))
	if r.Egress.Reason != NotOurs || !r.Egress.Allowed {
		t.Errorf("egress of an outside address = %+v, want NotOurs and allowed", r.Egress)
	}
	if allocs := testing.AllocsPerRun(100, func() { ev.Decide(pkt("x/a", "x/b", 6, 5433)) }); allocs != 0 {
		t.Errorf("Decide allocates %v times per packet, want 0", allocs)
	}
}

func TestTierPassAndProfiles(t *testing.T) {
	pass := api.Pass
	ev, ips := testEvaluator(t, Input{
		Tiers: []*api.Tier{{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Spec: api.TierSpec{Order: f64(1), DefaultAction: &pass}}},
		GlobalNetworkPolicies: []*api.GlobalNetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Name: "sec.watch"},
			Spec:       api.GlobalNetworkPolicySpec{Tier: "sec", Selector: "all()", Ingress: []api.Rule{{Action: api.Deny, Protocol: &api.Protocol{Name: "SCTP"}}}},
		}},
	})
	r := ev.Evaluate(Packet{Src: ips["x/a"], Dst: ips["x/b"], Protocol: 6, DstPort: 1})
	want := `ingress x/b: allowed by profile "kns.x" ingress rule 0 (every tier that applied passed)`
	if got := r.Ingress.String(); got != want || !r.Allowed {
		t.Errorf("got %s (allowed %v), want %s", got, r.Allowed, want)
	}
	r = ev.Evaluate(Packet{Src: ips["x/a"], Dst: ips["x/b"], Protocol: 132, DstPort: 1})
	if r.Allowed || r.Ingress.Reason != RuleDeny || r.Ingress.Tier != "sec" {
		t.Errorf("SCTP: %v, want denied by tier sec", r.Ingress)
	}
}
