package calc

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

func wep(ns, name, node, iface, ip string, labels map[string]string) *api.WorkloadEndpoint {
	return &api.WorkloadEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: api.WorkloadEndpointSpec{Node: node, InterfaceName: iface, IPNetworks: []string{ip},
			Profiles: []string{"projectcalico-default-allow"}},
	}
}

func gnp(name, sel string, rules ...api.Rule) *api.GlobalNetworkPolicy {
	return &api.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: api.GlobalNetworkPolicySpec{Selector: sel, Ingress: rules}}
}

// TestBadInputIsAbsent: an object calc cannot use gives an error naming the
// object and field, and is treated as absent — replacing what was there.
func TestBadInputIsAbsent(t *testing.T) {
	port := func(s string) api.Port { p, _ := api.ParsePort(s); return p }
	tcp := api.ProtocolFromString("TCP")
	for _, tc := range []struct {
		name    string
		bad     Update
		wantErr string
	}{
		{"bad policy selector", Update{Kind: KindGlobalNetworkPolicy, Name: "p", Object: gnp("p", "app ==")}, "GlobalNetworkPolicy p: spec.selector"},
		{"bad rule cidr", Update{Kind: KindGlobalNetworkPolicy, Name: "p", Object: gnp("p", "all()",
			api.Rule{Action: api.Allow, Source: api.EntityRule{Nets: []string{"10.0.0.0/33"}}})}, "nets[0]"},
		{"ports without protocol", Update{Kind: KindGlobalNetworkPolicy, Name: "p", Object: gnp("p", "all()",
			api.Rule{Action: api.Allow, Destination: api.EntityRule{Ports: []api.Port{port("80")}}})}, "spec.ingress[0]: ports need protocol"},
		{"icmp with tcp", Update{Kind: KindGlobalNetworkPolicy, Name: "p", Object: gnp("p", "all()",
			api.Rule{Action: api.Allow, Protocol: &tcp, ICMP: &api.ICMPFields{Type: new(int)}})}, "icmp matches need protocol"},
		{"wrong type", Update{Kind: KindGlobalNetworkPolicy, Name: "p", Object: &api.Tier{ObjectMeta: metav1.ObjectMeta{Name: "p"}}}, "not the type of kind"},
		{"name mismatch", Update{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "a", Object: wep("ns", "b", "h", "cali1", "10.0.0.1/32", nil)}, "object is named ns/b"},
		{"bad iface", Update{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "a", Object: wep("ns", "a", "h", "cali-much-too-long", "10.0.0.1/32", nil)}, "spec.interfaceName"},
		{"bad ip", Update{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "a", Object: wep("ns", "a", "h", "cali1", "10.0.0", nil)}, "spec.ipNetworks[0]"},
		{"bad felix", Update{Kind: KindFelixConfiguration, Name: "default", Object: &api.FelixConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "default"},
			Spec: api.FelixConfigurationSpec{DefaultEndpointToHostAction: "Explode"}}}, "defaultEndpointToHostAction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(Config{Hostname: "h"})
			mustUpdate(t, c, Update{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "a", Object: wep("ns", "a", "h", "cali1", "10.0.0.1/32", map[string]string{"app": "a"})})
			mustUpdate(t, c, Update{Kind: KindGlobalNetworkPolicy, Name: "p", Object: gnp("p", "all()", api.Rule{Action: api.Deny})})
			mustUpdate(t, c, Update{Kind: KindFelixConfiguration, Name: "default", Object: &api.FelixConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "default"},
				Spec: api.FelixConfigurationSpec{DefaultEndpointToHostAction: "Accept"}}})
			before := c.State()
			err := c.OnUpdate(tc.bad)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("OnUpdate: error %v, want one containing %q", err, tc.wantErr)
			}
			// The object is now absent: compare with a calc that never
			// had it.
			ref := New(Config{Hostname: "h"})
			for _, u := range []Update{
				{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "a", Object: wep("ns", "a", "h", "cali1", "10.0.0.1/32", map[string]string{"app": "a"})},
				{Kind: KindGlobalNetworkPolicy, Name: "p", Object: gnp("p", "all()", api.Rule{Action: api.Deny})},
				{Kind: KindFelixConfiguration, Name: "default", Object: &api.FelixConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "default"},
					Spec: api.FelixConfigurationSpec{DefaultEndpointToHostAction: "Accept"}}},
			} {
				if u.Kind == tc.bad.Kind && u.Name == tc.bad.Name {
					continue
				}
				mustUpdate(t, ref, u)
			}
			got, want := c.State(), ref.State()
			if !got.Equal(&want) {
				t.Errorf("after the bad update the state is not the state without the object")
			}
			if got.Equal(&before) {
				t.Errorf("the bad update left the old object in place")
			}
		})
	}
}

func mustUpdate(t *testing.T, c *Calc, u Update) {
	t.Helper()
	if err := c.OnUpdate(u); err != nil {
		t.Fatalf("OnUpdate(%s %s): %v", u.Kind, u.Name, err)
	}
}

func TestIgnoredKinds(t *testing.T) {
	c := New(Config{Hostname: "h"})
	before := c.State()
	for _, u := range []Update{
		{Kind: "Node", Name: "h", Object: &api.Node{ObjectMeta: metav1.ObjectMeta{Name: "h"}}},
		{Kind: "IPPool", Name: "p"},
		{Kind: api.KindKubernetesNetworkPolicy, Namespace: "ns", Name: "x"},
	} {
		mustUpdate(t, c, u)
	}
	after := c.State()
	if !after.Equal(&before) {
		t.Error("an ignored kind changed the state")
	}
}

func TestRoutes(t *testing.T) {
	c := New(Config{Hostname: "h"})
	w := wep("ns", "a", "h", "cali1", "10.0.0.1/32", nil)
	w.Spec.IPNetworks = append(w.Spec.IPNetworks, "fd00::1/128")
	mustUpdate(t, c, Update{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "a", Object: w})
	mustUpdate(t, c, Update{Kind: KindWorkloadEndpoint, Namespace: "ns", Name: "b", Object: wep("ns", "b", "other", "cali2", "10.0.0.2/32", nil)})
	s := c.State()
	want := map[string][]netip.Prefix{"cali1": {netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::1/128")}}
	if diff := cmp.Diff(want, Routes(&s), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Routes (-want +got):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Hostname: "h"}, true},
		{Config{}, false},
		{Config{Hostname: "h", InterfacePrefixes: []string{""}}, false},
		{Config{Hostname: "h", InterfacePrefixes: []string{"cali", "tap"}}, true},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}
