package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Workload addressing (compat §5.2).
var (
	// HostMAC is the MAC of every host-side veth: proxy ARP answers with it.
	HostMAC = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
	// GatewayV4 is the workload's IPv4 next hop.
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	// GatewayV6 is the link-local address of a veth with HostMAC.
	GatewayV6 = netip.MustParseAddr("fe80::ecee:eeff:feee:eeee")
)

// Steps of the kernel setup, in order. A fault hook (tests) may fail any.
const (
	stepOpenNetns  = "open-netns"
	stepStaleLink  = "remove-stale-host-veth"
	stepVeth       = "create-veth"
	stepHostMAC    = "host-mac"
	stepHostSysctl = "host-sysctls"
	stepHostUp     = "host-up"
	stepAddr       = "container-addresses"
	stepUp         = "container-up"
	stepRoutes     = "container-routes"
	stepHostRoutes = "host-routes"
	stepHostNeigh  = "host-neighbours"
)

// setupSteps lists every step a fault hook may fail.
var setupSteps = []string{stepOpenNetns, stepStaleLink, stepVeth, stepHostMAC, stepHostSysctl, stepHostUp, stepAddr, stepUp, stepRoutes, stepHostRoutes, stepHostNeigh}

// kernel does the netlink work of one command: host is the plugin's own
// namespace (the host's), ctr the container's.
type kernel struct {
	host  *netlink.Handle
	ctr   *netlink.Handle
	ctrNS netns.NsHandle
	fault func(step string) error
}

func (k *kernel) step(name string) error {
	if k.fault != nil {
		if err := k.fault(name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// openKernel opens handles on the host namespace and the container's.
// A missing namespace is reported with errNoNetns.
func openKernel(netnsPath string, fault func(string) error) (*kernel, error) {
	k := &kernel{fault: fault, ctrNS: -1}
	if err := k.step(stepOpenNetns); err != nil {
		return nil, err
	}
	fd, err := netns.GetFromPath(netnsPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", errNoNetns, netnsPath)
		}
		return nil, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	k.ctrNS = fd
	if k.ctr, err = netlink.NewHandleAt(fd); err != nil {
		k.close()
		return nil, fmt.Errorf("netlink in %s: %w", netnsPath, err)
	}
	if k.host, err = netlink.NewHandle(); err != nil {
		k.close()
		return nil, fmt.Errorf("netlink in the host namespace: %w", err)
	}
	return k, nil
}

var errNoNetns = errors.New("network namespace does not exist")

func (k *kernel) close() {
	if k.ctr != nil {
		k.ctr.Close()
	}
	if k.host != nil {
		k.host.Close()
	}
	if k.ctrNS >= 0 {
		k.ctrNS.Close()
	}
}

// setupResult is what the runtime is told about the interfaces.
type setupResult struct {
	ctrMAC net.HardwareAddr
}

// setup builds the veth pair and addresses. created reports whether the
// pair exists (so the caller's rollback knows to delete it); on error the
// caller removes it.
func (k *kernel) setup(hostIf, ifName string, mtu int, ips []netip.Prefix) (res setupResult, created bool, err error) {
	if err := k.step(stepStaleLink); err != nil {
		return res, false, err
	}
	// A host veth of this name is a leftover of the same workload (the
	// name hashes its identity): replace it.
	if l, err := k.host.LinkByName(hostIf); err == nil {
		if err := k.host.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return res, false, fmt.Errorf("%s: delete leftover %s: %w", stepStaleLink, hostIf, err)
		}
	}
	if err := k.step(stepVeth); err != nil {
		return res, false, err
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostIf, MTU: mtu, TxQLen: -1},
		PeerName:      ifName,
		PeerMTU:       uint32(mtu),
		PeerTxQLen:    -1,
		PeerNamespace: netlink.NsFd(k.ctrNS),
	}
	if err := k.host.LinkAdd(veth); err != nil {
		return res, false, fmt.Errorf("%s: veth %s (container side %s): %w", stepVeth, hostIf, ifName, err)
	}
	created = true
	hl, err := k.host.LinkByName(hostIf)
	if err != nil {
		return res, created, fmt.Errorf("%s: find %s: %w", stepVeth, hostIf, err)
	}
	if err := k.step(stepHostMAC); err != nil {
		return res, created, err
	}
	if err := k.setHostMAC(hl); err != nil {
		return res, created, err
	}
	if err := k.step(stepHostSysctl); err != nil {
		return res, created, err
	}
	if err := hostSysctls(hostIf, hasV6(ips)); err != nil {
		return res, created, fmt.Errorf("%s: %w", stepHostSysctl, err)
	}
	if err := k.step(stepHostUp); err != nil {
		return res, created, err
	}
	if err := k.host.LinkSetUp(hl); err != nil {
		return res, created, fmt.Errorf("%s: %s: %w", stepHostUp, hostIf, err)
	}

	cl, err := k.ctr.LinkByName(ifName)
	if err != nil {
		return res, created, fmt.Errorf("%s: find %s in the container: %w", stepAddr, ifName, err)
	}
	res.ctrMAC = cl.Attrs().HardwareAddr
	if err := k.step(stepAddr); err != nil {
		return res, created, err
	}
	for _, p := range ips {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := k.ctr.AddrAdd(cl, a); err != nil {
			return res, created, fmt.Errorf("%s: add %s to %s: %w", stepAddr, p, ifName, err)
		}
	}
	if err := k.step(stepUp); err != nil {
		return res, created, err
	}
	if err := k.ctr.LinkSetUp(cl); err != nil {
		return res, created, fmt.Errorf("%s: %s: %w", stepUp, ifName, err)
	}
	if err := k.step(stepRoutes); err != nil {
		return res, created, err
	}
	for _, r := range containerRoutes(cl.Attrs().Index, ips) {
		if err := k.ctr.RouteAdd(r); err != nil {
			return res, created, fmt.Errorf("%s: %s: %w", stepRoutes, r, err)
		}
	}
	if err := k.step(stepHostRoutes); err != nil {
		return res, created, err
	}
	for _, p := range ips {
		r := &netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_BOOT}
		if err := k.host.RouteAdd(r); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				return res, created, fmt.Errorf("%s: %s dev %s: %w", stepHostRoutes, p, hostIf, err)
			}
			// Fine if it is already on our interface (the agent got there
			// first); an error if another interface has it.
			if other := routeDevice(k.host, p); other != hl.Attrs().Index {
				return res, created, fmt.Errorf("%s: %s is already routed to another interface (index %d)", stepHostRoutes, p, other)
			}
		}
	}
	// The host learns the pod's MAC now rather than by ARP or neighbour
	// discovery on the first packet: in one lab run, 2 first requests of 20
	// went unanswered (most likely it arrived between the container link
	// coming up and its routes being added) and the host retried only
	// after a second. The entries go with the veth.
	if err := k.step(stepHostNeigh); err != nil {
		return res, created, err
	}
	for _, p := range ips {
		n := &netlink.Neigh{LinkIndex: hl.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: p.Addr().AsSlice(), HardwareAddr: res.ctrMAC, Family: unix.AF_INET}
		if p.Addr().Is6() {
			n.Family = unix.AF_INET6
		}
		if err := k.host.NeighSet(n); err != nil {
			return res, created, fmt.Errorf("%s: %s lladdr %s dev %s: %w", stepHostNeigh, p.Addr(), res.ctrMAC, hostIf, err)
		}
	}
	return res, created, nil
}

// setHostMAC sets HostMAC on l, re-reads it and retries until it sticks.
func (k *kernel) setHostMAC(l netlink.Link) error {
	var last error
	for range 5 {
		if err := k.host.LinkSetHardwareAddr(l, HostMAC); err != nil {
			last = err
			continue
		}
		got, err := k.host.LinkByIndex(l.Attrs().Index)
		if err == nil && got.Attrs().HardwareAddr.String() == HostMAC.String() {
			return nil
		}
		last = fmt.Errorf("MAC did not stick (err %v)", err)
	}
	return fmt.Errorf("%s: %s: %w", stepHostMAC, l.Attrs().Name, last)
}

func routeDevice(h *netlink.Handle, p netip.Prefix) int {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	rs, err := h.RouteListFiltered(family, &netlink.Route{Dst: ipNet(p)}, netlink.RT_FILTER_DST)
	if err != nil || len(rs) == 0 {
		return 0
	}
	return rs[0].LinkIndex
}

// containerRoutes are the routes inside the container: the gateway as a
// link route and the default route through it (IPv6: through the host
// veth's link-local address).
func containerRoutes(idx int, ips []netip.Prefix) []*netlink.Route {
	var out []*netlink.Route
	if slices.ContainsFunc(ips, func(p netip.Prefix) bool { return p.Addr().Is4() }) {
		out = append(out,
			&netlink.Route{LinkIndex: idx, Dst: ipNet(netip.PrefixFrom(GatewayV4, 32)), Scope: netlink.SCOPE_LINK},
			&netlink.Route{LinkIndex: idx, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: GatewayV4.AsSlice()},
		)
	}
	if hasV6(ips) {
		out = append(out, &netlink.Route{LinkIndex: idx, Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: GatewayV6.AsSlice()})
	}
	return out
}

func hasV6(ips []netip.Prefix) bool {
	return slices.ContainsFunc(ips, func(p netip.Prefix) bool { return p.Addr().Is6() })
}

// hostSysctls sets the host-side interface sysctls (compat §5.2): proxy
// ARP with no delay and forwarding; for IPv6 also proxy NDP, forwarding
// and no router advertisements.
func hostSysctls(ifName string, v6 bool) error {
	set := []struct{ path, value string }{
		{"net/ipv4/conf/" + ifName + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + ifName + "/proxy_delay", "0"},
		{"net/ipv4/conf/" + ifName + "/forwarding", "1"},
	}
	if v6 {
		set = append(set,
			struct{ path, value string }{"net/ipv6/conf/" + ifName + "/proxy_ndp", "1"},
			struct{ path, value string }{"net/ipv6/conf/" + ifName + "/forwarding", "1"},
			struct{ path, value string }{"net/ipv6/conf/" + ifName + "/accept_ra", "0"},
		)
	}
	for _, s := range set {
		if err := os.WriteFile(filepath.Join("/proc/sys", s.path), []byte(s.value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(s.path, "/", "."), s.value, err)
		}
	}
	return nil
}

// removeHost deletes the host-side veth (which takes its peer with it).
func (k *kernel) removeHost(hostIf string) error {
	l, err := k.host.LinkByName(hostIf)
	if err != nil {
		return nil
	}
	if err := k.host.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", hostIf, err)
	}
	return nil
}

// removeContainer deletes the container's interface if it is a veth; a
// missing one is fine.
func (k *kernel) removeContainer(ifName string) error {
	l, err := k.ctr.LinkByName(ifName)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return fmt.Errorf("find %s in the container: %w", ifName, err)
	}
	if l.Type() != "veth" {
		return fmt.Errorf("%s in the container is a %s, not a veth: not deleting it", ifName, l.Type())
	}
	if err := k.ctr.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s in the container: %w", ifName, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
