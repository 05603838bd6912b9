package route_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/dataplane/route"
	"github.com/brindle-net/brindle/internal/netnstest"
)

// BenchmarkResync measures the steady state of a host with 1,000 workload
// veths and one route each: a Resync that finds no drift (reads links,
// sysctls and routes back, writes nothing), an unchanged Apply (links and
// routes, no sysctl reads), and a Resync that repairs one deleted route.
// The namespaces are built once; the sub-benchmarks share them.
func BenchmarkResync(b *testing.B) {
	netnstest.RequireRoot(b)
	const n = 1000
	host := netnstest.NewHostNS(b, "rt-bench")
	sink := netnstest.NewNS(b, "rt-sink")
	desired := route.Routes{}
	for i := range n {
		name := fmt.Sprintf("calib%06d", i)
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: name, TxQLen: -1},
			PeerName:      fmt.Sprintf("e%d", i),
			PeerTxQLen:    -1,
			PeerNamespace: netlink.NsFd(sink.NsHandle()),
		}
		if err := host.Handle().LinkAdd(v); err != nil {
			b.Fatal(err)
		}
		if err := host.Handle().LinkSetUp(v); err != nil {
			b.Fatal(err)
		}
		// The peer up too: routes go only to links with carrier.
		peer, err := sink.Handle().LinkByName(v.PeerName)
		if err != nil {
			b.Fatal(err)
		}
		if err := sink.Handle().LinkSetUp(peer); err != nil {
			b.Fatal(err)
		}
		a := netip.AddrFrom4([4]byte{10, 80, byte(i >> 8), byte(i)})
		desired[name] = []netip.Prefix{netip.PrefixFrom(a, 32)}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		links, err := host.Handle().LinkList()
		if err != nil {
			b.Fatal(err)
		}
		running := 0
		for _, l := range links {
			if l.Attrs().RawFlags&unix.IFF_RUNNING != 0 && strings.HasPrefix(l.Attrs().Name, "calib") {
				running++
			}
		}
		if running == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d veths have carrier after 10s", running, n)
		}
	}
	d, err := route.New(route.Config{Netns: host.Path()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	if err := d.Apply(desired); err != nil {
		b.Fatal(err)
	}
	if s := d.Stats(); s.RoutesWritten != n {
		b.Fatalf("first Apply wrote %d routes, want %d", s.RoutesWritten, n)
	}

	b.Run("routes=1000/no-drift", func(b *testing.B) {
		b.ReportAllocs()
		before := d.Stats().Writes()
		for b.Loop() {
			if err := d.Resync(); err != nil {
				b.Fatal(err)
			}
		}
		if w := d.Stats().Writes() - before; w != 0 {
			b.Fatalf("no-drift Resync wrote %d times", w)
		}
	})
	b.Run("routes=1000/apply-unchanged", func(b *testing.B) {
		b.ReportAllocs()
		before := d.Stats().Writes()
		for b.Loop() {
			if err := d.Apply(desired); err != nil {
				b.Fatal(err)
			}
		}
		if w := d.Stats().Writes() - before; w != 0 {
			b.Fatalf("unchanged Apply wrote %d times", w)
		}
	})
	b.Run("routes=1000/repair-one", func(b *testing.B) {
		b.ReportAllocs()
		l, err := host.Handle().LinkByName("calib000007")
		if err != nil {
			b.Fatal(err)
		}
		victim := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 80, 0, 7).To4(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_NOWHERE}
		before := d.Stats().RoutesWritten
		for b.Loop() {
			b.StopTimer()
			if err := host.Handle().RouteDel(victim); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := d.Resync(); err != nil {
				b.Fatal(err)
			}
		}
		if got := d.Stats().RoutesWritten - before; got != uint64(b.N) {
			b.Fatalf("repaired %d routes in %d iterations", got, b.N)
		}
	})
}
