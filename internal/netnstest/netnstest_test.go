package netnstest

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "net.ipv4.ip_forward", want: "/proc/sys/net/ipv4/ip_forward"},
		{in: "net/ipv4/conf/cali.x/proxy_arp", want: "/proc/sys/net/ipv4/conf/cali.x/proxy_arp"},
		{in: "", wantErr: true},
		{in: "/proc/sys/net", wantErr: true},
		{in: "net/../../etc/passwd", wantErr: true},
	}
	for _, tc := range tests {
		got, err := sysctlPath(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestPrivilegedWorkloadsReachEachOther(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	host := NewHostNS(t, "host")
	a := AddWorkload(t, host, WorkloadOpts{Name: "a", IPs: []netip.Addr{netip.MustParseAddr("10.65.0.1"), netip.MustParseAddr("fd00:65::1")}, MTU: 1400})
	b := AddWorkload(t, host, WorkloadOpts{Name: "b", IPs: []netip.Addr{netip.MustParseAddr("10.65.0.2"), netip.MustParseAddr("fd00:65::2")}})
	if !strings.HasPrefix(a.IfName, "cali") || len(a.IfName) != 15 {
		t.Errorf("default IfName = %q, want cali + 11 hex", a.IfName)
	}
	tcp := b.ServeTCP(8080)
	udp := b.ServeUDP(5353)

	// Before host routes and forwarding, nothing gets through.
	if ok, err := Probe(a.NS, b.IPs[0], tcp, "TCP", 0); err != nil || ok {
		t.Fatalf("TCP probe before host routes = %v, %v; want false, nil", ok, err)
	}

	a.HostRoutes()
	b.HostRoutes()
	if err := EnableForwarding(host); err != nil {
		t.Fatal(err)
	}
	for _, dst := range b.IPs {
		timeout := time.Second
		for _, proto := range []string{"TCP", "UDP"} {
			port := tcp
			if proto == "UDP" {
				port = udp
			}
			if ok, err := Probe(a.NS, dst, port, proto, timeout); err != nil || !ok {
				t.Errorf("%s probe a -> %s:%d = %v, %v; want true", proto, dst, port, ok, err)
			}
		}
	}
	// A port nobody listens on: refused (TCP) or unanswered (UDP).
	for _, proto := range []string{"TCP", "UDP"} {
		if ok, err := Probe(a.NS, b.IPs[0], 9, proto, 0); err != nil || ok {
			t.Errorf("%s probe to closed port = %v, %v; want false, nil", proto, ok, err)
		}
	}
	if _, err := Probe(a.NS, b.IPs[0], 1, "ICMP", 0); err == nil {
		t.Errorf("probe with protocol ICMP: want an error")
	}

	// The kit's sysctl helpers read what they wrote, in the right namespace.
	if v, err := GetSysctl(host, "net/ipv4/conf/"+a.IfName+"/proxy_arp"); err != nil || v != "1" {
		t.Errorf("proxy_arp on %s = %q, %v; want 1", a.IfName, v, err)
	}
	if v, err := GetSysctl(a.NS, "net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Errorf("ip_forward in workload = %q, %v; want 0", v, err)
	}
	// Host side of the veth carries the fixed MAC and the MTU.
	l, err := host.Handle().LinkByName(a.IfName)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Attrs().HardwareAddr.String(); got != HostMAC.String() {
		t.Errorf("host veth MAC = %s, want %s", got, HostMAC)
	}
	if got := l.Attrs().MTU; got != 1400 {
		t.Errorf("host veth MTU = %d, want 1400", got)
	}
}

func TestPrivilegedSCTPProbe(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	host := NewHostNS(t, "sctp")
	a := AddWorkload(t, host, WorkloadOpts{Name: "sa", IPs: []netip.Addr{netip.MustParseAddr("10.66.0.1")}})
	b := AddWorkload(t, host, WorkloadOpts{Name: "sb", IPs: []netip.Addr{netip.MustParseAddr("10.66.0.2")}})
	avail := SCTPAvailable(host)
	_, perr := Probe(a.NS, b.IPs[0], 9, "SCTP", 0)
	if errors.Is(avail, ErrSCTPUnavailable) {
		if !errors.Is(perr, ErrSCTPUnavailable) {
			t.Fatalf("SCTP probe without kernel SCTP = %v, want ErrSCTPUnavailable", perr)
		}
		if err := b.ServeSCTP(9); !errors.Is(err, ErrSCTPUnavailable) {
			t.Fatalf("ServeSCTP without kernel SCTP = %v, want ErrSCTPUnavailable", err)
		}
		t.Skip(avail.Error())
	}
	if avail != nil {
		t.Fatal(avail)
	}
	a.HostRoutes()
	b.HostRoutes()
	if err := EnableForwarding(host); err != nil {
		t.Fatal(err)
	}
	if err := b.ServeSCTP(9); err != nil {
		t.Fatal(err)
	}
	if ok, err := Probe(a.NS, b.IPs[0], 9, "SCTP", time.Second); err != nil || !ok {
		t.Errorf("SCTP probe = %v, %v; want true", ok, err)
	}
}

func TestPrivilegedCleanupRemovesEverything(t *testing.T) {
	RequireRoot(t)
	t.Parallel()
	var names []string
	t.Run("inner", func(t *testing.T) {
		host := NewHostNS(t, "clean")
		w := AddWorkload(t, host, WorkloadOpts{Name: "cw", IPs: []netip.Addr{netip.MustParseAddr("10.67.0.1")}})
		w.ServeTCP(0)
		w.ServeUDP(0)
		names = []string{host.Name(), w.Name()}
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(NetnsDir, n)); err != nil {
				t.Errorf("namespace %s missing while the test runs: %v", n, err)
			}
		}
	})
	if len(names) != 2 {
		t.Fatal("inner test did not run")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(NetnsDir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace file %s still there after cleanup (stat err %v)", n, err)
		}
		if strings.Contains(string(out), n) {
			t.Errorf("ip netns list still shows %s:\n%s", n, out)
		}
	}
}

func TestPrivilegedNewNSRejectsBadName(t *testing.T) {
	RequireRoot(t)
	if _, err := newNS("Bad_Name"); err == nil {
		t.Error("newNS(\"Bad_Name\"): want an error")
	}
}
