package route_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/dataplane/route"
	"github.com/brindle-net/brindle/internal/netnstest"
)

var (
	ip  = netip.MustParseAddr
	pfx = netip.MustParsePrefix
)

func newDataplane(t *testing.T, host *netnstest.NS, cfg route.Config) *route.Dataplane {
	t.Helper()
	cfg.Netns = host.Path()
	d, err := route.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// kernelRoutes renders the main-table routes of the host as the test sees
// them through its own netlink handle (not the dataplane's), skipping the
// kernel's own routes and the kit's gateway route on lo.
func kernelRoutes(t *testing.T, host *netnstest.NS) []string {
	t.Helper()
	h := host.Handle()
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Protocol == unix.RTPROT_KERNEL || r.Protocol == unix.RTPROT_RA {
			continue
		}
		name := ""
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			name = l.Attrs().Name
		}
		if name == "lo" {
			continue
		}
		out = append(out, route.FormatRoute(r, name, route.DefaultProtocol))
	}
	sort.Strings(out)
	return out
}

// addForeignLink adds an up veth pair in host whose names have no workload
// prefix, and returns the first end.
func addForeignLink(t *testing.T, host *netnstest.NS, name string) netlink.Link {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}, PeerName: name + "p", PeerTxQLen: -1}
	if err := host.Handle().LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	l, err := host.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Handle().LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

func addRoute(t *testing.T, host *netnstest.NS, dst string, ifindex int, proto netlink.RouteProtocol) {
	t.Helper()
	p := pfx(dst)
	r := &netlink.Route{LinkIndex: ifindex, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Protocol: proto, Scope: netlink.SCOPE_LINK}
	if p.Addr().Is6() {
		r.Scope = netlink.SCOPE_UNIVERSE
	}
	if err := host.Handle().RouteAdd(r); err != nil {
		t.Fatalf("add route %s: %v", dst, err)
	}
}

func sysctl(t *testing.T, n *netnstest.NS, path string) string {
	t.Helper()
	v, err := netnstest.GetSysctl(n, path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkSysctls(t *testing.T, host *netnstest.NS, iface string) {
	t.Helper()
	want := map[string]string{
		"net/ipv4/conf/" + iface + "/proxy_arp":      "1",
		"net/ipv4/neigh/" + iface + "/proxy_delay":   "0",
		"net/ipv4/conf/" + iface + "/forwarding":     "1",
		"net/ipv4/conf/" + iface + "/route_localnet": "1",
		"net/ipv6/conf/" + iface + "/proxy_ndp":      "1",
		"net/ipv6/conf/" + iface + "/forwarding":     "1",
		"net/ipv6/conf/" + iface + "/accept_ra":      "0",
		"net/ipv6/conf/" + iface + "/disable_ipv6":   "0",
	}
	got := map[string]string{}
	for p := range want {
		got[p] = sysctl(t, host, p)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sysctls of %s (-want +got):\n%s", iface, diff)
	}
}

func TestPrivilegedApplyProgramsRoutesAndSysctls(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	host := netnstest.NewHostNS(t, "rt-apply")
	w1 := netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "w1", IfName: "caliw1", IPs: []netip.Addr{ip("10.70.0.1"), ip("fd00:70::1")}})
	w2 := netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "w2", IfName: "caliw2", IPs: []netip.Addr{ip("10.70.0.2"), ip("fd00:70::2")}})
	port := w2.ServeTCP(0)
	d := newDataplane(t, host, route.Config{})

	// Nothing gets through before the dataplane is programmed.
	if ok, err := netnstest.Probe(w1.NS, ip("10.70.0.2"), port, "TCP", 0); err != nil || ok {
		t.Fatalf("probe before Apply = %v, %v; want false, nil", ok, err)
	}
	desired := route.Routes{
		"caliw1": {pfx("10.70.0.1/32"), pfx("fd00:70::1/128")},
		"caliw2": {pfx("10.70.0.2/32"), pfx("fd00:70::2/128")},
	}
	if err := d.Apply(desired); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.70.0.1/32 dev caliw1 proto brindle scope link",
		"10.70.0.2/32 dev caliw2 proto brindle scope link",
		"fd00:70::1/128 dev caliw1 proto brindle metric 1024",
		"fd00:70::2/128 dev caliw2 proto brindle metric 1024",
	}
	if diff := cmp.Diff(want, kernelRoutes(t, host)); diff != "" {
		t.Errorf("kernel routes after Apply (-want +got):\n%s", diff)
	}
	dump, err := d.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(strings.Join(want, "\n")+"\n", dump); diff != "" {
		t.Errorf("Dump() (-want +got):\n%s", diff)
	}
	checkSysctls(t, host, "caliw1")
	checkSysctls(t, host, "caliw2")
	if s := d.Stats(); s.RoutesWritten != 4 || s.SysctlWrites == 0 {
		t.Errorf("Stats after first Apply = %+v; want 4 routes written and some sysctl writes", s)
	}

	// Declarative: the same set again writes nothing.
	before := d.Stats().Writes()
	if err := d.Apply(desired); err != nil {
		t.Fatal(err)
	}
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if got := d.Stats().Writes() - before; got != 0 {
		t.Errorf("second Apply and Resync made %d kernel writes, want 0", got)
	}

	// Real packets: proxy ARP answers for 169.254.1.1 and the per-interface
	// forwarding is enough for IPv4 (the namespace's ip_forward stays 0).
	if v := sysctl(t, host, "net/ipv4/ip_forward"); v != "0" {
		t.Fatalf("host ip_forward = %s, want the default 0 for this check", v)
	}
	if ok, err := netnstest.Probe(w1.NS, ip("10.70.0.2"), port, "TCP", time.Second); err != nil || !ok {
		t.Errorf("IPv4 probe w1 -> w2 = %v, %v; want true", ok, err)
	}
	// IPv6 forwarding is namespace-wide: the host's job, not ours.
	if err := netnstest.SetSysctl(host, "net/ipv6/conf/all/forwarding", "1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := netnstest.Probe(w1.NS, ip("fd00:70::2"), port, "TCP", 2*time.Second); err != nil || !ok {
		t.Errorf("IPv6 probe w1 -> w2 = %v, %v; want true", ok, err)
	}
}

func TestPrivilegedApplyRemovesOnlyStaleRoutesOfOurs(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	host := netnstest.NewHostNS(t, "rt-stale")
	netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "s1", IfName: "calis1", IPs: []netip.Addr{ip("10.71.0.1")}})
	netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "s2", IfName: "calis2", IPs: []netip.Addr{ip("10.71.0.2")}})
	foreign := addForeignLink(t, host, "brtfx0")
	s1, err := host.Handle().LinkByName("calis1")
	if err != nil {
		t.Fatal(err)
	}

	// Left from "an earlier run" or by someone else, before the first Apply.
	addRoute(t, host, "10.71.9.0/24", foreign.Attrs().Index, unix.RTPROT_STATIC)    // foreign: stays
	addRoute(t, host, "10.71.9.9/32", foreign.Attrs().Index, unix.RTPROT_BOOT)      // foreign: stays
	addRoute(t, host, "10.71.8.8/32", foreign.Attrs().Index, route.DefaultProtocol) // ours by protocol: goes
	addRoute(t, host, "10.71.0.99/32", s1.Attrs().Index, unix.RTPROT_BOOT)          // ours by interface: goes
	addRoute(t, host, "10.71.0.2/32", s1.Attrs().Index, unix.RTPROT_BOOT)           // wrong interface: moved

	d := newDataplane(t, host, route.Config{})
	// Nothing is swept before the first Apply.
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if w := d.Stats().Writes(); w != 0 {
		t.Fatalf("Resync before Apply made %d writes, want 0", w)
	}

	if err := d.Apply(route.Routes{"calis1": {pfx("10.71.0.1/32")}, "calis2": {pfx("10.71.0.2/32")}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.71.0.1/32 dev calis1 proto brindle scope link",
		"10.71.0.2/32 dev calis2 proto brindle scope link",
		"10.71.9.0/24 dev brtfx0 proto static scope link",
		"10.71.9.9/32 dev brtfx0 proto boot scope link",
	}
	if diff := cmp.Diff(want, kernelRoutes(t, host)); diff != "" {
		t.Errorf("kernel routes after first Apply (-want +got):\n%s", diff)
	}

	// A workload goes away: its route goes, the rest stays.
	if err := d.Apply(route.Routes{"calis1": {pfx("10.71.0.1/32")}}); err != nil {
		t.Fatal(err)
	}
	want = []string{
		"10.71.0.1/32 dev calis1 proto brindle scope link",
		"10.71.9.0/24 dev brtfx0 proto static scope link",
		"10.71.9.9/32 dev brtfx0 proto boot scope link",
	}
	if diff := cmp.Diff(want, kernelRoutes(t, host)); diff != "" {
		t.Errorf("kernel routes after removing calis2 (-want +got):\n%s", diff)
	}

	// An address moves to another workload: replaced in place.
	if err := d.Apply(route.Routes{"calis2": {pfx("10.71.0.1/32")}}); err != nil {
		t.Fatal(err)
	}
	want[0] = "10.71.0.1/32 dev calis2 proto brindle scope link"
	if diff := cmp.Diff(want, kernelRoutes(t, host)); diff != "" {
		t.Errorf("kernel routes after the move (-want +got):\n%s", diff)
	}

	// The kernel's own IPv6 routes on workload interfaces are not ours.
	rs, err := host.Handle().RouteList(s1, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	var ll bool
	for _, r := range rs {
		ll = ll || (r.Dst != nil && r.Dst.String() == "fe80::/64")
	}
	if !ll {
		t.Errorf("fe80::/64 on calis1 is gone; routes: %v", rs)
	}

	// Bad input writes nothing.
	before := d.Stats().Writes()
	if err := d.Apply(route.Routes{"eth0": {pfx("10.71.0.1/32")}}); err == nil {
		t.Error("Apply with a non-workload interface: want an error")
	}
	if d.Stats().Writes() != before {
		t.Error("a rejected Apply wrote to the kernel")
	}
}

func TestPrivilegedResyncRepairsDrift(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	host := netnstest.NewHostNS(t, "rt-drift")
	netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "d1", IfName: "calid1", IPs: []netip.Addr{ip("10.72.0.1")}})
	d := newDataplane(t, host, route.Config{})
	if err := d.Apply(route.Routes{"calid1": {pfx("10.72.0.1/32"), pfx("fd00:72::1/128")}}); err != nil {
		t.Fatal(err)
	}
	want := kernelRoutes(t, host)

	// Someone deletes our routes and resets a sysctl.
	l, err := host.Handle().LinkByName("calid1")
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"10.72.0.1/32", "fd00:72::1/128"} {
		p := pfx(dst)
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Scope: netlink.SCOPE_NOWHERE}
		if err := host.Handle().RouteDel(r); err != nil {
			t.Fatalf("delete %s by hand: %v (routes: %v)", dst, err, want)
		}
	}
	if err := netnstest.SetSysctl(host, "net/ipv4/conf/calid1/proxy_arp", "0"); err != nil {
		t.Fatal(err)
	}
	if got := kernelRoutes(t, host); len(got) != 0 {
		t.Fatalf("routes after deleting by hand: %v", got)
	}

	before := d.Stats()
	if err := d.Resync(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, kernelRoutes(t, host)); diff != "" {
		t.Errorf("routes after Resync (-want +got):\n%s", diff)
	}
	checkSysctls(t, host, "calid1")
	after := d.Stats()
	if got := after.Writes() - before.Writes(); got != 3 {
		t.Errorf("Resync made %d writes, want 3 (two routes, one sysctl)", got)
	}
}

func TestPrivilegedInterfaceAppearsAfterApply(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	host := netnstest.NewHostNS(t, "rt-late")
	// A resync far in the future: only the link event can program the route.
	d := newDataplane(t, host, route.Config{ResyncInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	if err := d.Apply(route.Routes{"calilate": {pfx("10.73.0.1/32")}}); err != nil {
		t.Fatal(err)
	}
	dump, err := d.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if want := "pending 10.73.0.1/32 dev calilate (no such interface)\n"; dump != want {
		t.Errorf("Dump before the interface exists = %q, want %q", dump, want)
	}
	if s := d.Stats(); s.Pending != 1 || s.RoutesWritten != 0 {
		t.Errorf("Stats = %+v, want 1 pending and nothing written", s)
	}
	// Once Run watches links, only a link event can program the route (an
	// interface that appeared before would be Run's first reconcile's).
	waitFor(t, func() bool { return d.Stats().Watches >= 1 }, "Run to watch links")

	w := netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "late", IfName: "calilate", IPs: []netip.Addr{ip("10.73.0.1")}})
	want := []string{"10.73.0.1/32 dev calilate proto brindle scope link"}
	waitFor(t, func() bool { return cmp.Equal(want, kernelRoutes(t, host)) }, "route after calilate appeared")
	checkSysctls(t, host, "calilate")
	s := d.Stats()
	if s.Resyncs != 0 || s.LinkEvents == 0 || s.Pending != 0 {
		t.Errorf("Stats = %+v, want the link event (not a resync) to have done it", s)
	}

	// The kernel drops IPv4 routes of an interface that goes down; the route
	// is pending while it is down and comes back with the link.
	l, err := host.Handle().LinkByName("calilate")
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Handle().LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		dump, err := d.Dump()
		return err == nil && dump == "pending 10.73.0.1/32 dev calilate (interface down)\n"
	}, "route pending while calilate is down")
	if err := host.Handle().LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return cmp.Equal(want, kernelRoutes(t, host)) }, "route back after calilate came up")

	// Up but without carrier (the workload's side is down, as while the
	// CNI plugin is still setting it up): no route, so the first packets
	// cannot start ARP on a dead link; it comes with the carrier.
	eth0, err := w.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Handle().LinkSetDown(eth0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		dump, err := d.Dump()
		return err == nil && dump == "pending 10.73.0.1/32 dev calilate (no carrier)\n" && len(kernelRoutes(t, host)) == 0
	}, "route pending while calilate has no carrier")
	if err := w.Handle().LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return cmp.Equal(want, kernelRoutes(t, host)) }, "route back with the carrier")
	if s := d.Stats(); s.Resyncs != 0 {
		t.Errorf("Stats = %+v, want no resync", s)
	}
}

// waitFor polls cond for up to 5 s: link events are asynchronous.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for: %s", what)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// subscriberGoroutines counts goroutines inside the netlink link
// subscription (its receiver and its closer).
func subscriberGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "netlink.linkSubscribeAt")
}

// TestPrivilegedRunStopsQuietly: cancelling Run's context is a normal
// shutdown: Run returns nil, logs nothing and leaves no subscription
// goroutine behind. Not parallel, so no other test's Run is counted.
func TestPrivilegedRunStopsQuietly(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.NewHostNS(t, "rt-stop")
	var logs syncBuffer
	d := newDataplane(t, host, route.Config{ResyncInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := d.Apply(route.Routes{"calistop": {pfx("10.74.0.1/32")}}); err != nil {
		t.Fatal(err)
	}
	before := subscriberGoroutines()
	for i := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		if i == 0 {
			// One link event while running, so the receiver has been busy.
			netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: "stop", IfName: "calistop", IPs: []netip.Addr{ip("10.74.0.1")}})
			waitFor(t, func() bool { return len(kernelRoutes(t, host)) == 1 }, "route of calistop")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	waitFor(t, func() bool { return subscriberGoroutines() == before }, "subscription goroutines to end")
	if strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("Run logged on a normal shutdown:\n%s", logs.String())
	}
}
