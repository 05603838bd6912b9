package routing_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/ctl"
	"github.com/brindle-net/brindle/ipam"
	"github.com/brindle-net/brindle/routing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPrivilegedDaemonMesh: three hosts, each running the routing daemon
// against one etcd. Blocks claimed through IPAM become one kernel route per
// remote block on every other host (protocol 99) and a blackhole at the
// owner; an address borrowed from another host's block is a /32 from the
// borrower; deleting a block's affinity withdraws the block everywhere;
// brindlectl node status reads a daemon's socket.
func TestPrivilegedDaemonMesh(t *testing.T) {
	t.Parallel()
	l := routing.NewDaemonLab(t, 3*time.Second, 6*time.Second)
	h1, h2, h3 := l.Host("d1", "10.123.0.51"), l.Host("d2", "10.123.0.52"), l.Host("d3", "10.123.0.53")
	b1 := l.Claim("d1").Masked()
	a2 := l.Claim("d2")
	b2 := a2.Masked()
	b3 := l.Claim("d3").Masked()
	for _, h := range []*routing.DaemonHost{h1, h2, h3} {
		h.Start(true)
	}
	r := func(b netip.Prefix, h *routing.DaemonHost) string { return b.String() + " via " + h.IP.String() }
	bh := func(b netip.Prefix) string { return "blackhole " + b.String() }
	sorted := func(ss ...string) []string { return slices.Sorted(slices.Values(ss)) }
	h1.WantRoutes(sorted(bh(b1), r(b2, h2), r(b3, h3)), 30*time.Second)
	h2.WantRoutes(sorted(r(b1, h1), bh(b2), r(b3, h3)), 10*time.Second)
	h3.WantRoutes(sorted(r(b1, h1), r(b2, h2), bh(b3)), 10*time.Second)

	// More addresses in the same blocks: still one route per block.
	d2Addrs := []netip.Addr{a2.Addr()}
	for range 3 {
		a := l.Claim("d2")
		if a.Masked() != b2 {
			t.Fatalf("d2 claimed a second block %s", a.Masked())
		}
		d2Addrs = append(d2Addrs, a.Addr())
	}
	// d1 borrows an address from d3's block: a /32 via d1 everywhere
	// (at d3 it beats d3's own blackhole by prefix length).
	borrowed := b3.Addr().Next().Next().Next().Next().Next()
	if err := l.IPAM.AssignIP(context.Background(), ipam.AssignIPArgs{IP: borrowed, HandleID: "h-borrow", Node: "d1"}); err != nil {
		t.Fatal(err)
	}
	host32 := netip.PrefixFrom(borrowed, 32)
	h2.WantRoutes(sorted(r(b1, h1), bh(b2), r(b3, h3), r(host32, h1)), 10*time.Second)
	h3.WantRoutes(sorted(r(b1, h1), r(b2, h2), bh(b3), r(host32, h1)), 10*time.Second)

	// brindlectl node status against d1's socket.
	var out bytes.Buffer
	root := ctl.NewRootCommand(&ctl.Options{
		Streams: ctl.Streams{In: strings.NewReader(""), Out: &out, ErrOut: io.Discard},
		Logger:  slog.New(slog.DiscardHandler),
	})
	root.SetArgs([]string{"node", "status", "--socket", h1.Socket})
	routing.Eventually(t, 10*time.Second, "brindlectl node status on d1", func() string {
		out.Reset()
		if err := root.Execute(); err != nil {
			return err.Error()
		}
		s := out.String()
		for _, peer := range []string{"10.123.0.52", "10.123.0.53"} {
			if !hasRow(s, peer, "node-to-node", "mesh", "up") {
				return "no session row for " + peer + " that is up in\n" + s
			}
		}
		for _, want := range []string{
			"BGP on node d1: running (AS 64512, router ID 10.123.0.51, port 179)",
			"  " + b1.String() + "\n",
			"  " + host32.String() + "\n",
			r(b2, h2) + " proto 99",
		} {
			if !strings.Contains(s, want) {
				return "no " + want + " in\n" + s
			}
		}
		return ""
	})
	t.Logf("brindlectl node status:\n%s", out.String())
	st, err := h1.Status()
	if err != nil || st.State != "running" || len(st.Peers) != 2 {
		t.Fatalf("d1 status: %+v, %v", st, err)
	}
	for _, p := range st.Peers {
		wantAdv := uint64(2) // b1 and the borrowed /32
		if p.State != "Established" || p.RoutesAdvertised != wantAdv || p.RoutesReceived != 1 {
			t.Errorf("d1 session %s: %+v (want Established, 1 received, %d advertised)", p.Address, p, wantAdv)
		}
	}

	// Deleting d2's affinity to b2 withdraws b2 everywhere, blackhole too;
	// d2's addresses still in b2 are then advertised one by one (they are
	// d2's, in a block nobody is affine to).
	kv, err := l.Client.Raw().Get(context.Background(), ipam.AffinityKey("d2", b2))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Client.Raw().Delete(context.Background(), kv.Key, kv.ModRevision); err != nil {
		t.Fatal(err)
	}
	var d2Routes []string
	for _, a := range d2Addrs {
		d2Routes = append(d2Routes, r(netip.PrefixFrom(a, 32), h2))
	}
	h1.WantRoutes(sorted(append([]string{bh(b1), r(b3, h3)}, d2Routes...)...), 10*time.Second)
	h3.WantRoutes(sorted(append([]string{r(b1, h1), bh(b3), r(host32, h1)}, d2Routes...)...), 10*time.Second)
	h2.WantRoutes(sorted(r(b1, h1), r(b3, h3), r(host32, h1)), 10*time.Second)
	// Once they are released, nothing of b2 is left anywhere.
	for _, a := range d2Addrs {
		if _, err := l.IPAM.ReleaseIPs(context.Background(), ipam.ReleaseOptions{Address: a}); err != nil {
			t.Fatal(err)
		}
	}
	h1.WantRoutes(sorted(bh(b1), r(b3, h3)), 10*time.Second)
	h3.WantRoutes(sorted(r(b1, h1), bh(b3), r(host32, h1)), 10*time.Second)

	// A VXLAN pool's routes belong to the VXLAN dataplane: learned routes
	// inside it leave the kernel (blackholes of owned blocks stay), and come
	// back when the pool stops using VXLAN.
	pool := &api.IPPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"},
		ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec:       api.IPPoolSpec{CIDR: "10.244.0.0/16", BlockSize: 26, VXLANMode: api.EncapAlways},
	}
	stored, err := l.Client.Create(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	h1.WantRoutes([]string{bh(b1)}, 10*time.Second)
	h3.WantRoutes([]string{bh(b3)}, 10*time.Second)
	stored.(*api.IPPool).Spec.VXLANMode = api.EncapNever
	if _, err := l.Client.Update(context.Background(), stored); err != nil {
		t.Fatal(err)
	}
	h1.WantRoutes(sorted(bh(b1), r(b3, h3)), 10*time.Second)
	h3.WantRoutes(sorted(r(b1, h1), bh(b3), r(host32, h1)), 10*time.Second)
}

// hasRow reports whether a line of s starts with the given fields.
func hasRow(s string, fields ...string) bool {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && slices.Equal(f[:len(fields)], fields) {
			return true
		}
	}
	return false
}
