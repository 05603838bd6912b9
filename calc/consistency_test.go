package calc

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/policy"
	"github.com/brindle-net/brindle/policy/scenario"
)

// interp evaluates packets against a desired.State with the semantics
// desired documents: the smallest independent reading of calc's output.
type interp struct {
	s    *desired.State
	byIP map[netip.Addr]desired.Endpoint
}

func newInterp(s *desired.State) *interp {
	in := &interp{s: s, byIP: map[netip.Addr]desired.Endpoint{}}
	for _, ep := range s.Endpoints.All() {
		for _, p := range ep.IPs {
			in.byIP[p.Addr()] = ep
		}
	}
	return in
}

// allowed returns the packet's fate: egress of a local source endpoint,
// then ingress of a local destination endpoint. Traffic from or to
// something that is not a local endpoint is not judged on that side.
func (in *interp) allowed(pk policy.Packet) bool {
	if ep, ok := in.byIP[pk.Src]; ok && !in.verdict(ep, false, pk) {
		return false
	}
	if ep, ok := in.byIP[pk.Dst]; ok && !in.verdict(ep, true, pk) {
		return false
	}
	return true
}

func (in *interp) verdict(ep desired.Endpoint, ingress bool, pk policy.Packet) bool {
	rulesOf := func(inb, outb []desired.Rule) []desired.Rule {
		if ingress {
			return inb
		}
		return outb
	}
tiers:
	for _, t := range ep.Tiers {
		ids := t.Policies(ingress)
		if len(ids) == 0 {
			continue
		}
		for _, id := range ids {
			p, _ := in.s.Policies.Get(id)
			for _, r := range rulesOf(p.Inbound, p.Outbound) {
				if !in.match(r, pk) {
					continue
				}
				switch r.Action {
				case desired.Allow:
					return true
				case desired.Deny:
					return false
				case desired.Pass:
					continue tiers
				}
			}
		}
		if t.DefaultAction != desired.Pass {
			return false
		}
	}
	for _, name := range ep.ProfileIDs {
		p, ok := in.s.Profiles.Get(name)
		if !ok {
			return false // missing profile: deny-all
		}
	rules:
		for _, r := range rulesOf(p.Inbound, p.Outbound) {
			if !in.match(r, pk) {
				continue
			}
			switch r.Action {
			case desired.Allow:
				return true
			case desired.Deny:
				return false
			case desired.Pass:
				break rules
			}
		}
	}
	return false
}

func (in *interp) match(r desired.Rule, pk policy.Packet) bool {
	if r.IPVersion != 0 && (r.IPVersion == 4) != pk.Src.Is4() {
		return false
	}
	if r.Protocol != nil && *r.Protocol != pk.Protocol {
		return false
	}
	if r.NotProtocol != nil && *r.NotProtocol == pk.Protocol {
		return false
	}
	icmp := func(m *desired.ICMPMatch) bool {
		return (pk.Protocol == 1 || pk.Protocol == 58) && m.Type == pk.ICMPType && (m.Code == nil || *m.Code == pk.ICMPCode)
	}
	if r.ICMP != nil && !icmp(r.ICMP) {
		return false
	}
	if r.NotICMP != nil && icmp(r.NotICMP) {
		return false
	}
	return in.side(r.Src, pk.Src, pk.SrcPort, pk.Protocol) && in.side(r.Dst, pk.Dst, pk.DstPort, pk.Protocol)
}

func (in *interp) contains(id string, a netip.Addr, proto uint8, port uint16) bool {
	set, _ := in.s.IPSets.Get(id)
	if set.Type == desired.NamedPorts {
		ok := set.Members.Has(desired.NamedPortMember(a, proto, port))
		return ok
	}
	for m := range set.Members.Keys() {
		if m.Prefix.Contains(a) {
			return true
		}
	}
	return false
}

func (in *interp) side(m desired.Match, a netip.Addr, port uint16, proto uint8) bool {
	for _, id := range m.IPSetIDs {
		if !in.contains(id, a, 0, 0) {
			return false
		}
	}
	for _, id := range m.NotIPSetIDs {
		if in.contains(id, a, 0, 0) {
			return false
		}
	}
	if m.NetsIPSetID != "" && !in.contains(m.NetsIPSetID, a, 0, 0) {
		return false
	}
	if m.NotNetsIPSetID != "" && in.contains(m.NotNetsIPSetID, a, 0, 0) {
		return false
	}
	inRanges := func(rs []desired.PortRange) bool {
		for _, r := range rs {
			if port >= r.Min && port <= r.Max {
				return true
			}
		}
		return false
	}
	inNamed := func(ids []string) bool {
		for _, id := range ids {
			if in.contains(id, a, proto, port) {
				return true
			}
		}
		return false
	}
	if (len(m.Ports) > 0 || len(m.NamedPortIPSetIDs) > 0) && !inRanges(m.Ports) && !inNamed(m.NamedPortIPSetIDs) {
		return false
	}
	return !inRanges(m.NotPorts) && !inNamed(m.NotNamedPortIPSetIDs)
}

// scenarioUpdates turns a built scenario back into the datastore objects
// the agent would see, every workload on this host.
func scenarioUpdates(t *testing.T, s *scenario.Scenario, b *scenario.Built) []Update {
	var us []Update
	add := func(kind string, obj api.Object) {
		us = append(us, Update{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Object: obj})
	}
	// Profiles: kns./ksa. as the scenario derives them, then the ones it
	// gives, which replace them.
	user := map[string]bool{}
	var policies []api.Object
	for i, raw := range s.Policies {
		objs, err := api.DecodeDocuments(raw)
		if err != nil {
			t.Fatalf("policies[%d]: %v", i, err)
		}
		for _, obj := range objs {
			if knp, ok := obj.(*networkingv1.NetworkPolicy); ok {
				if knp.Namespace == "" {
					knp.Namespace = "default"
				}
				np, err := api.TranslateNetworkPolicy(knp)
				if err != nil {
					t.Fatal(err)
				}
				obj = np
			}
			if info, ok := api.KindOf(obj); ok && info.Namespaced && obj.GetNamespace() == "" {
				obj.SetNamespace("default")
			}
			api.Default(obj)
			if p, ok := obj.(*api.Profile); ok {
				user[p.Name] = true
			}
			policies = append(policies, obj)
		}
	}
	saLabels := map[string]map[string]string{}
	for _, sa := range s.ServiceAccounts {
		saLabels[sa.Namespace+"."+sa.Name] = sa.Labels
	}
	for name := range b.Model.Profiles {
		switch {
		case user[name]:
		case strings.HasPrefix(name, api.NamespaceProfilePrefix):
			ns := strings.TrimPrefix(name, api.NamespaceProfilePrefix)
			add(KindProfile, api.NamespaceProfile(ns, s.Namespaces[ns].Labels))
		case strings.HasPrefix(name, api.ServiceAccountProfilePrefix):
			nsSA := strings.TrimPrefix(name, api.ServiceAccountProfilePrefix)
			ns, sa, _ := strings.Cut(nsSA, ".")
			add(KindProfile, api.ServiceAccountProfile(ns, sa, saLabels[nsSA]))
		}
	}
	for _, obj := range policies {
		info, _ := api.KindOf(obj)
		if info.Kind == KindWorkloadEndpoint {
			continue // in the world below
		}
		add(info.Kind, obj)
	}
	for i, ep := range b.World.Endpoints {
		if ep.Kind == policy.Host {
			h := &api.HostEndpoint{ObjectMeta: metav1.ObjectMeta{Name: ep.Name, Labels: ep.Labels},
				Spec: api.HostEndpointSpec{Node: "elsewhere", Profiles: ep.Profiles}}
			for _, a := range ep.IPs {
				h.Spec.ExpectedIPs = append(h.Spec.ExpectedIPs, a.String())
			}
			for _, p := range ep.Ports {
				h.Spec.Ports = append(h.Spec.Ports, api.EndpointPort{Name: p.Name, Protocol: api.ProtocolFromString(strconv.Itoa(int(p.Protocol))), Port: p.Port})
			}
			if !hasUpdate(us, KindHostEndpoint, "", ep.Name) {
				add(KindHostEndpoint, h)
			}
			continue
		}
		w := &api.WorkloadEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ep.Namespace, Name: ep.Name, Labels: ep.Labels},
			Spec: api.WorkloadEndpointSpec{Node: "this-host", InterfaceName: fmt.Sprintf("cali%d", i), Profiles: ep.Profiles}}
		for _, a := range ep.IPs {
			w.Spec.IPNetworks = append(w.Spec.IPNetworks, netip.PrefixFrom(a, a.BitLen()).String())
		}
		for _, p := range ep.Ports {
			w.Spec.Ports = append(w.Spec.Ports, api.WorkloadEndpointPort{Name: p.Name, Protocol: api.ProtocolFromString(strconv.Itoa(int(p.Protocol))), Port: p.Port})
		}
		add(KindWorkloadEndpoint, w)
	}
	return us
}

func hasUpdate(us []Update, kind, ns, name string) bool {
	for _, u := range us {
		if u.Kind == kind && u.Namespace == ns && u.Name == name {
			return true
		}
	}
	return false
}

// TestConsistencyWithEvaluator runs every policy scenario through calc
// (all workloads local) and checks that the desired state, read by a small
// interpreter, gives the reference evaluator's verdict for each scenario
// probe and for every pod pair over a spread of protocols and ports.
func TestConsistencyWithEvaluator(t *testing.T) {
	files, err := filepath.Glob("../testdata/scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios (%v)", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := scenario.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Build()
			if err != nil {
				t.Fatal(err)
			}
			c := New(Config{Hostname: "this-host"})
			for _, u := range scenarioUpdates(t, s, b) {
				if err := c.OnUpdate(u); err != nil {
					t.Fatalf("OnUpdate(%s %s): %v", u.Kind, joinName(u.Namespace, u.Name), err)
				}
			}
			st := c.State()
			if err := st.Validate(); err != nil {
				t.Fatalf("desired state does not validate: %v", err)
			}
			in := newInterp(&st)
			check := func(what string, pk policy.Packet) {
				t.Helper()
				want := b.Evaluator.Evaluate(pk)
				if got := in.allowed(pk); got != want.Allowed {
					t.Errorf("%s %v: calc's state gives allowed=%v, the evaluator %v\negress: %+v\ningress: %+v",
						what, pk, got, want.Allowed, want.Egress, want.Ingress)
				}
			}
			for i := range s.Probes {
				pk, err := b.Packet(&s.Probes[i], false)
				if err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("probes[%d]", i), pk)
			}
			for i := range s.ExternalProbes {
				pk, err := b.Packet(&s.ExternalProbes[i], true)
				if err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("externalProbes[%d]", i), pk)
			}
			// Every ordered pair of endpoints, several ports and protocols.
			var addrs []netip.Addr
			for _, ep := range b.World.Endpoints {
				addrs = append(addrs, ep.IPs...)
			}
			addrs = append(addrs, netip.MustParseAddr("203.0.113.50"))
			ports := map[uint16]bool{80: true, 443: true, 6379: true, 8080: true, 9090: true}
			for _, ep := range b.World.Endpoints {
				for _, p := range ep.Ports {
					ports[p.Port] = true
				}
			}
			for _, src := range addrs {
				for _, dst := range addrs {
					if src == dst || src.Is4() != dst.Is4() {
						continue
					}
					for port := range ports {
						for _, proto := range []uint8{6, 17} {
							check("pair", policy.Packet{Src: src, Dst: dst, Protocol: proto, SrcPort: 40000, DstPort: port})
						}
					}
					check("pair", policy.Packet{Src: src, Dst: dst, Protocol: 1, ICMPType: 8})
					check("pair", policy.Packet{Src: src, Dst: dst, Protocol: 132, SrcPort: 5000, DstPort: 80})
				}
			}
		})
	}
}
