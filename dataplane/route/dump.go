package route

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Dump reads the kernel and renders our routes, one per line, sorted, in
// `ip route` style ("10.0.0.1/32 dev caliabc proto brindle scope link"),
// followed by "pending <dst> dev <iface> (<reason>)" for desired routes
// waiting for their interface at the last reconcile.
func (d *Dataplane) Dump() (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nl == nil {
		return "", fmt.Errorf("route: dataplane is closed")
	}
	links, err := listLinks(d.nl)
	if err != nil {
		return "", fmt.Errorf("route: list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	rs, err := listRoutes(d.nl)
	if err != nil {
		return "", fmt.Errorf("route: list routes: %w", err)
	}
	var ours []netlink.Route
	for _, r := range rs {
		if d.isOurs(r, names[r.LinkIndex]) {
			ours = append(ours, r)
		}
	}
	sort.Slice(ours, func(i, j int) bool {
		if c := comparePrefix(dstPrefix(ours[i]), dstPrefix(ours[j])); c != 0 {
			return c < 0
		}
		return ours[i].LinkIndex < ours[j].LinkIndex
	})
	var b strings.Builder
	for _, r := range ours {
		b.WriteString(FormatRoute(r, names[r.LinkIndex], d.cfg.Protocol))
		b.WriteByte('\n')
	}
	for _, p := range d.pending {
		fmt.Fprintf(&b, "pending %s dev %s (%s)\n", p.dst, p.iface, p.reason)
	}
	return b.String(), nil
}

// FormatRoute renders r like `ip route`, naming protocol ours "brindle".
func FormatRoute(r netlink.Route, linkName string, ours netlink.RouteProtocol) string {
	var b strings.Builder
	b.WriteString(dstPrefix(r).String())
	if r.Gw != nil {
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			fmt.Fprintf(&b, " via %s", a.Unmap())
		}
	}
	if linkName == "" {
		linkName = fmt.Sprintf("if%d", r.LinkIndex)
	}
	fmt.Fprintf(&b, " dev %s proto %s", linkName, protoName(r.Protocol, ours))
	if r.Scope != netlink.SCOPE_UNIVERSE {
		fmt.Fprintf(&b, " scope %s", r.Scope)
	}
	if r.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", r.Priority)
	}
	return b.String()
}

func protoName(p, ours netlink.RouteProtocol) string {
	switch {
	case p == ours:
		return ProtocolName
	case p == unix.RTPROT_KERNEL:
		return "kernel"
	case p == unix.RTPROT_BOOT:
		return "boot"
	case p == unix.RTPROT_STATIC:
		return "static"
	}
	return fmt.Sprint(int(p))
}
