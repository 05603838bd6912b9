package vxlan

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/internal/nlhandle"
)

// Stats counts what the Dataplane did. A repeat Apply of the same Desired
// adds no Writes.
type Stats struct {
	Applies        uint64
	Resyncs        uint64
	DeviceWrites   uint64 // device created, re-created, changed or deleted
	NeighWrites    uint64 // ARP and FDB entries set or deleted
	RoutesWritten  uint64
	RoutesDeleted  uint64
	RouteConflicts int // desired routes skipped at the last reconcile: another protocol's route holds the destination
}

// Writes is the number of kernel changes made.
func (s Stats) Writes() uint64 {
	return s.DeviceWrites + s.NeighWrites + s.RoutesWritten + s.RoutesDeleted
}

// Dataplane programs one node's VXLAN device, its ARP and FDB entries and
// the routes through it, in one network namespace. It owns the device
// named Config.Device and the main-table routes with Config.Protocol, and
// nothing else. Its methods are safe for concurrent use.
type Dataplane struct {
	cfg  Config
	log  *slog.Logger
	nsfd netns.NsHandle
	nl   *netlink.Handle

	mu      sync.Mutex // guards the fields below and serialises kernel writes
	desired *Desired   // nil until the first Apply: nothing is touched before
	stats   Stats
}

// New returns a Dataplane for cfg (defaults filled in, then validated). It
// touches nothing in the kernel until the first Apply.
func New(cfg Config) (*Dataplane, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: cfg, log: cfg.Logger, nsfd: -1}
	var err error
	if d.nl, d.nsfd, err = nlhandle.Open(cfg.Netns); err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	return d, nil
}

// Close releases the netlink handle. Kernel state is left as it is.
func (d *Dataplane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := nlhandle.Close(d.nl, d.nsfd)
	d.nl, d.nsfd = nil, -1
	return err
}

// Stats returns a snapshot of the counters.
func (d *Dataplane) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Apply makes the kernel match des: the device (or its absence), the peers'
// ARP and FDB entries and the routes. It reads the kernel back and writes
// only the differences; stale entries of ours are removed. A failure on one
// object does not stop the others; all are returned joined.
func (d *Dataplane) Apply(des Desired) error {
	if err := des.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Applies++
	d.desired = &des
	return d.reconcile()
}

// Resync reads the kernel back and repairs drift against the last Apply.
// Before the first Apply it does nothing.
func (d *Dataplane) Resync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.desired == nil {
		return nil
	}
	d.stats.Resyncs++
	return d.reconcile()
}

func (des Desired) validate() error {
	if t := des.Tunnel; t != nil {
		switch {
		case !t.Addr.Is4():
			return fmt.Errorf("vxlan: tunnel address %s is not IPv4", t.Addr)
		case !t.ParentIP.Is4():
			return fmt.Errorf("vxlan: tunnel parent address %s is not IPv4", t.ParentIP)
		case len(t.MAC) != 6:
			return fmt.Errorf("vxlan: tunnel MAC %q is not 6 bytes", t.MAC)
		}
	}
	for i, p := range des.Peers {
		if !p.Addr.Is4() || !p.NodeIP.Is4() || len(p.MAC) != 6 {
			return fmt.Errorf("vxlan: peers[%d] (node %q): want IPv4 VTEP and node addresses and a 6-byte MAC", i, p.Node)
		}
	}
	seen := map[netip.Prefix]bool{}
	for i, r := range des.Routes {
		switch {
		case !r.Dst.IsValid() || !r.Dst.Addr().Is4() || r.Dst != r.Dst.Masked():
			return fmt.Errorf("vxlan: routes[%d]: destination %s is not a masked IPv4 prefix", i, r.Dst)
		case !r.Gateway.Is4():
			return fmt.Errorf("vxlan: routes[%d] (%s): gateway %s is not IPv4", i, r.Dst, r.Gateway)
		case r.Encap && des.Tunnel == nil:
			return fmt.Errorf("vxlan: routes[%d] (%s): encapsulated route without a tunnel", i, r.Dst)
		case seen[r.Dst]:
			return fmt.Errorf("vxlan: routes[%d]: destination %s appears twice", i, r.Dst)
		}
		seen[r.Dst] = true
	}
	return nil
}

// reconcile: device, then neighbours, then route adds, then route and
// neighbour removals; with no tunnel, routes go before the device.
// d.mu is held.
func (d *Dataplane) reconcile() error {
	des := d.desired
	var errs []error
	devIndex := 0
	if des.Tunnel != nil {
		idx, err := d.ensureDevice(des.Tunnel)
		if err != nil {
			// Without the device no encapsulated route can go in; plain
			// (CrossSubnet) routes still can.
			errs = append(errs, err)
		}
		devIndex = idx
	}
	var staleNeigh []netlink.Neigh
	if devIndex != 0 {
		var err error
		staleNeigh, err = d.syncNeighbours(devIndex, des.Peers)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.syncRoutes(devIndex, des.Routes); err != nil {
		errs = append(errs, err)
	}
	for _, n := range staleNeigh {
		if err := d.nl.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("vxlan: delete neighbour %s/%s: %w", n.IP, n.HardwareAddr, err))
			continue
		}
		d.stats.NeighWrites++
	}
	if des.Tunnel == nil {
		if err := d.deleteDevice(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parentOf finds the link that holds ip.
func (d *Dataplane) parentOf(ip netip.Addr) (netlink.Link, error) {
	addrs, err := d.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("vxlan: list addresses: %w", err)
	}
	for _, a := range addrs {
		if aa, ok := netip.AddrFromSlice(a.IP); ok && aa.Unmap() == ip {
			l, err := d.nl.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("vxlan: parent link of %s: %w", ip, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("vxlan: no interface holds this node's address %s", ip)
}

// ensureDevice creates or repairs the device and returns its index.
func (d *Dataplane) ensureDevice(t *Tunnel) (int, error) {
	parent, err := d.parentOf(t.ParentIP)
	if err != nil {
		return 0, err
	}
	mtu := d.cfg.MTU
	if mtu == 0 {
		mtu = parent.Attrs().MTU - Overhead
	}
	l, err := d.nl.LinkByName(d.cfg.Device)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return 0, fmt.Errorf("vxlan: find device %s: %w", d.cfg.Device, err)
		}
		l = nil
	}
	if l != nil {
		vx, ok := l.(*netlink.Vxlan)
		if !ok || vx.VxlanId != d.cfg.VNI || vx.Port != d.cfg.Port || vx.VtepDevIndex != parent.Attrs().Index ||
			!vx.SrcAddr.Equal(net.IP(t.ParentIP.AsSlice())) || vx.Learning {
			d.log.Info("re-creating vxlan device: its fixed parameters changed", "device", d.cfg.Device)
			if err := d.nl.LinkDel(l); err != nil {
				return 0, fmt.Errorf("vxlan: delete device %s to re-create it: %w", d.cfg.Device, err)
			}
			d.stats.DeviceWrites++
			l = nil
		}
	}
	if l == nil {
		vx := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: d.cfg.Device, MTU: mtu, HardwareAddr: t.MAC, TxQLen: -1},
			VxlanId:      d.cfg.VNI,
			VtepDevIndex: parent.Attrs().Index,
			SrcAddr:      net.IP(t.ParentIP.AsSlice()),
			Port:         d.cfg.Port,
		}
		if err := d.nl.LinkAdd(vx); err != nil {
			return 0, fmt.Errorf("vxlan: create device %s: %w", d.cfg.Device, err)
		}
		d.stats.DeviceWrites++
		if l, err = d.nl.LinkByName(d.cfg.Device); err != nil {
			return 0, fmt.Errorf("vxlan: find new device %s: %w", d.cfg.Device, err)
		}
	}
	a := l.Attrs()
	if a.MTU != mtu {
		if err := d.nl.LinkSetMTU(l, mtu); err != nil {
			return 0, fmt.Errorf("vxlan: set %s mtu %d: %w", d.cfg.Device, mtu, err)
		}
		d.stats.DeviceWrites++
	}
	if !bytes.Equal(a.HardwareAddr, t.MAC) {
		if err := d.nl.LinkSetHardwareAddr(l, t.MAC); err != nil {
			return 0, fmt.Errorf("vxlan: set %s address %s: %w", d.cfg.Device, t.MAC, err)
		}
		d.stats.DeviceWrites++
	}
	if err := d.syncAddr(l, t.Addr); err != nil {
		return 0, err
	}
	if a.Flags&net.FlagUp == 0 {
		if err := d.nl.LinkSetUp(l); err != nil {
			return 0, fmt.Errorf("vxlan: set %s up: %w", d.cfg.Device, err)
		}
		d.stats.DeviceWrites++
	}
	return a.Index, nil
}

// syncAddr leaves exactly vtep/32 as the device's IPv4 address.
func (d *Dataplane) syncAddr(l netlink.Link, vtep netip.Addr) error {
	addrs, err := d.nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("vxlan: list %s addresses: %w", d.cfg.Device, err)
	}
	want := netip.PrefixFrom(vtep, 32)
	have := false
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if ok && p == want {
			have = true
			continue
		}
		if err := d.nl.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("vxlan: remove stale %s address %s: %w", d.cfg.Device, a.IPNet, err)
		}
		d.stats.DeviceWrites++
	}
	if !have {
		if err := d.nl.AddrAdd(l, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
			return fmt.Errorf("vxlan: add %s address %s: %w", d.cfg.Device, want, err)
		}
		d.stats.DeviceWrites++
	}
	return nil
}

// deleteDevice removes our device if it exists (routes through it go with
// it, after syncRoutes has already removed them).
func (d *Dataplane) deleteDevice() error {
	l, err := d.nl.LinkByName(d.cfg.Device)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("vxlan: find device %s: %w", d.cfg.Device, err)
	}
	if _, ok := l.(*netlink.Vxlan); !ok {
		return fmt.Errorf("vxlan: %s exists but is a %s device, not ours; left alone", d.cfg.Device, l.Type())
	}
	if err := d.nl.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("vxlan: delete device %s: %w", d.cfg.Device, err)
	}
	d.stats.DeviceWrites++
	return nil
}

// syncNeighbours sets the peers' permanent ARP entries (VTEP → MAC) and
// FDB entries (MAC → node IP) and returns our entries nobody wants, for
// deletion after the routes.
func (d *Dataplane) syncNeighbours(dev int, peers []Peer) ([]netlink.Neigh, error) {
	var errs []error
	arp, err := d.nl.NeighList(dev, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("vxlan: list ARP entries: %w", err)
	}
	fdb, err := d.nl.NeighList(dev, unix.AF_BRIDGE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("vxlan: list FDB entries: %w", err)
	}
	wantARP := map[netip.Addr]net.HardwareAddr{}
	wantFDB := map[string]netip.Addr{}
	for _, p := range peers {
		wantARP[p.Addr] = p.MAC
		wantFDB[p.MAC.String()] = p.NodeIP
	}
	haveARP := map[netip.Addr]bool{}
	var stale []netlink.Neigh
	for _, n := range arp {
		ip, _ := netip.AddrFromSlice(n.IP)
		ip = ip.Unmap()
		mac, ok := wantARP[ip]
		switch {
		case ok && bytes.Equal(mac, n.HardwareAddr) && n.State&netlink.NUD_PERMANENT != 0:
			haveARP[ip] = true
		case !ok && n.State&netlink.NUD_PERMANENT != 0:
			stale = append(stale, n)
		}
	}
	haveFDB := map[string]bool{}
	for _, n := range fdb {
		if len(n.HardwareAddr) != 6 || n.IP == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		want, ok := wantFDB[n.HardwareAddr.String()]
		switch {
		case ok && want == ip.Unmap():
			haveFDB[n.HardwareAddr.String()] = true
		case !ok || n.State&netlink.NUD_PERMANENT != 0:
			// Not wanted, or wanted towards another node: the other
			// destination must go, or both would get the frames.
			stale = append(stale, n)
		}
	}
	for _, p := range peers {
		if !haveFDB[p.MAC.String()] {
			n := netlink.Neigh{LinkIndex: dev, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
				Flags: netlink.NTF_SELF, IP: net.IP(p.NodeIP.AsSlice()), HardwareAddr: p.MAC}
			if err := d.nl.NeighAppend(&n); err != nil && !errors.Is(err, unix.EEXIST) {
				errs = append(errs, fmt.Errorf("vxlan: fdb %s dst %s (node %s): %w", p.MAC, p.NodeIP, p.Node, err))
			} else {
				d.stats.NeighWrites++
			}
		}
		if !haveARP[p.Addr] {
			n := netlink.Neigh{LinkIndex: dev, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
				IP: net.IP(p.Addr.AsSlice()), HardwareAddr: p.MAC}
			if err := d.nl.NeighSet(&n); err != nil {
				errs = append(errs, fmt.Errorf("vxlan: neigh %s lladdr %s (node %s): %w", p.Addr, p.MAC, p.Node, err))
			} else {
				d.stats.NeighWrites++
			}
		}
	}
	return stale, errors.Join(errs...)
}

// syncRoutes makes our main-table routes equal to want: adds and replaces
// first, then deletes. A destination held by another protocol's route at
// the same metric is left alone and counted as a conflict.
func (d *Dataplane) syncRoutes(dev int, want []Route) error {
	var errs []error
	ours, err := d.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: d.cfg.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("vxlan: list routes: %w", err)
	}
	have := map[netip.Prefix]netlink.Route{}
	for _, r := range ours {
		if p, ok := prefixOf(r.Dst); ok && r.Priority == 0 {
			have[p] = r
		}
	}
	conflicts := 0
	wanted := map[netip.Prefix]bool{}
	for _, r := range want {
		if r.Encap && dev == 0 {
			continue // device failed; reported already
		}
		wanted[r.Dst] = true
		nr := netlink.Route{Dst: ipNet(r.Dst), Gw: net.IP(r.Gateway.AsSlice()), Protocol: d.cfg.Protocol,
			Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST, Scope: netlink.SCOPE_UNIVERSE}
		if r.Encap {
			nr.LinkIndex = dev
			nr.Flags = int(netlink.FLAG_ONLINK)
		}
		cur, ok := have[r.Dst]
		if ok && sameRoute(cur, nr, r.Encap, dev) {
			continue
		}
		if !ok {
			other, err := d.nl.RouteListFiltered(netlink.FAMILY_V4,
				&netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ipNet(r.Dst)}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
			if err == nil && slices.ContainsFunc(other, func(o netlink.Route) bool { return o.Priority == 0 }) {
				conflicts++
				d.log.Warn("route destination held by another protocol's route; not replaced",
					"dst", r.Dst, "protocol", int(other[0].Protocol))
				continue
			}
		}
		if err := d.nl.RouteReplace(&nr); err != nil {
			errs = append(errs, fmt.Errorf("vxlan: %s: %w", r, err))
			continue
		}
		d.stats.RoutesWritten++
	}
	for p, r := range have {
		if wanted[p] {
			continue
		}
		if err := d.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("vxlan: delete stale route %s: %w", p, err))
			continue
		}
		d.stats.RoutesDeleted++
	}
	d.stats.RouteConflicts = conflicts
	return errors.Join(errs...)
}

func sameRoute(cur, want netlink.Route, encap bool, dev int) bool {
	if !cur.Gw.Equal(want.Gw) || cur.Type != unix.RTN_UNICAST {
		return false
	}
	onlink := cur.Flags&int(netlink.FLAG_ONLINK) != 0
	if encap {
		return cur.LinkIndex == dev && onlink
	}
	return !onlink && (dev == 0 || cur.LinkIndex != dev)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
