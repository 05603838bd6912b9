package nat

import (
	"net/netip"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ippool(name, cidr string, nat, disabled bool) *api.IPPool {
	return &api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: api.IPPoolSpec{CIDR: cidr, NATOutgoing: nat, Disabled: disabled}}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name  string
		pools []*api.IPPool
		want  string
	}{
		{"no pools", nil, ""},
		{"no natOutgoing pool: no table", []*api.IPPool{ippool("a", "10.0.0.0/16", false, false)}, ""},
		{"one nat pool among others", []*api.IPPool{
			ippool("b", "10.1.0.0/16", false, false),
			ippool("a", "10.0.0.0/16", true, false),
			ippool("v6", "fd00::/64", true, false),
			ippool("bad", "nonsense", true, false),
		}, "set masq-pools { 10.0.0.0/16 }\nset all-pools { 10.0.0.0/16, 10.1.0.0/16 }\n" +
			"chain postrouting: ip saddr @masq-pools ip daddr != @all-pools masquerade\n"},
		{"disabled and v1-style pools count, unmasked CIDRs are masked, duplicates merged", []*api.IPPool{
			ippool("a", "10.0.0.0/16", true, true),
			{ObjectMeta: metav1.ObjectMeta{Name: "v1"}, Spec: api.IPPoolSpec{CIDR: "10.2.3.4/16", NATOutgoingV1: true}},
			ippool("dup", "10.0.0.0/16", false, false),
		}, "set masq-pools { 10.0.0.0/16, 10.2.0.0/16 }\nset all-pools { 10.0.0.0/16, 10.2.0.0/16 }\n" +
			"chain postrouting: ip saddr @masq-pools ip daddr != @all-pools masquerade\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Plan(tc.pools).String()); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestElements(t *testing.T) {
	ip := func(s string) uint32 {
		a := netip.MustParseAddr(s).As4()
		return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	}
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name string
		in   []netip.Prefix
		want []elementValue
	}{
		{"empty", nil, nil},
		{"one", pp("10.0.0.0/16"), []elementValue{{ip("10.0.0.0"), false}, {ip("10.1.0.0"), true}}},
		{"adjacent merge", pp("10.1.0.0/16", "10.0.0.0/16"), []elementValue{{ip("10.0.0.0"), false}, {ip("10.2.0.0"), true}}},
		{"nested merge", pp("10.0.0.0/8", "10.1.0.0/16"), []elementValue{{ip("10.0.0.0"), false}, {ip("11.0.0.0"), true}}},
		{"disjoint", pp("192.168.0.0/16", "10.0.0.0/8"), []elementValue{
			{ip("10.0.0.0"), false}, {ip("11.0.0.0"), true}, {ip("192.168.0.0"), false}, {ip("192.169.0.0"), true}}},
		{"top of space has no end", pp("255.255.255.0/24"), []elementValue{{ip("255.255.255.0"), false}}},
		{"everything", pp("0.0.0.0/0"), []elementValue{{0, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, elements(tc.in), cmp.AllowUnexported(elementValue{})); diff != "" {
				t.Errorf("elements (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredValidate(t *testing.T) {
	bad := []Desired{
		{Masquerade: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/16")}},
		{Pools: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}},
		{Pools: []netip.Prefix{{}}},
	}
	for i, d := range bad {
		if err := d.validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, d)
		}
	}
	if err := Plan([]*api.IPPool{ippool("a", "10.0.0.0/16", true, false)}).validate(); err != nil {
		t.Errorf("planned desired does not validate: %v", err)
	}
}
