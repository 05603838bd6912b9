package policy

import (
	"fmt"
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

// bigWorld is 1,000 pods in 10 namespaces (100 apps of 10 pods, 4 roles)
// and 500 policies: per app, one ingress policy allowing two roles on
// TCP 80-90 and a named port plus a deny, and (for every app) one egress
// policy allowing its namespace and UDP 53, in the default tier and a
// "security" tier with Pass default.
func bigWorld(tb testing.TB) (*Evaluator, []netip.Addr) {
	pass := api.Pass
	in := Input{Tiers: []*api.Tier{{ObjectMeta: metav1.ObjectMeta{Name: "security"}, Spec: api.TierSpec{Order: f64(100), DefaultAction: &pass}}}}
	var eps []*Endpoint
	var ips []netip.Addr
	for i := range 1000 {
		ns := fmt.Sprintf("ns%d", i%10)
		ip := netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 1)})
		ips = append(ips, ip)
		eps = append(eps, K8sPod(Pod{Namespace: ns, Name: fmt.Sprintf("p%d", i), IPs: []netip.Addr{ip},
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%100), "role": fmt.Sprintf("r%d", i%4)},
			Ports:  []NamedPort{{Name: "http", Protocol: 6, Port: 8080}}}))
	}
	for a := range 100 {
		ns := fmt.Sprintf("ns%d", a%10)
		in.NetworkPolicies = append(in.NetworkPolicies,
			&api.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("in-%d", a), Namespace: ns},
				Spec: api.NetworkPolicySpec{Order: f64(float64(a)), Selector: fmt.Sprintf("app == 'app%d'", a), Ingress: []api.Rule{
					{Action: api.Deny, Source: api.EntityRule{Selector: "role == 'r3'", NamespaceSelector: "all()"}},
					{Action: api.Allow, Protocol: &api.Protocol{Name: "TCP"}, Source: api.EntityRule{Selector: "role in {'r0', 'r1'}", NamespaceSelector: "all()"},
						Destination: api.EntityRule{Ports: []api.Port{api.PortRange(80, 90), api.NamedPort("http")}}},
				}}},
			&api.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("out-%d", a), Namespace: ns},
				Spec: api.NetworkPolicySpec{Selector: fmt.Sprintf("app == 'app%d'", a), Types: []api.PolicyType{api.PolicyTypeEgress}, Egress: []api.Rule{
					{Action: api.Allow, Protocol: &api.Protocol{Name: "UDP"}, Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(53)}}},
					{Action: api.Allow, Destination: api.EntityRule{NamespaceSelector: "all()", NotSelector: "role == 'r2'"}},
				}}},
			&api.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("log-%d", a), Namespace: ns},
				Spec: api.NetworkPolicySpec{Order: f64(5000), Selector: fmt.Sprintf("app == 'app%d' && role == 'r0'", a), Ingress: []api.Rule{{Action: api.Log}}}},
		)
		in.GlobalNetworkPolicies = append(in.GlobalNetworkPolicies,
			&api.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("security.g%d", a)},
				Spec: api.GlobalNetworkPolicySpec{Tier: "security", Order: f64(float64(a)), Selector: fmt.Sprintf("app == 'app%d'", a),
					Types:   []api.PolicyType{api.PolicyTypeIngress, api.PolicyTypeEgress},
					Ingress: []api.Rule{{Action: api.Deny, Protocol: &api.Protocol{Name: "SCTP"}}},
					Egress:  []api.Rule{{Action: api.Deny, Destination: api.EntityRule{Nets: []string{"192.0.2.0/24"}}}}}},
			&api.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("extra-%d", a)},
				Spec: api.GlobalNetworkPolicySpec{Order: f64(900), Selector: fmt.Sprintf("app == 'app%d' && role == 'r1'", a),
					Ingress: []api.Rule{{Action: api.Pass, Source: api.EntityRule{Nets: []string{"172.16.0.0/12"}}}}}},
		)
	}
	for i := range 10 {
		in.Profiles = append(in.Profiles, api.NamespaceProfile(fmt.Sprintf("ns%d", i), map[string]string{"idx": fmt.Sprint(i)}),
			api.ServiceAccountProfile(fmt.Sprintf("ns%d", i), "default", nil))
	}
	if n := len(in.NetworkPolicies) + len(in.GlobalNetworkPolicies); n != 500 {
		tb.Fatalf("built %d policies, want 500", n)
	}
	m, err := Compile(in)
	if err != nil {
		tb.Fatal(err)
	}
	return NewEvaluator(m, &World{Endpoints: eps}), ips
}

// BenchmarkMillionProbes evaluates the full 1,000 × 1,000 probe matrix for
// TCP port 80 per iteration: one op is a million probes.
func BenchmarkMillionProbes(b *testing.B) {
	ev, ips := bigWorld(b)
	b.ReportAllocs()
	b.ResetTimer()
	allowed := 0
	for range b.N {
		for _, src := range ips {
			for _, dst := range ips {
				if ev.Decide(Packet{Src: src, Dst: dst, Protocol: 6, SrcPort: 40000, DstPort: 80}).Allowed {
					allowed++
				}
			}
		}
	}
	if allowed == 0 {
		b.Fatal("no probe allowed: the benchmark world is wrong")
	}
}

// BenchmarkMillionProbesSetup measures compiling the 500 policies and
// preparing the evaluator for 1,000 pods (selector bitmaps, per-endpoint
// policy lists).
func BenchmarkMillionProbesSetup(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		bigWorld(b)
	}
}

func TestBigWorldSanity(t *testing.T) {
	ev, ips := bigWorld(t)
	// p0 (app0, r0) -> p1 (app1, r1): egress of p0 allows its own
	// namespace? p1 is in ns1, p0 in ns0: namespaceSelector all() allows
	// any namespace unless the destination has role r2; ingress of app1
	// allows r0 on 80.
	if r := ev.Evaluate(Packet{Src: ips[0], Dst: ips[1], Protocol: 6, DstPort: 80}); !r.Allowed {
		t.Errorf("p0 -> p1 :80 = %v / %v, want allowed", r.Egress, r.Ingress)
	}
	// p3 (role r3) is denied everywhere by the in-* policies.
	if r := ev.Evaluate(Packet{Src: ips[3], Dst: ips[1], Protocol: 6, DstPort: 80}); r.Allowed || r.Ingress.Reason != RuleDeny {
		t.Errorf("p3 -> p1 :80 = %v, want denied by rule", r.Ingress)
	}
	// Named port http (8080) is allowed.
	if r := ev.Evaluate(Packet{Src: ips[0], Dst: ips[1], Protocol: 6, DstPort: 8080}); !r.Allowed {
		t.Errorf("p0 -> p1 :8080 = %v, want allowed (named port)", r.Ingress)
	}
}
