package netnstest

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Calico-compatible workload addressing (compat §5.2).
var (
	// HostMAC is the MAC of every host-side workload veth.
	HostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	// GatewayV4 is the workload's IPv4 next hop, answered by proxy ARP.
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	// GatewayV6 is the EUI-64 link-local address of a veth with HostMAC,
	// the workload's IPv6 next hop.
	GatewayV6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
)

// WorkloadOpts describes a workload to attach to a host namespace.
type WorkloadOpts struct {
	// Name is a short name for the workload's namespace (a-z, 0-9, '-').
	Name string
	// IfName is the host-side veth name (at most 15 bytes). Empty means
	// "cali" + 11 hex digits of SHA-1 of the namespace name.
	IfName string
	// IPs are the workload's addresses, added to eth0 as /32 or /128.
	IPs []netip.Addr
	// MTU of both veth ends; 0 keeps the kernel default.
	MTU int
}

// Workload is a namespace attached to a host namespace by a veth pair.
type Workload struct {
	*NS
	// Host is the namespace holding the host side of the veth.
	Host *NS
	// IfName is the host-side veth name.
	IfName string
	// IPs are the workload's addresses.
	IPs []netip.Addr
	// MAC is the MAC of eth0 inside the workload.
	MAC net.HardwareAddr

	t testing.TB
}

// AddWorkload creates a workload namespace and its veth pair (see the
// package doc for the exact layout). Host-side routes and sysctls are not
// touched; use HostRoutes for that.
func AddWorkload(t testing.TB, host *NS, opts WorkloadOpts) *Workload {
	t.Helper()
	if host == nil {
		t.Fatalf("netnstest: AddWorkload: host namespace is nil")
	}
	n := NewNS(t, opts.Name)
	ifName := opts.IfName
	if ifName == "" {
		sum := sha1.Sum([]byte(n.Name()))
		ifName = "cali" + hex.EncodeToString(sum[:])[:11]
	}
	if len(ifName) > unix.IFNAMSIZ-1 {
		t.Fatalf("netnstest: AddWorkload: IfName %q is longer than %d bytes", ifName, unix.IFNAMSIZ-1)
	}
	w := &Workload{NS: n, Host: host, IfName: ifName, IPs: opts.IPs, t: t}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: ifName, MTU: opts.MTU, TxQLen: -1},
		PeerName:      "eth0",
		PeerTxQLen:    -1,
		PeerNamespace: netlink.NsFd(n.NsHandle()),
	}
	if err := host.Handle().LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: add veth %s in %s: %v", ifName, host.Name(), err)
	}
	t.Cleanup(func() {
		// Deleted here, synchronously, rather than left to the namespace
		// teardown, so the name is free again when the test returns.
		if l, err := host.Handle().LinkByName(ifName); err == nil {
			if err := host.Handle().LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				t.Errorf("netnstest: delete veth %s: %v", ifName, err)
			}
		}
	})
	if err := w.setup(); err != nil {
		t.Fatalf("netnstest: workload %s: %v", n.Name(), err)
	}
	return w
}

func (w *Workload) setup() error {
	hh := w.Host.Handle()
	hostLink, err := hh.LinkByName(w.IfName)
	if err != nil {
		return fmt.Errorf("find host veth %s: %w", w.IfName, err)
	}
	if err := hh.LinkSetHardwareAddr(hostLink, HostMAC); err != nil {
		return fmt.Errorf("set MAC of %s: %w", w.IfName, err)
	}
	if l, err := hh.LinkByIndex(hostLink.Attrs().Index); err != nil || l.Attrs().HardwareAddr.String() != HostMAC.String() {
		return fmt.Errorf("MAC of %s did not stick (err %v)", w.IfName, err)
	}
	// No DAD on the host veth's link-local address, so the IPv6 gateway
	// answers at once instead of after about a second. (Tests only; a real
	// host keeps DAD.)
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		if err := SetSysctl(w.Host, "net/ipv6/conf/"+w.IfName+"/accept_dad", "0"); err != nil {
			return err
		}
	}
	if err := hh.LinkSetUp(hostLink); err != nil {
		return fmt.Errorf("set %s up: %w", w.IfName, err)
	}

	wh := w.Handle()
	eth0, err := wh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	w.MAC = eth0.Attrs().HardwareAddr
	var v6 bool
	for _, ip := range w.IPs {
		if !ip.IsValid() {
			return fmt.Errorf("invalid workload IP")
		}
		addr := &netlink.Addr{IPNet: prefixToIPNet(netip.PrefixFrom(ip, ip.BitLen()))}
		if ip.Is6() {
			v6 = true
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := wh.AddrAdd(eth0, addr); err != nil {
			return fmt.Errorf("add %s to eth0: %w", ip, err)
		}
	}
	if err := wh.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 up: %w", err)
	}
	idx := eth0.Attrs().Index
	routes := []*netlink.Route{
		{LinkIndex: idx, Dst: prefixToIPNet(netip.PrefixFrom(GatewayV4, 32)), Scope: netlink.SCOPE_LINK},
		{LinkIndex: idx, Gw: GatewayV4.AsSlice()},
	}
	if v6 {
		routes = append(routes, &netlink.Route{LinkIndex: idx, Gw: GatewayV6.AsSlice(), Dst: prefixToIPNet(netip.MustParsePrefix("::/0"))})
	}
	for _, r := range routes {
		if err := wh.RouteAdd(r); err != nil {
			return fmt.Errorf("add route %s: %w", r, err)
		}
	}
	// The kernel raises the host side's carrier (IFF_RUNNING) shortly
	// after, from a work queue; the route dataplane installs nothing on a
	// link without carrier, so a workload is ready only once it is there.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		l, err := hh.LinkByIndex(hostLink.Attrs().Index)
		if err != nil {
			return fmt.Errorf("find host veth %s: %w", w.IfName, err)
		}
		if l.Attrs().RawFlags&unix.IFF_RUNNING != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host veth %s has no carrier after 5s", w.IfName)
		}
	}
}

// HostRoutes is an opt-in shortcut for tests that need connectivity without
// the route dataplane: in the host namespace it adds "<ip>/32 dev IfName
// scope link proto static" (/128 for IPv6) for every workload IP and sets
// the interface's proxy_arp=1, neigh proxy_delay=0 and forwarding=1 (IPv6:
// forwarding=1, proxy_ndp=1). Namespace-wide forwarding is EnableForwarding.
func (w *Workload) HostRoutes() {
	w.t.Helper()
	hh := w.Host.Handle()
	l, err := hh.LinkByName(w.IfName)
	if err != nil {
		w.t.Fatalf("netnstest: HostRoutes: %v", err)
	}
	sysctls := [][2]string{
		{"net/ipv4/conf/" + w.IfName + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + w.IfName + "/proxy_delay", "0"},
		{"net/ipv4/conf/" + w.IfName + "/forwarding", "1"},
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		sysctls = append(sysctls,
			[2]string{"net/ipv6/conf/" + w.IfName + "/forwarding", "1"},
			[2]string{"net/ipv6/conf/" + w.IfName + "/proxy_ndp", "1"})
	}
	for _, s := range sysctls {
		if err := SetSysctl(w.Host, s[0], s[1]); err != nil {
			w.t.Fatalf("netnstest: HostRoutes: %v", err)
		}
	}
	for _, ip := range w.IPs {
		r := &netlink.Route{
			LinkIndex: l.Attrs().Index,
			Dst:       prefixToIPNet(netip.PrefixFrom(ip, ip.BitLen())),
			Scope:     netlink.SCOPE_LINK,
			Protocol:  unix.RTPROT_STATIC,
		}
		if ip.Is6() {
			r.Scope = netlink.SCOPE_UNIVERSE
		}
		if err := hh.RouteReplace(r); err != nil {
			w.t.Fatalf("netnstest: HostRoutes: route %s dev %s: %v", ip, w.IfName, err)
		}
	}
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
