package route

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/internal/nlhandle"
)

// Stats counts what the Dataplane did. Writes are kernel changes; a repeat
// Apply of the same Routes adds none.
type Stats struct {
	Applies       uint64 // Apply calls that passed validation
	Resyncs       uint64 // full read-back-and-repair passes (Resync, periodic)
	LinkEvents    uint64 // reconciles triggered by link events in Run
	Watches       uint64 // times Run began watching links (more than one: its subscription failed and was reopened)
	RoutesWritten uint64 // route adds and replaces
	RoutesDeleted uint64 // stale routes removed
	SysctlWrites  uint64 // sysctl values changed
	Pending       int    // desired routes whose interface is missing or down
}

// Writes is the number of kernel changes made.
func (s Stats) Writes() uint64 { return s.RoutesWritten + s.RoutesDeleted + s.SysctlWrites }

// Dataplane programs workload routes and interface sysctls in one network
// namespace. Its methods are safe for concurrent use.
type Dataplane struct {
	cfg  Config
	log  *slog.Logger
	nsfd netns.NsHandle // open when cfg.Netns != ""; -1 otherwise
	nl   *netlink.Handle

	// mu guards every field below and serialises all kernel writes, so
	// Apply, Resync and Run's link-event reconciles never interleave.
	mu sync.Mutex
	// desired is destination → interface; nil until the first Apply, and
	// until then nothing in the kernel is touched (no sweeping before
	// in-sync).
	desired map[netip.Prefix]string
	// sysctlsDone is ifindex → name of workload interfaces whose sysctls
	// have been checked since they appeared; Resync checks them all again.
	sysctlsDone map[int]string
	// pending lists desired routes not programmed at the last reconcile
	// because their interface is missing or down.
	pending []pendingRoute
	stats   Stats
}

type pendingRoute struct {
	dst    netip.Prefix
	iface  string
	reason string
}

// New returns a Dataplane for cfg (defaults filled in, then validated). It
// touches nothing in the kernel until the first Apply. Close releases it.
func New(cfg Config) (*Dataplane, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dataplane{cfg: cfg, log: cfg.Logger, nsfd: -1, sysctlsDone: make(map[int]string)}
	var err error
	if d.nl, d.nsfd, err = nlhandle.Open(cfg.Netns); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	return d, nil
}

// Close releases the netlink handle and namespace. It does not remove
// anything from the kernel: routes outlive the agent.
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

// Apply makes the kernel hold exactly desired as our routes: it sets the
// workload sysctls on interfaces not seen before, adds or replaces missing
// and wrong routes, then removes our stale routes (make before break). A
// route whose interface is missing or down is remembered and programmed
// when the interface appears (by Run, or by the next Apply or Resync).
// Invalid input is rejected before anything is written. Kernel errors for
// single routes do not stop the others; they are returned joined.
func (d *Dataplane) Apply(desired Routes) error {
	idx, err := desired.index(d.cfg)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.desired = idx
	d.stats.Applies++
	return d.reconcile(false)
}

// Resync reads the kernel back and repairs drift: missing or altered
// routes, stale routes of ours, and sysctls changed behind our back on any
// workload interface. Before the first Apply it does nothing.
func (d *Dataplane) Resync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.desired == nil {
		return nil
	}
	d.stats.Resyncs++
	return d.reconcile(true)
}

// reconcile is the one desired-vs-actual pass. d.mu must be held.
func (d *Dataplane) reconcile(recheckSysctls bool) error {
	if d.nl == nil {
		return errors.New("route: dataplane is closed")
	}
	links, err := listLinks(d.nl)
	if err != nil {
		return fmt.Errorf("route: list links: %w", err)
	}
	byName := make(map[string]netlink.Link, len(links))
	byIndex := make(map[int]string, len(links))
	for _, l := range links {
		byName[l.Attrs().Name] = l
		byIndex[l.Attrs().Index] = l.Attrs().Name
	}

	// 1. Interface sysctls: before any route points at the interface.
	var errs []error
	if err := d.syncSysctls(links, recheckSysctls); err != nil {
		errs = append(errs, err)
	}

	// 2. Read our routes back.
	actual, err := listRoutes(d.nl)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("route: list routes: %w", err))...)
	}
	ours := make(map[netip.Prefix][]netlink.Route)
	for _, r := range actual {
		if d.isOurs(r, byIndex[r.LinkIndex]) {
			p := dstPrefix(r)
			ours[p] = append(ours[p], r)
		}
	}

	// 3. Add or replace what is missing or wrong.
	keep := make(map[netip.Prefix]netlink.Route, len(d.desired))
	d.pending = d.pending[:0]
	for _, dst := range sortedPrefixes(d.desired) {
		iface := d.desired[dst]
		l, ok := byName[iface]
		switch {
		case !ok:
			d.pending = append(d.pending, pendingRoute{dst, iface, "no such interface"})
			continue
		case l.Attrs().Flags&net.FlagUp == 0:
			d.pending = append(d.pending, pendingRoute{dst, iface, "interface down"})
			continue
		case l.Attrs().RawFlags&unix.IFF_RUNNING == 0:
			// Up but no carrier: a veth whose workload side is not up yet.
			// A route now would let the first packets start ARP on a dead
			// link, and the neighbour entry then waits a whole ARP retry
			// (1 s) after the link comes up; without the route they are
			// dropped by the block's blackhole and the next try succeeds
			// as soon as the carrier (and with it the route) is there.
			d.pending = append(d.pending, pendingRoute{dst, iface, "no carrier"})
			continue
		}
		want := d.wantRoute(dst, l.Attrs().Index)
		keep[dst] = want
		if hasMatch(ours[dst], want) {
			continue
		}
		if err := d.nl.RouteReplace(&want); err != nil {
			if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENETDOWN) {
				// The interface went away or down since we listed it.
				delete(keep, dst)
				d.pending = append(d.pending, pendingRoute{dst, iface, err.Error()})
				continue
			}
			errs = append(errs, fmt.Errorf("route: replace %s dev %s: %w", dst, iface, err))
			continue
		}
		d.stats.RoutesWritten++
		d.log.Debug("route programmed", "dst", dst, "dev", iface)
	}
	d.stats.Pending = len(d.pending)

	// 4. Remove our routes that are not wanted (after the adds).
	for _, dst := range sortedPrefixes(ours) {
		for _, r := range ours[dst] {
			if want, ok := keep[dst]; ok && routeMatches(r, want) {
				continue
			}
			err := d.nl.RouteDel(&r)
			if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("route: delete %s dev %s: %w", dst, byIndex[r.LinkIndex], err))
				continue
			}
			if err == nil {
				d.stats.RoutesDeleted++
				d.log.Debug("stale route removed", "dst", dst, "dev", byIndex[r.LinkIndex], "proto", int(r.Protocol))
			}
		}
	}
	return errors.Join(errs...)
}

// isOurs says whether a main-table route belongs to us: it carries our
// protocol, or it sits on a workload interface and was not put there by
// the kernel itself (connected and link-local routes, router
// advertisements).
func (d *Dataplane) isOurs(r netlink.Route, linkName string) bool {
	if r.Table != unix.RT_TABLE_MAIN || r.Type != unix.RTN_UNICAST {
		return false
	}
	if r.Protocol == d.cfg.Protocol {
		return true
	}
	if !d.cfg.isWorkloadIface(linkName) {
		return false
	}
	switch r.Protocol {
	case unix.RTPROT_KERNEL, unix.RTPROT_RA, unix.RTPROT_REDIRECT:
		return false
	}
	p := dstPrefix(r)
	return !(p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast())
}

// wantRoute is the route we program for dst on ifindex:
// "<dst> dev <iface> scope link proto <ours>" in the main table (IPv6 has
// no route scopes and takes the kernel's default metric, 1024).
func (d *Dataplane) wantRoute(dst netip.Prefix, ifindex int) netlink.Route {
	r := netlink.Route{
		LinkIndex: ifindex,
		Dst:       prefixToIPNet(dst),
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
		Protocol:  d.cfg.Protocol,
		Scope:     netlink.SCOPE_LINK,
		Family:    unix.AF_INET,
	}
	if dst.Addr().Is6() {
		r.Scope = netlink.SCOPE_UNIVERSE
		r.Priority = 1024
		r.Family = unix.AF_INET6
	}
	return r
}

func hasMatch(rs []netlink.Route, want netlink.Route) bool {
	for _, r := range rs {
		if routeMatches(r, want) {
			return true
		}
	}
	return false
}

// routeMatches compares the attributes we set.
func routeMatches(r, want netlink.Route) bool {
	return r.LinkIndex == want.LinkIndex &&
		r.Protocol == want.Protocol &&
		r.Scope == want.Scope &&
		r.Priority == want.Priority &&
		r.Gw == nil && len(r.MultiPath) == 0 && r.Via == nil &&
		dstPrefix(r) == dstPrefix(want)
}

func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	var err error
	for range 5 {
		var links []netlink.Link
		links, err = h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return nil, err
}

func listRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	var err error
	for range 5 {
		var rs []netlink.Route
		rs, err = h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return rs, err
		}
	}
	return nil, err
}

// dstPrefix is the route's destination; a nil Dst is the default route.
func dstPrefix(r netlink.Route) netip.Prefix {
	if r.Dst == nil {
		if r.Family == unix.AF_INET6 {
			return netip.MustParsePrefix("::/0")
		}
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := r.Dst.Mask.Size()
	if a.Is4In6() && ones <= 32 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, ones)
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func sortedPrefixes[V any](m map[netip.Prefix]V) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return comparePrefix(out[i], out[j]) < 0 })
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// inNS runs fn with the calling thread in the target namespace.
func (d *Dataplane) inNS(fn func() error) error {
	if d.cfg.Netns == "" {
		return fn()
	}
	return ns.WithNetNSPath(d.cfg.Netns, func(ns.NetNS) error { return fn() })
}
