package vxlan

import (
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

// kernelText renders what the namespace holds of ours, through iproute2.
func kernelText(t *testing.T, ns *netnstest.NS, device string) string {
	t.Helper()
	run := func(args ...string) []string {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "does not exist") || strings.Contains(string(out), "Cannot find device") {
				return nil
			}
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		sort.Strings(lines)
		return lines
	}
	var b strings.Builder
	for _, l := range run("ip", "-n", ns.Name(), "route", "show", "proto", "97") {
		b.WriteString("route " + l + "\n")
	}
	for _, l := range run("ip", "-n", ns.Name(), "neigh", "show", "dev", device, "nud", "permanent") {
		b.WriteString("neigh " + l + "\n")
	}
	for _, l := range run("bridge", "-n", ns.Name(), "fdb", "show", "dev", device) {
		b.WriteString("fdb " + l + "\n")
	}
	return b.String()
}

// parentNS returns a namespace whose eth0 (one end of a veth pair, both
// up) holds 10.1.0.1/24.
func parentNS(t *testing.T) *netnstest.NS {
	ns := netnstest.NewNS(t, "vxdp")
	h := ns.Handle()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0p"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"eth0p", "eth0"} {
		l, err := h.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "eth0" {
			ip, ipn, _ := net.ParseCIDR("10.1.0.1/24")
			ipn.IP = ip
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestPrivilegedDataplane(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	ns := parentNS(t)
	dp, err := New(Config{Netns: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	a, pfx := netip.MustParseAddr, netip.MustParsePrefix
	des := Desired{
		NeedTunnel: true,
		Tunnel:     &Tunnel{Addr: a("192.168.0.1"), MAC: mustMAC("02:00:00:00:00:0a"), ParentIP: a("10.1.0.1")},
		Peers: []Peer{
			{Node: "b", Addr: a("192.168.0.65"), MAC: mustMAC("02:00:00:00:00:0b"), NodeIP: a("10.1.0.2")},
			{Node: "c", Addr: a("192.168.0.129"), MAC: mustMAC("02:00:00:00:00:0c"), NodeIP: a("10.2.0.3")},
		},
		Routes: []Route{
			{Dst: pfx("192.168.0.64/26"), Gateway: a("10.1.0.2"), Node: "b"},
			{Dst: pfx("192.168.0.128/26"), Gateway: a("192.168.0.129"), Encap: true, Node: "c"},
			{Dst: pfx("192.168.1.7/32"), Gateway: a("192.168.0.129"), Encap: true, Node: "c"},
		},
	}
	if err := dp.Apply(des); err != nil {
		t.Fatalf("apply: %v", err)
	}
	want := `route 192.168.0.128/26 via 192.168.0.129 dev vxlan.calico onlink
route 192.168.0.64/26 via 10.1.0.2 dev eth0
route 192.168.1.7 via 192.168.0.129 dev vxlan.calico onlink
neigh 192.168.0.129 lladdr 02:00:00:00:00:0c PERMANENT
neigh 192.168.0.65 lladdr 02:00:00:00:00:0b PERMANENT
fdb 02:00:00:00:00:0b dst 10.1.0.2 self permanent
fdb 02:00:00:00:00:0c dst 10.2.0.3 self permanent
`
	if diff := cmp.Diff(want, kernelText(t, ns, DefaultDevice)); diff != "" {
		t.Errorf("kernel after apply (-want +got):\n%s", diff)
	}
	l, err := ns.Handle().LinkByName(DefaultDevice)
	if err != nil {
		t.Fatal(err)
	}
	vx := l.(*netlink.Vxlan)
	if vx.VxlanId != DefaultVNI || vx.Port != DefaultPort || vx.Learning || l.Attrs().MTU != 1500-Overhead ||
		l.Attrs().HardwareAddr.String() != "02:00:00:00:00:0a" || !vx.SrcAddr.Equal(net.ParseIP("10.1.0.1")) {
		t.Errorf("device: vni %d port %d learning %v mtu %d mac %s local %s", vx.VxlanId, vx.Port, vx.Learning,
			l.Attrs().MTU, l.Attrs().HardwareAddr, vx.SrcAddr)
	}

	// Twice: no write.
	w := dp.Stats().Writes()
	if err := dp.Apply(des); err != nil {
		t.Fatal(err)
	}
	if got := dp.Stats().Writes(); got != w {
		t.Errorf("second apply wrote %d changes", got-w)
	}

	// Drift: stale route, neighbour and FDB entry of ours, a changed MTU,
	// an extra address; and someone else's route at a desired destination.
	for _, c := range [][]string{
		{"route", "add", "10.99.0.0/16", "via", "192.168.0.65", "dev", DefaultDevice, "onlink", "proto", "97"},
		{"neigh", "add", "192.168.0.200", "lladdr", "02:00:00:00:00:99", "dev", DefaultDevice, "nud", "permanent"},
		{"link", "set", DefaultDevice, "mtu", "1000"},
		{"addr", "add", "192.168.9.9/32", "dev", DefaultDevice},
		{"route", "del", "192.168.0.128/26"},
		{"route", "add", "192.168.2.0/26", "via", "10.1.0.9", "proto", "static"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns.Name()}, c...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", c, err, out)
		}
	}
	if out, err := exec.Command("bridge", "-n", ns.Name(), "fdb", "append", "02:00:00:00:00:99", "dev", DefaultDevice,
		"dst", "10.9.9.9", "self", "permanent").CombinedOutput(); err != nil {
		t.Fatalf("bridge: %v\n%s", err, out)
	}
	if err := dp.Resync(); err != nil {
		t.Fatalf("resync: %v", err)
	}
	if diff := cmp.Diff(want, kernelText(t, ns, DefaultDevice)); diff != "" {
		t.Errorf("kernel after resync (-want +got):\n%s", diff)
	}
	if l, _ := ns.Handle().LinkByName(DefaultDevice); l.Attrs().MTU != 1500-Overhead {
		t.Errorf("resync left mtu %d", l.Attrs().MTU)
	}
	addrs, _ := ns.Handle().AddrList(l, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "192.168.0.1/32" {
		t.Errorf("device addresses after resync: %v", addrs)
	}

	// A destination held by someone else's route is not taken over.
	des.Routes = append(des.Routes, Route{Dst: pfx("192.168.2.0/26"), Gateway: a("192.168.0.65"), Encap: true, Node: "b"})
	if err := dp.Apply(des); err != nil {
		t.Fatal(err)
	}
	if s := dp.Stats(); s.RouteConflicts != 1 {
		t.Errorf("conflicts %d, want 1", s.RouteConflicts)
	}
	out, _ := exec.Command("ip", "-n", ns.Name(), "route", "show", "192.168.2.0/26").CombinedOutput()
	if !strings.Contains(string(out), "via 10.1.0.9") || !strings.Contains(string(out), "proto static") {
		t.Errorf("foreign route replaced: %s", out)
	}
	des.Routes = des.Routes[:len(des.Routes)-1]

	// A peer moves to another node address and MAC: replaced, old entries gone.
	des.Peers[0].MAC, des.Peers[0].NodeIP = mustMAC("02:00:00:00:01:0b"), a("10.1.0.22")
	if err := dp.Apply(des); err != nil {
		t.Fatal(err)
	}
	want2 := strings.NewReplacer("02:00:00:00:00:0b dst 10.1.0.2 ", "02:00:00:00:01:0b dst 10.1.0.22 ",
		"lladdr 02:00:00:00:00:0b", "lladdr 02:00:00:00:01:0b").Replace(want)
	if diff := cmp.Diff(sortLines(want2), kernelText(t, ns, DefaultDevice)); diff != "" {
		t.Errorf("kernel after peer change (-want +got):\n%s", diff)
	}

	// Other fixed parameters: the device is re-created, routes come back.
	dp2, err := New(Config{Netns: ns.Path(), VNI: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer dp2.Close()
	if err := dp2.Apply(des); err != nil {
		t.Fatal(err)
	}
	if l, _ := ns.Handle().LinkByName(DefaultDevice); l.(*netlink.Vxlan).VxlanId != 5000 {
		t.Errorf("device not re-created with the new VNI")
	}
	if diff := cmp.Diff(sortLines(want2), kernelText(t, ns, DefaultDevice)); diff != "" {
		t.Errorf("kernel after re-creation (-want +got):\n%s", diff)
	}

	// No tunnel: our routes and the device go; the foreign route stays.
	if err := dp2.Apply(Desired{}); err != nil {
		t.Fatal(err)
	}
	if got := kernelText(t, ns, DefaultDevice); got != "" {
		t.Errorf("after teardown:\n%s", got)
	}
	if _, err := ns.Handle().LinkByName(DefaultDevice); err == nil {
		t.Errorf("device still there")
	}
	out, _ = exec.Command("ip", "-n", ns.Name(), "route", "show", "192.168.2.0/26").CombinedOutput()
	if !strings.Contains(string(out), "proto static") {
		t.Errorf("foreign route removed by teardown")
	}
	w = dp2.Stats().Writes()
	if err := dp2.Apply(Desired{}); err != nil {
		t.Fatal(err)
	}
	if dp2.Stats().Writes() != w {
		t.Errorf("removing what is gone wrote something")
	}
}

func sortLines(s string) string {
	var route, neigh, fdb []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		switch {
		case strings.HasPrefix(l, "route "):
			route = append(route, l)
		case strings.HasPrefix(l, "neigh "):
			neigh = append(neigh, l)
		default:
			fdb = append(fdb, l)
		}
	}
	for _, x := range [][]string{route, neigh, fdb} {
		sort.Strings(x)
	}
	return strings.Join(append(append(route, neigh...), fdb...), "\n") + "\n"
}

func TestApplyRejectsBadInput(t *testing.T) {
	a, pfx := netip.MustParseAddr, netip.MustParsePrefix
	tun := &Tunnel{Addr: a("192.168.0.1"), MAC: mustMAC("02:00:00:00:00:0a"), ParentIP: a("10.1.0.1")}
	bad := map[string]Desired{
		"v6 tunnel":         {Tunnel: &Tunnel{Addr: a("fd00::1"), MAC: tun.MAC, ParentIP: tun.ParentIP}},
		"short MAC":         {Tunnel: &Tunnel{Addr: tun.Addr, MAC: net.HardwareAddr{1, 2}, ParentIP: tun.ParentIP}},
		"peer without MAC":  {Tunnel: tun, Peers: []Peer{{Node: "b", Addr: a("192.168.0.65"), NodeIP: a("10.1.0.2")}}},
		"unmasked route":    {Tunnel: tun, Routes: []Route{{Dst: pfx("192.168.0.65/26"), Gateway: a("10.1.0.2")}}},
		"encap, no tunnel":  {Routes: []Route{{Dst: pfx("192.168.0.64/26"), Gateway: a("192.168.0.65"), Encap: true}}},
		"duplicate route":   {Tunnel: tun, Routes: []Route{{Dst: pfx("192.168.0.64/26"), Gateway: a("10.1.0.2")}, {Dst: pfx("192.168.0.64/26"), Gateway: a("10.1.0.3")}}},
		"v6 route gateway":  {Tunnel: tun, Routes: []Route{{Dst: pfx("192.168.0.64/26"), Gateway: a("fd00::2")}}},
		"invalid route dst": {Tunnel: tun, Routes: []Route{{Gateway: a("10.1.0.2")}}},
	}
	for name, d := range bad {
		if err := d.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Device: "this-name-is-way-too-long"},
		{VNI: 1 << 24},
		{Port: 70000},
		{MTU: 10},
		{Protocol: 3},
		{Netns: "relative/path"},
	}
	for i, c := range bad {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("case %d (%+v): accepted", i, c)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
}
