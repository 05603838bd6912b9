package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeIPFlag(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "10.0.0.5/24", want: "10.0.0.5/24"},
		{in: "192.168.1.1/32", want: "192.168.1.1/32"},
		{in: "10.0.0.5", err: `--ip "10.0.0.5": want an IPv4 address with its prefix length, e.g. 10.0.0.5/24, or "autodetect"`},
		{in: "fd00::1/64", err: `--ip "fd00::1/64": want an IPv4 address`},
		{in: "auto", err: `--ip "auto": want`},
	}
	for _, tc := range tests {
		got, err := nodeIP(tc.in, "")
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("nodeIP(%q) error %v, want prefix %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("nodeIP(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestRegisterNode: create, then update with CAS keeping every other
// field; unchanged = no write; --as sets asNumber, no --as keeps it.
func TestRegisterNode(t *testing.T) {
	ctx := context.Background()
	m := datastoretest.New(t)
	c := m.Client
	log := slog.New(slog.DiscardHandler)
	kind, _ := api.LookupKind("Node")
	get := func() *api.Node {
		t.Helper()
		o, err := c.Get(ctx, kind, "", "h1")
		if err != nil {
			t.Fatal(err)
		}
		return o.(*api.Node)
	}
	if err := registerNode(ctx, c, "h1", netip.MustParsePrefix("10.0.0.1/24"), nil, nil, log); err != nil {
		t.Fatal(err)
	}
	if n := get(); n.Spec.BGP == nil || n.Spec.BGP.IPv4Address != "10.0.0.1/24" || n.Spec.BGP.ASNumber != nil {
		t.Fatalf("created: %+v", n.Spec.BGP)
	}
	// Someone else adds labels, a VXLAN address and a reflector ID.
	n := get()
	n.Labels = map[string]string{"rack": "r1"}
	n.Spec.IPv4VXLANTunnelAddr = "10.244.0.1"
	n.Spec.BGP.RouteReflectorClusterID = "224.0.0.1"
	if _, err := c.Update(ctx, n); err != nil {
		t.Fatal(err)
	}
	rv := get().ResourceVersion
	if err := registerNode(ctx, c, "h1", netip.MustParsePrefix("10.0.0.1/24"), nil, nil, log); err != nil {
		t.Fatal(err)
	}
	if got := get().ResourceVersion; got != rv {
		t.Errorf("unchanged registration wrote the Node (revision %s -> %s)", rv, got)
	}
	as := api.ASNumber(65001)
	if err := registerNode(ctx, c, "h1", netip.MustParsePrefix("10.0.1.7/16"), &as, nil, log); err != nil {
		t.Fatal(err)
	}
	got := get()
	want := api.NodeSpec{
		BGP:                 &api.NodeBGPSpec{IPv4Address: "10.0.1.7/16", ASNumber: &as, RouteReflectorClusterID: "224.0.0.1"},
		IPv4VXLANTunnelAddr: "10.244.0.1",
	}
	if d := cmp.Diff(want, got.Spec); d != "" {
		t.Errorf("spec after update (-want +got)\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"rack": "r1"}, got.Labels); d != "" {
		t.Errorf("labels (-want +got)\n%s", d)
	}
	// Without --as the AS stays.
	if err := registerNode(ctx, c, "h1", netip.MustParsePrefix("10.0.1.8/16"), nil, nil, log); err != nil {
		t.Fatal(err)
	}
	if b := get().Spec.BGP; b.ASNumber == nil || *b.ASNumber != 65001 || b.IPv4Address != "10.0.1.8/16" {
		t.Errorf("after update without --as: %+v", b)
	}
	// A Node with no bgp section gets one.
	bare := &api.Node{TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersion, Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "h2"}}
	if _, err := c.Create(ctx, bare); err != nil {
		t.Fatal(err)
	}
	if err := registerNode(ctx, c, "h2", netip.MustParsePrefix("10.0.0.2/24"), nil, nil, log); err != nil {
		t.Fatal(err)
	}
	o, _ := c.Get(ctx, kind, "", "h2")
	if b := o.(*api.Node).Spec.BGP; b == nil || b.IPv4Address != "10.0.0.2/24" {
		t.Errorf("h2: %+v", b)
	}
	// A node running for Kubernetes adds its orchRef once, keeping others.
	k8s := &api.OrchRef{Orchestrator: api.OrchestratorKubernetes, NodeName: "h2"}
	other := api.OrchRef{Orchestrator: "openstack", NodeName: "compute-2"}
	h2 := o.(*api.Node)
	h2.Spec.OrchRefs = []api.OrchRef{other}
	if _, err := c.Update(ctx, h2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := registerNode(ctx, c, "h2", netip.MustParsePrefix("10.0.0.2/24"), nil, k8s, log); err != nil {
			t.Fatal(err)
		}
	}
	o, _ = c.Get(ctx, kind, "", "h2")
	if d := cmp.Diff([]api.OrchRef{other, *k8s}, o.(*api.Node).Spec.OrchRefs); d != "" {
		t.Errorf("h2 orchRefs (-want +got)\n%s", d)
	}
	if err := registerNode(ctx, c, "h3", netip.MustParsePrefix("10.0.0.3/24"), nil, k8s, log); err != nil {
		t.Fatal(err)
	}
	o, _ = c.Get(ctx, kind, "", "h3")
	if d := cmp.Diff([]api.OrchRef{*k8s}, o.(*api.Node).Spec.OrchRefs); d != "" {
		t.Errorf("h3 orchRefs (-want +got)\n%s", d)
	}
}

// TestPrivilegedAutodetectIP: the default route's interface's first global
// address, with its length; the lowest-metric default wins; clear errors
// without a default route or a global address.
func TestPrivilegedAutodetectIP(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	ns := netnstest.NewNS(t, "ad")
	h := ns.Handle()
	if _, err := autodetectIP(h); err == nil || err.Error() != "no IPv4 default route" {
		t.Fatalf("no default route: %v", err)
	}
	addDummy := func(name string, addrs ...string) netlink.Link {
		t.Helper()
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
		if p, err := h.LinkByName(name + "p"); err != nil || h.LinkSetUp(p) != nil {
			t.Fatalf("peer of %s: %v", name, err)
		}
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			ad, err := netlink.ParseAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(a, "127.") {
				ad.Scope = int(netlink.SCOPE_HOST)
			}
			if err := h.AddrAdd(l, ad); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	d1 := addDummy("d1", "127.0.0.9/8", "10.9.0.5/24", "10.9.1.5/16")
	d2 := addDummy("d2", "10.8.0.5/24")
	route := func(l netlink.Link, metric int) {
		t.Helper()
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Priority: metric}
		if err := h.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	route(d2, 200)
	route(d1, 100)
	got, err := autodetectIP(h)
	if err != nil || got != netip.MustParsePrefix("10.9.0.5/24") {
		t.Errorf("autodetect = %v, %v; want 10.9.0.5/24 (d1 has the lower metric)", got, err)
	}
	// Through the flag, in the namespace by path.
	if got, err := nodeIP(ipAutodetect, ns.Path()); err != nil || got != netip.MustParsePrefix("10.9.0.5/24") {
		t.Errorf("nodeIP(autodetect, %s) = %v, %v", ns.Path(), got, err)
	}
	d3 := addDummy("d3", "127.0.0.10/8")
	route(d3, 10)
	if _, err := autodetectIP(h); err == nil || err.Error() != "interface d3 (default route) has no global IPv4 address" {
		t.Errorf("no global address: %v", err)
	}
}
