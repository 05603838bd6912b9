package nft

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/internal/netprobe"
	"github.com/vishvananda/netlink"
)

// lab is a host namespace with workloads and a Dataplane programming it.
type lab struct {
	t    testing.TB
	host *netnstest.NS
	dp   *Dataplane
	wl   map[string]*netnstest.Workload
}

// newLab builds a host namespace with one workload per name, each with the
// IPv4 address 10.65.0.<i+1> on interface "cali<name>".
func newLab(t testing.TB, names ...string) *lab {
	t.Helper()
	return newLabWith(t, false, Config{}, names...)
}

// newLabWith is newLab with a dataplane configuration; with v6 each
// workload also gets fd00:65::<i+1>.
func newLabWith(t testing.TB, v6 bool, cfg Config, names ...string) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	host := netnstest.NewHostNS(t, "nft")
	if err := netnstest.EnableForwarding(host); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, host: host, wl: map[string]*netnstest.Workload{}}
	for i, n := range names {
		ips := []netip.Addr{netip.AddrFrom4([4]byte{10, 65, 0, byte(i + 1)})}
		if v6 {
			ips = append(ips, netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x65, 15: byte(i + 1)}))
		}
		w := netnstest.AddWorkload(t, host, netnstest.WorkloadOpts{Name: n, IfName: "cali" + n, IPs: ips})
		w.HostRoutes()
		l.wl[n] = w
	}
	cfg.NetNSFd = int(host.NsHandle())
	dp, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	l.dp = dp
	return l
}

func (l *lab) ip(name string) netip.Addr { return l.wl[name].IPs[0] }

func (l *lab) iface(name string) string { return l.wl[name].IfName }

func (l *lab) apply(s *desired.State) {
	l.t.Helper()
	if err := l.dp.Apply(s); err != nil {
		l.t.Fatalf("Apply: %v", err)
	}
	// With GenericFromStart the packets must go through the generic
	// chains (an endpoint with a missing profile cannot).
	if l.dp.cfg.GenericFromStart && s.Endpoints.Len() > 0 && l.dp.GenericClasses() == 0 {
		l.t.Fatalf("GenericFromStart: no class is generic")
	}
}

// probe is one expected connectivity result.
type probe struct {
	from, to string
	proto    string // TCP, UDP or ICMP
	port     uint16
	want     bool
}

func (p probe) String() string {
	return fmt.Sprintf("%s %s->%s:%d", p.proto, p.from, p.to, p.port)
}

// check runs the probes and reports each one that disagrees.
func (l *lab) check(probes ...probe) {
	l.t.Helper()
	for _, p := range probes {
		var got bool
		var err error
		timeout := 400 * time.Millisecond
		if p.want {
			timeout = 2 * time.Second
		}
		switch p.proto {
		case "ICMP":
			got, err = ping(l.wl[p.from].NS, l.ip(p.to), timeout)
		case "TCP6":
			got, err = netnstest.Probe(l.wl[p.from].NS, l.wl[p.to].IPs[1], p.port, "TCP", timeout)
		default:
			got, err = netnstest.Probe(l.wl[p.from].NS, l.ip(p.to), p.port, p.proto, timeout)
		}
		if err != nil {
			l.t.Errorf("%v: probe error: %v", p, err)
			continue
		}
		if got != p.want {
			l.t.Errorf("%v: connected=%v, want %v", p, got, p.want)
		}
	}
}

// tables lists both of our tables.
func (l *lab) tables() string {
	return l.nft("list", "table", "inet", "brindle") + l.nft("list", "table", "inet", "brindle-classify")
}

// nft runs the nft CLI inside the host namespace.
func (l *lab) nft(args ...string) string {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.host.Name(), "nft"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ping sends one ICMP echo request from namespace ns and waits for the
// reply.
func ping(ns *netnstest.NS, dst netip.Addr, timeout time.Duration) (bool, error) {
	var ok bool
	err := ns.Do(func() (err error) {
		ok, err = netprobe.ICMP(dst, 8, 0, timeout)
		return err
	})
	return ok, err
}

func mustNLAddr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
}
