package vxlan

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
)

// Block is an IPAM block as the planner needs it: its CIDR, the node that
// holds a confirmed affinity for it ("" if none) and the addresses in it
// that were allocated to other nodes (borrowed), by address.
type Block struct {
	CIDR  netip.Prefix
	Owner string
	// Borrowed maps an address of the block to the node it was allocated
	// to (the allocation's "node" attribute), for allocations whose node
	// is not Owner.
	Borrowed map[netip.Addr]string
}

// Input is everything Plan looks at.
type Input struct {
	// Hostname is this node's name.
	Hostname string
	// Nodes are all Nodes, this one included.
	Nodes []*api.Node
	// Pools are all IPPools (defaulted or not).
	Pools []*api.IPPool
	// Blocks are all IPAM blocks.
	Blocks []Block
}

// Tunnel is this node's VXLAN tunnel endpoint.
type Tunnel struct {
	// Addr is the VTEP address (on the device as /32).
	Addr netip.Addr
	// MAC is the device's MAC address.
	MAC net.HardwareAddr
	// ParentIP is the node's own IPv4 address: the outer source address;
	// the interface that holds it is the device's parent.
	ParentIP netip.Addr
}

// Route is one route towards remote workloads.
type Route struct {
	// Dst is a remote block, or a /32 borrowed address.
	Dst netip.Prefix
	// Gateway is the remote VTEP (Encap) or the remote node's IP.
	Gateway netip.Addr
	// Encap: "via <VTEP> dev <device> onlink"; otherwise "via <node IP>"
	// over the fabric (CrossSubnet, same subnet).
	Encap bool
	// Node is the node the route leads to (for messages and rendering).
	Node string
}

// Peer is a remote node's VTEP: an ARP entry (Addr → MAC) and an FDB entry
// (MAC → NodeIP) on the device.
type Peer struct {
	Node   string
	Addr   netip.Addr
	MAC    net.HardwareAddr
	NodeIP netip.Addr
}

// Desired is the VXLAN state this node should have.
type Desired struct {
	// NeedTunnel is true when some IPv4 pool has vxlanMode Always or
	// CrossSubnet: this node then needs a VTEP address and MAC.
	NeedTunnel bool
	// Tunnel is the device to program; nil means no device (no VXLAN
	// pool, or this node has no VTEP or IPv4 address yet).
	Tunnel *Tunnel
	// Routes, sorted by destination. Encapsulated routes appear only when
	// Tunnel is set.
	Routes []Route
	// Peers, sorted by node name; empty when Tunnel is nil.
	Peers []Peer
	// Problems lists what could not be planned (a node without a VTEP, a
	// malformed address...), sorted. They are not errors: the rest is
	// programmed.
	Problems []string
}

// VXLANPools returns the enabled or disabled IPv4 pools whose vxlanMode is
// Always or CrossSubnet, sorted by name.
func VXLANPools(pools []*api.IPPool) []*api.IPPool {
	var out []*api.IPPool
	for _, p := range pools {
		if p == nil || !vxlanMode(p.Spec.VXLANMode) {
			continue
		}
		c, err := netip.ParsePrefix(p.Spec.CIDR)
		if err != nil || !c.Addr().Is4() {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *api.IPPool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func vxlanMode(m string) bool { return m == api.EncapAlways || m == api.EncapCrossSubnet }

// MACFor is the deterministic VTEP MAC of a node: the first six bytes of
// the SHA-256 of its name, with the locally administered bit set and the
// multicast bit clear.
func MACFor(node string) net.HardwareAddr {
	s := sha256.Sum256([]byte(node))
	mac := net.HardwareAddr(s[:6])
	mac[0] = (mac[0] | 0x02) &^ 0x01
	return mac
}

// nodeInfo is a parsed Node.
type nodeInfo struct {
	name   string
	ip     netip.Addr   // spec.bgp.ipv4Address without its length
	subnet netip.Prefix // spec.bgp.ipv4Address, masked
	vtep   netip.Addr
	mac    net.HardwareAddr
}

type pool struct {
	name  string
	cidr  netip.Prefix
	cross bool
}

// Plan computes the desired VXLAN state of in.Hostname. It is pure.
func Plan(in Input) Desired {
	var d Desired
	probs := map[string]bool{}
	problem := func(format string, args ...any) { probs[fmt.Sprintf(format, args...)] = true }

	var pools []pool
	for _, p := range VXLANPools(in.Pools) {
		c, _ := netip.ParsePrefix(p.Spec.CIDR)
		pools = append(pools, pool{name: p.Name, cidr: c.Masked(), cross: p.Spec.VXLANMode == api.EncapCrossSubnet})
	}
	d.NeedTunnel = len(pools) > 0

	nodes := map[string]*nodeInfo{}
	for _, n := range in.Nodes {
		if n == nil || n.Name == "" {
			continue
		}
		nodes[n.Name] = parseNode(n, problem)
	}
	local := nodes[in.Hostname]
	if !d.NeedTunnel {
		return d
	}
	switch {
	case local == nil:
		problem("this node %q has no Node resource", in.Hostname)
	case !local.ip.IsValid():
		problem("this node %q has no spec.bgp.ipv4Address", in.Hostname)
	case !local.vtep.IsValid() || local.mac == nil:
		problem("this node %q has no VTEP address and MAC yet", in.Hostname)
	default:
		d.Tunnel = &Tunnel{Addr: local.vtep, MAC: local.mac, ParentIP: local.ip}
	}

	poolOf := func(p netip.Prefix) *pool {
		for i := range pools {
			if pools[i].cidr.Bits() <= p.Bits() && pools[i].cidr.Contains(p.Addr()) {
				return &pools[i]
			}
		}
		return nil
	}
	routes := map[netip.Prefix]Route{}
	// route plans one destination towards node; pl is the destination's pool.
	route := func(dst netip.Prefix, node string, pl *pool) {
		if node == in.Hostname {
			return
		}
		r := nodes[node]
		switch {
		case r == nil:
			problem("%s: node %q has no Node resource", dst, node)
			return
		case !r.ip.IsValid():
			problem("%s: node %q has no spec.bgp.ipv4Address", dst, node)
			return
		}
		if pl.cross && local != nil && local.ip.IsValid() && local.subnet.Contains(r.ip) {
			routes[dst] = Route{Dst: dst, Gateway: r.ip, Node: node}
			return
		}
		switch {
		case !r.vtep.IsValid() || r.mac == nil:
			problem("%s: node %q has no VTEP address and MAC yet", dst, node)
		case d.Tunnel == nil:
			problem("%s: not routed until this node has a tunnel", dst)
		default:
			routes[dst] = Route{Dst: dst, Gateway: r.vtep, Encap: true, Node: node}
		}
	}
	for _, b := range in.Blocks {
		if !b.CIDR.IsValid() {
			continue
		}
		pl := poolOf(b.CIDR.Masked())
		if pl == nil {
			continue
		}
		if b.Owner != "" {
			route(b.CIDR.Masked(), b.Owner, pl)
		}
		for a, n := range b.Borrowed {
			if n != "" && n != b.Owner && b.CIDR.Contains(a) {
				route(netip.PrefixFrom(a, a.BitLen()), n, pl)
			}
		}
	}
	for _, r := range routes {
		d.Routes = append(d.Routes, r)
	}
	slices.SortFunc(d.Routes, func(a, b Route) int { return comparePrefix(a.Dst, b.Dst) })

	if d.Tunnel != nil {
		for _, n := range nodes {
			if n.name == in.Hostname || !n.ip.IsValid() || !n.vtep.IsValid() || n.mac == nil {
				continue
			}
			d.Peers = append(d.Peers, Peer{Node: n.name, Addr: n.vtep, MAC: n.mac, NodeIP: n.ip})
		}
		slices.SortFunc(d.Peers, func(a, b Peer) int { return strings.Compare(a.Node, b.Node) })
	}
	for p := range probs {
		d.Problems = append(d.Problems, p)
	}
	slices.Sort(d.Problems)
	return d
}

func parseNode(n *api.Node, problem func(string, ...any)) *nodeInfo {
	ni := &nodeInfo{name: n.Name}
	if n.Spec.BGP != nil && n.Spec.BGP.IPv4Address != "" {
		s := n.Spec.BGP.IPv4Address
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address is accepted as a /32 (no subnet known).
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || !a.Is4() {
				problem("node %q: spec.bgp.ipv4Address %q is not an IPv4 address or a.b.c.d/nn", n.Name, s)
			} else {
				ni.ip, ni.subnet = a, netip.PrefixFrom(a, 32)
			}
		} else if !p.Addr().Is4() {
			problem("node %q: spec.bgp.ipv4Address %q is not IPv4", n.Name, s)
		} else {
			ni.ip, ni.subnet = p.Addr(), p.Masked()
		}
	}
	if s := n.Spec.IPv4VXLANTunnelAddr; s != "" {
		if a, err := netip.ParseAddr(s); err != nil || !a.Is4() {
			problem("node %q: spec.ipv4VXLANTunnelAddr %q is not an IPv4 address", n.Name, s)
		} else {
			ni.vtep = a
		}
	}
	if s := n.Spec.VXLANTunnelMACAddr; s != "" {
		if m, err := net.ParseMAC(s); err != nil || len(m) != 6 {
			problem("node %q: spec.vxlanTunnelMACAddr %q is not a 6-byte MAC address", n.Name, s)
		} else {
			ni.mac = m
		}
	}
	return ni
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// String renders d as iproute2-like lines, one object a line, in a stable
// order: the device, the VTEP peers' ARP and FDB entries, the routes, then
// problems as comments.
func (d Desired) String() string {
	var b strings.Builder
	if d.Tunnel != nil {
		fmt.Fprintf(&b, "link vxlan local %s addr %s/32 mac %s\n", d.Tunnel.ParentIP, d.Tunnel.Addr, d.Tunnel.MAC)
	} else if d.NeedTunnel {
		b.WriteString("# no tunnel device yet\n")
	}
	for _, p := range d.Peers {
		fmt.Fprintf(&b, "neigh %s lladdr %s  # %s\n", p.Addr, p.MAC, p.Node)
		fmt.Fprintf(&b, "fdb %s dst %s  # %s\n", p.MAC, p.NodeIP, p.Node)
	}
	for _, r := range d.Routes {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	for _, p := range d.Problems {
		fmt.Fprintf(&b, "# problem: %s\n", p)
	}
	return b.String()
}

// String renders the route as iproute2 would, with the node as a comment.
func (r Route) String() string {
	if r.Encap {
		return fmt.Sprintf("route %s via %s dev vxlan onlink  # %s", r.Dst, r.Gateway, r.Node)
	}
	return fmt.Sprintf("route %s via %s  # %s", r.Dst, r.Gateway, r.Node)
}
