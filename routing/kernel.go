package routing

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernel keeps the speaker's routes in the main table: a route per prefix
// learned from a peer ("<prefix> via <next hop> proto <ours>") and a
// blackhole per owned block. Only routes with our protocol are ever
// replaced or deleted; a route of someone else's at the same destination
// and metric is left alone (the prefix is reported as conflicting).
//
// Routes found with our protocol that nobody asked for are swept only once
// inSync is set: a restarted agent keeps the routes its previous run
// installed until BGP has converged again.
type kernel struct {
	log    *slog.Logger
	nl     *netlink.Handle
	proto  netlink.RouteProtocol
	metric int

	mu sync.Mutex // guards the fields below
	// learned maps a prefix to the BGP next hop of its best path from a
	// peer.
	learned    map[netip.Prefix]netip.Addr
	blackholes map[netip.Prefix]bool
	// overlay are pool CIDRs whose learned routes are not installed
	// (the VXLAN dataplane routes them).
	overlay   []netip.Prefix
	inSync    bool
	frozen    bool // Stop: no more kernel writes
	conflicts map[netip.Prefix]bool
	writes    uint64
	deletes   uint64
}

func newKernel(log *slog.Logger, nl *netlink.Handle, proto netlink.RouteProtocol, metric int) *kernel {
	return &kernel{
		log: log, nl: nl, proto: proto, metric: metric,
		learned:    map[netip.Prefix]netip.Addr{},
		blackholes: map[netip.Prefix]bool{},
		conflicts:  map[netip.Prefix]bool{},
	}
}

// learn records the best path for pfx and programs it.
func (k *kernel) learn(pfx netip.Prefix, nh netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if old, ok := k.learned[pfx]; ok && old == nh {
		return
	}
	k.learned[pfx] = nh
	k.programLocked(pfx)
}

// forget drops pfx's learned path (withdrawn, or our own path is best).
func (k *kernel) forget(pfx netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.learned[pfx]; !ok {
		return
	}
	delete(k.learned, pfx)
	k.programLocked(pfx)
}

// setBlackholes replaces the set of owned blocks.
func (k *kernel) setBlackholes(pfxs []netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	want := make(map[netip.Prefix]bool, len(pfxs))
	for _, p := range pfxs {
		want[p] = true
	}
	var changed []netip.Prefix
	for p := range k.blackholes {
		if !want[p] {
			changed = append(changed, p)
		}
	}
	for p := range want {
		if !k.blackholes[p] {
			changed = append(changed, p)
		}
	}
	k.blackholes = want
	for _, p := range changed {
		k.programLocked(p)
	}
}

// setOverlay replaces the overlay pools and reprograms every learned
// prefix whose treatment changes.
func (k *kernel) setOverlay(pools []netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.overlay
	k.overlay = slices.Clone(pools)
	for p := range k.learned {
		if inAny(old, p) != inAny(k.overlay, p) {
			k.programLocked(p)
		}
	}
}

// inAny reports whether p lies inside one of pools.
func inAny(pools []netip.Prefix, p netip.Prefix) bool {
	for _, pool := range pools {
		if pool.Bits() <= p.Bits() && pool.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// freeze stops all kernel writes (graceful stop: routes stay).
func (k *kernel) freeze() {
	k.mu.Lock()
	k.frozen = true
	k.mu.Unlock()
}

// setInSync allows sweeping and resyncs at once.
func (k *kernel) setInSync() error {
	k.mu.Lock()
	k.inSync = true
	k.mu.Unlock()
	return k.resync()
}

// resync reads our routes back, removes unwanted ones (once in sync) and
// (re)programs every wanted prefix.
func (k *kernel) resync() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.frozen {
		return nil
	}
	routes, err := k.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: k.proto},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes of protocol %d: %w", k.proto, err)
	}
	var errs []error
	if k.inSync {
		for _, r := range routes {
			pfx, ok := dstPrefix(r.Dst)
			if !ok || k.wanted(pfx) {
				continue
			}
			if err := k.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("sweep %s: %w", pfx, err))
				continue
			}
			k.deletes++
			k.log.Debug("routing: swept stale route", "prefix", pfx)
		}
	}
	for p := range k.blackholes {
		if err := k.programLocked(p); err != nil {
			errs = append(errs, err)
		}
	}
	for p := range k.learned {
		if k.blackholes[p] {
			continue
		}
		if err := k.programLocked(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (k *kernel) wanted(p netip.Prefix) bool {
	if k.blackholes[p] {
		return true
	}
	_, ok := k.learned[p]
	return ok && !inAny(k.overlay, p)
}

// purge deletes every route of ours (StopAndWithdraw).
func (k *kernel) purge() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.frozen = true
	routes, err := k.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: k.proto},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes of protocol %d: %w", k.proto, err)
	}
	var errs []error
	for _, r := range routes {
		if err := k.nl.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// programLocked makes the kernel's route for p what we want: a blackhole
// for an owned block, else the learned route, else none of ours.
func (k *kernel) programLocked(p netip.Prefix) error {
	if k.frozen {
		return nil
	}
	dst := prefixIPNet(p)
	existing, err := k.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: dst},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list routes to %s: %w", p, err)
	}
	var ours, theirs *netlink.Route
	for i := range existing {
		r := &existing[i]
		if r.Priority != k.metric {
			continue
		}
		if r.Protocol == k.proto {
			ours = r
		} else {
			theirs = r
		}
	}
	want, err := k.wantRoute(p, dst)
	if err != nil {
		k.log.Warn("routing: cannot program learned route", "prefix", p, "err", err)
		// Fall through: with no usable route, remove a stale one of ours.
	}
	if want == nil {
		delete(k.conflicts, p)
		if ours == nil {
			return err
		}
		if derr := k.nl.RouteDel(ours); derr != nil && !errors.Is(derr, unix.ESRCH) {
			return fmt.Errorf("delete route to %s: %w", p, derr)
		}
		k.deletes++
		return err
	}
	if theirs != nil && ours == nil {
		if !k.conflicts[p] {
			k.log.Warn("routing: a route of another protocol holds this destination; not replacing it",
				"prefix", p, "protocol", int(theirs.Protocol))
		}
		k.conflicts[p] = true
		return nil
	}
	delete(k.conflicts, p)
	if ours != nil && sameRoute(ours, want) {
		return nil
	}
	if err := k.nl.RouteReplace(want); err != nil {
		return fmt.Errorf("install route to %s: %w", p, err)
	}
	k.writes++
	return nil
}

// wantRoute builds the route for p, or nil when none is wanted. A next hop
// that is not on a connected subnet is resolved recursively through the
// kernel's own route to it (BIRD's "gateway recursive").
func (k *kernel) wantRoute(p netip.Prefix, dst *net.IPNet) (*netlink.Route, error) {
	if k.blackholes[p] {
		return &netlink.Route{
			Dst: dst, Table: unix.RT_TABLE_MAIN, Protocol: k.proto, Priority: k.metric,
			Type: unix.RTN_BLACKHOLE,
		}, nil
	}
	nh, ok := k.learned[p]
	if !ok || inAny(k.overlay, p) {
		return nil, nil
	}
	got, err := k.nl.RouteGet(nh.AsSlice())
	if err != nil || len(got) == 0 {
		return nil, fmt.Errorf("next hop %s is unreachable: %w", nh, err)
	}
	r := got[0]
	if r.Type == unix.RTN_LOCAL {
		return nil, fmt.Errorf("next hop %s is a local address", nh)
	}
	gw := r.Gw
	if gw == nil {
		gw = nh.AsSlice()
	}
	return &netlink.Route{
		Dst: dst, Gw: gw, LinkIndex: r.LinkIndex, Table: unix.RT_TABLE_MAIN,
		Protocol: k.proto, Priority: k.metric, Type: unix.RTN_UNICAST,
	}, nil
}

func sameRoute(have, want *netlink.Route) bool {
	if have.Type != want.Type {
		return false
	}
	if want.Type == unix.RTN_BLACKHOLE {
		return true
	}
	return have.Gw.Equal(want.Gw) && have.LinkIndex == want.LinkIndex && len(have.MultiPath) == 0
}

// counts returns the write and delete counters.
func (k *kernel) counts() (writes, deletes uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes, k.deletes
}

// dump renders our wanted routes, sorted, `ip route` style.
func (k *kernel) dump() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var lines []string
	for p := range k.blackholes {
		lines = append(lines, fmt.Sprintf("blackhole %s proto %d", p, k.proto))
	}
	for p, nh := range k.learned {
		if k.blackholes[p] {
			continue
		}
		line := fmt.Sprintf("%s via %s proto %d", p, nh, k.proto)
		if k.conflicts[p] {
			line += " (not installed: conflicts with another protocol's route)"
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func dstPrefix(n *net.IPNet) (netip.Prefix, bool) {
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
