package routing

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/selector"
)

// DefaultASNumber is the AS of every node unless a Node or BGPConfiguration
// says otherwise (compat §3.1, §7.1).
const DefaultASNumber uint32 = 64512

// DefaultListenPort is the BGP port.
const DefaultListenPort uint16 = 179

// DefaultRestartTime is the graceful-restart time advertised to peers when
// neither BGPConfiguration.nodeMeshMaxRestartTime (mesh peers) nor
// BGPPeer.maxRestartTime says otherwise (BIRD's and Calico's 120 s).
const DefaultRestartTime = 120 * time.Second

// PeerType says where a peering came from, as `brindlectl node status`
// shows it.
type PeerType string

// Peer types.
const (
	// PeerMesh is a node-to-node mesh session.
	PeerMesh PeerType = "mesh"
	// PeerGlobal comes from a BGPPeer with neither node nor nodeSelector.
	PeerGlobal PeerType = "global"
	// PeerNode comes from a BGPPeer whose node or nodeSelector picks this
	// node, or is the reverse of a BGPPeer that picks this node as the peer.
	PeerNode PeerType = "node"
)

// Inputs is everything Plan needs. Slices are read, never modified.
type Inputs struct {
	// NodeName is the local node.
	NodeName string
	// Nodes are all nodes, the local one included.
	Nodes []api.Node
	// Peers are all BGPPeer resources.
	Peers []api.BGPPeer
	// Configs are the BGPConfiguration resources; only "default" and
	// "node.<name>" are read.
	Configs []api.BGPConfiguration
	// Blocks are the IPAM blocks affine to this node (compat §7.3).
	Blocks []netip.Prefix
	// Borrowed are addresses used on this node that lie in other nodes'
	// blocks; each is advertised as a host route.
	Borrowed []netip.Addr
	// Pools are the IPPools; only their cidr and vxlanMode are read.
	Pools []api.IPPool
}

// Desired is the BGP state one node should have. It is comparable with
// go-cmp and serialises to JSON (the agent's local API and the test helper
// use that).
type Desired struct {
	// Enabled is false when the local node is unknown or has no BGP IPv4
	// address: the speaker then runs no BGP at all.
	Enabled bool `json:"enabled"`
	// ASNumber is the local AS: Node.spec.bgp.asNumber, else the
	// node.<name> BGPConfiguration's, else the default one's, else 64512.
	ASNumber uint32 `json:"asNumber,omitempty"`
	// RouterID is the node's IPv4 address.
	RouterID netip.Addr `json:"routerID,omitzero"`
	// ListenPort is BGPConfiguration listenPort (node.<name> before
	// default), else 179.
	ListenPort uint16 `json:"listenPort,omitempty"`
	// ClusterID is this node's route-reflector cluster ID, "" when it is
	// not a reflector.
	ClusterID string `json:"clusterID,omitempty"`
	// Peers are sorted by address; one per address.
	Peers []Peer `json:"peers,omitempty"`
	// Prefixes are advertised: one per owned block plus a /32 per borrowed
	// address. Sorted.
	Prefixes []netip.Prefix `json:"prefixes,omitempty"`
	// Blackholes are the owned blocks shorter than /32: the kernel gets a
	// blackhole route for each, so addresses of the block that are not in
	// use are dropped here rather than sent to the default route.
	Blackholes []netip.Prefix `json:"blackholes,omitempty"`
	// OverlayPools are the CIDRs of pools with vxlanMode Always or
	// CrossSubnet. Their routes are still advertised (a top-of-rack router
	// may use them), but routes learned inside them are not installed in
	// the kernel: the VXLAN dataplane programs those (Calico's BIRD kernel
	// filter rejects them the same way). Sorted.
	OverlayPools []netip.Prefix `json:"overlayPools,omitempty"`
	// Problems are resources or fields that were skipped, each naming the
	// resource, the field and the reason. Sorted.
	Problems []string `json:"problems,omitempty"`
}

// Peer is one BGP session to hold.
type Peer struct {
	// Name is Calico's BIRD protocol name: Mesh_10_0_0_2, Global_…, Node_….
	Name string `json:"name"`
	// Address is the peer's IP.
	Address netip.Addr `json:"address"`
	// Port is the peer's BGP port; 0 means 179.
	Port uint16 `json:"port,omitempty"`
	// ASNumber is the peer's AS.
	ASNumber uint32 `json:"asNumber"`
	// LocalASNumber overrides Desired.ASNumber on this session; 0 means
	// none.
	LocalASNumber uint32 `json:"localASNumber,omitempty"`
	// Type says where the session came from.
	Type PeerType `json:"type"`
	// Passive sessions are never dialled by us: in the mesh (and for
	// global peers that are nodes), only the side whose address is the
	// greater string dials, as Calico's templates do.
	Passive bool `json:"passive,omitempty"`
	// RouteReflectorClient: we reflect routes to this peer (we are a
	// reflector, with Desired.ClusterID).
	RouteReflectorClient bool `json:"routeReflectorClient,omitempty"`
	// SourceAddress is the local address of the session; invalid means the
	// kernel chooses.
	SourceAddress netip.Addr `json:"sourceAddress,omitzero"`
	// RestartTime is the graceful-restart time to advertise; 0 means
	// DefaultRestartTime.
	RestartTime time.Duration `json:"restartTime,omitempty"`
	// KeepaliveTime overrides the speaker's keepalive interval; 0 means
	// the speaker's.
	KeepaliveTime time.Duration `json:"keepaliveTime,omitempty"`
	// TTLSecurity is the number of hops for GTSM; 0 means off.
	TTLSecurity uint8 `json:"ttlSecurity,omitempty"`
}

// nodeInfo is what Plan needs of one node, parsed once.
type nodeInfo struct {
	name      string
	labels    map[string]string
	ip        netip.Addr // invalid when the node has no usable IPv4
	as        uint32
	port      uint16 // 0 = default
	clusterID string
}

// planner holds one Plan call's parsed state.
type planner struct {
	in       Inputs
	global   *api.BGPConfiguration
	nodes    []nodeInfo
	byName   map[string]int
	local    nodeInfo
	problems []string
	peers    []Peer
	seen     map[netip.Addr]bool
	sels     map[string]*selector.Selector
}

// Plan computes the node's desired BGP state from datastore resources. It
// is pure: the same inputs give the same Desired. It returns an error only
// when Inputs itself is malformed (no node name, an invalid block or
// borrowed address); problems with resources are reported in
// Desired.Problems and the offending resource or field is skipped.
func Plan(in Inputs) (Desired, error) {
	if in.NodeName == "" {
		return Desired{}, fmt.Errorf("routing plan: NodeName is empty")
	}
	for i, b := range in.Blocks {
		if !b.IsValid() {
			return Desired{}, fmt.Errorf("routing plan: Blocks[%d] is not a valid prefix", i)
		}
		if b.Masked() != b {
			return Desired{}, fmt.Errorf("routing plan: Blocks[%d] %s has host bits set (want %s)", i, b, b.Masked())
		}
	}
	for i, a := range in.Borrowed {
		if !a.IsValid() {
			return Desired{}, fmt.Errorf("routing plan: Borrowed[%d] is not a valid address", i)
		}
	}
	p := &planner{in: in, byName: map[string]int{}, seen: map[netip.Addr]bool{}, sels: map[string]*selector.Selector{}}
	for i := range in.Configs {
		if in.Configs[i].Name == "default" {
			p.global = &in.Configs[i]
		}
	}
	p.parseNodes()
	li, ok := p.byName[in.NodeName]
	if !ok {
		p.problem("Node %s: not found; BGP is off", in.NodeName)
		return p.result(Desired{}), nil
	}
	p.local = p.nodes[li]
	if !p.local.ip.IsValid() {
		p.problem("Node %s: spec.bgp.ipv4Address is not set; BGP is off", in.NodeName)
		return p.result(Desired{}), nil
	}
	d := Desired{
		Enabled:    true,
		ASNumber:   p.local.as,
		RouterID:   p.local.ip,
		ListenPort: p.local.port,
		ClusterID:  p.local.clusterID,
	}
	if d.ListenPort == 0 {
		d.ListenPort = DefaultListenPort
	}
	p.mesh()
	p.explicit()
	d.Peers = p.peers
	slices.SortFunc(d.Peers, func(a, b Peer) int { return a.Address.Compare(b.Address) })
	d.Prefixes, d.Blackholes = p.prefixes()
	d.OverlayPools = p.overlayPools()
	return p.result(d), nil
}

// overlayPools lists the CIDRs of VXLAN pools (compat: vxlanMode Always or
// CrossSubnet); a pool whose cidr does not parse is a problem.
func (p *planner) overlayPools() []netip.Prefix {
	var out []netip.Prefix
	for _, pool := range p.in.Pools {
		switch pool.Spec.VXLANMode {
		case api.EncapAlways, api.EncapCrossSubnet:
		default:
			continue
		}
		c, err := netip.ParsePrefix(pool.Spec.CIDR)
		if err != nil {
			p.problem("IPPool %s: spec.cidr %q: %v", pool.Name, pool.Spec.CIDR, err)
			continue
		}
		out = append(out, c.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

func (p *planner) result(d Desired) Desired {
	slices.Sort(p.problems)
	d.Problems = slices.Compact(p.problems)
	return d
}

func (p *planner) problem(format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

// config returns the node.<name> BGPConfiguration, or nil.
func (p *planner) nodeConfig(name string) *api.BGPConfiguration {
	for i := range p.in.Configs {
		if p.in.Configs[i].Name == "node."+name {
			return &p.in.Configs[i]
		}
	}
	return nil
}

func (p *planner) globalAS() uint32 {
	if p.global != nil && p.global.Spec.ASNumber != nil {
		return uint32(*p.global.Spec.ASNumber)
	}
	return DefaultASNumber
}

func (p *planner) parseNodes() {
	for _, n := range p.in.Nodes {
		if _, dup := p.byName[n.Name]; dup {
			p.problem("Node %s: listed twice; the first is used", n.Name)
			continue
		}
		info := nodeInfo{name: n.Name, labels: n.Labels, as: p.globalAS()}
		nc := p.nodeConfig(n.Name)
		if nc != nil && nc.Spec.ASNumber != nil {
			info.as = uint32(*nc.Spec.ASNumber)
		}
		if nc != nil && nc.Spec.ListenPort != 0 {
			info.port = nc.Spec.ListenPort
		} else if p.global != nil {
			info.port = p.global.Spec.ListenPort
		}
		if b := n.Spec.BGP; b != nil {
			if b.ASNumber != nil {
				info.as = uint32(*b.ASNumber)
			}
			if id := b.RouteReflectorClusterID; id != "" {
				if a, err := netip.ParseAddr(id); err != nil || !a.Is4() {
					p.problem("Node %s: spec.bgp.routeReflectorClusterID %q: want an IPv4 address such as 224.0.0.1; ignored", n.Name, id)
				} else {
					info.clusterID = id
				}
			}
			if b.IPv4Address != "" {
				ip, err := parseNodeIP(b.IPv4Address)
				if err != nil {
					p.problem("Node %s: spec.bgp.ipv4Address: %v", n.Name, err)
				} else {
					info.ip = ip
				}
			}
		}
		p.byName[n.Name] = len(p.nodes)
		p.nodes = append(p.nodes, info)
	}
}

// parseNodeIP accepts "a.b.c.d/nn" (Calico's form) or a bare address.
func parseNodeIP(s string) (netip.Addr, error) {
	var a netip.Addr
	if pfx, err := netip.ParsePrefix(s); err == nil {
		a = pfx.Addr()
	} else if addr, err2 := netip.ParseAddr(s); err2 == nil {
		a = addr
	} else {
		return netip.Addr{}, fmt.Errorf("%q is not an address or address/length", s)
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%q is not IPv4", s)
	}
	return a, nil
}

func (p *planner) meshEnabled() bool {
	if p.global != nil && p.global.Spec.NodeToNodeMeshEnabled != nil {
		return *p.global.Spec.NodeToNodeMeshEnabled
	}
	return true
}

// mesh adds a session to every other node with an IPv4 address, unless the
// mesh is off or this node is a route reflector; reflectors are skipped.
func (p *planner) mesh() {
	if !p.meshEnabled() || p.local.clusterID != "" {
		return
	}
	var restart time.Duration
	if p.global != nil && p.global.Spec.NodeMeshMaxRestartTime != nil {
		restart = p.global.Spec.NodeMeshMaxRestartTime.Duration
	}
	for _, n := range p.nodes {
		if !n.ip.IsValid() || n.ip == p.local.ip || n.clusterID != "" {
			continue
		}
		p.add(Peer{
			Name:          "Mesh_" + underscored(n.ip),
			Address:       n.ip,
			Port:          n.port,
			ASNumber:      n.as,
			Type:          PeerMesh,
			Passive:       n.ip.String() > p.local.ip.String(),
			SourceAddress: p.local.ip,
			RestartTime:   restart,
		})
	}
}

// candidate is a peer a BGPPeer resource names, before the resource's
// session settings are applied.
type candidate struct {
	ip         netip.Addr
	port       uint16
	as         uint32
	clusterID  string
	calicoNode bool
}

// explicit expands BGPPeer resources: global ones first, then those that
// pick this node, then the reverse of those that pick this node as the
// peer. The first peering to an address wins.
func (p *planner) explicit() {
	for _, globalPass := range []bool{true, false} {
		for i := range p.in.Peers {
			r := &p.in.Peers[i]
			isGlobal := r.Spec.Node == "" && r.Spec.NodeSelector == ""
			if isGlobal != globalPass {
				continue
			}
			if !isGlobal && !p.picksLocal(r) {
				continue
			}
			typ := PeerGlobal
			if !isGlobal {
				typ = PeerNode
			}
			for _, c := range p.peerSide(r) {
				p.addFromResource(r, c, typ)
			}
		}
	}
	// Reverse peerings: this node is on the peer side of the resource, so
	// it peers back with the nodes on the resource's node side.
	for i := range p.in.Peers {
		r := &p.in.Peers[i]
		if !p.localOnPeerSide(r) {
			continue
		}
		for _, n := range p.nodes {
			if !n.ip.IsValid() || !p.onNodeSide(r, n) {
				continue
			}
			c := candidate{ip: n.ip, port: n.port, as: n.as, clusterID: n.clusterID, calicoNode: true}
			p.addFromResource(r, c, PeerNode)
		}
	}
}

func (p *planner) sel(r *api.BGPPeer, field, s string) *selector.Selector {
	key := field + "\x00" + s
	if sel, ok := p.sels[key]; ok {
		return sel
	}
	sel, err := selector.Parse(s)
	if err != nil {
		p.problem("BGPPeer %s: spec.%s: %v", r.Name, field, err)
		sel = nil
	}
	p.sels[key] = sel
	return sel
}

// picksLocal reports whether a non-global resource's node or nodeSelector
// picks the local node.
func (p *planner) picksLocal(r *api.BGPPeer) bool {
	if r.Spec.NodeSelector != "" {
		s := p.sel(r, "nodeSelector", r.Spec.NodeSelector)
		return s != nil && s.Evaluate(p.local.labels)
	}
	return r.Spec.Node == p.local.name
}

// onNodeSide reports whether node n is on the resource's node side (its
// node or nodeSelector; every node when both are empty).
func (p *planner) onNodeSide(r *api.BGPPeer, n nodeInfo) bool {
	switch {
	case r.Spec.NodeSelector != "":
		s := p.sel(r, "nodeSelector", r.Spec.NodeSelector)
		return s != nil && s.Evaluate(n.labels)
	case r.Spec.Node != "":
		return r.Spec.Node == n.name
	}
	return true
}

// peerSide lists the peers a resource names: nodes matching peerSelector,
// or peerIP.
func (p *planner) peerSide(r *api.BGPPeer) []candidate {
	if r.Spec.PeerSelector != "" {
		s := p.sel(r, "peerSelector", r.Spec.PeerSelector)
		if s == nil {
			return nil
		}
		var out []candidate
		for _, n := range p.nodes {
			if n.ip.IsValid() && s.Evaluate(n.labels) {
				out = append(out, candidate{ip: n.ip, port: n.port, as: n.as, clusterID: n.clusterID, calicoNode: true})
			}
		}
		return out
	}
	ip, port, err := parsePeerIP(r.Spec.PeerIP)
	if err != nil {
		p.problem("BGPPeer %s: spec.peerIP: %v", r.Name, err)
		return nil
	}
	if !ip.Is4() {
		p.problem("BGPPeer %s: spec.peerIP %s: IPv6 peering is not supported yet", r.Name, ip)
		return nil
	}
	if r.Spec.ASNumber == 0 {
		p.problem("BGPPeer %s: spec.asNumber is required with spec.peerIP", r.Name)
		return nil
	}
	c := candidate{ip: ip, port: port, as: uint32(r.Spec.ASNumber)}
	for _, n := range p.nodes {
		if n.ip == ip {
			c.calicoNode = true
			// A peer that is one of our nodes, named without a port,
			// is reached on that node's listen port.
			if port == 0 && n.as == c.as {
				c.port = n.port
			}
			break
		}
	}
	return []candidate{c}
}

// localOnPeerSide reports whether the local node is on the resource's peer
// side: it matches peerSelector, or peerIP, asNumber (and the port, when
// given) are the local node's.
func (p *planner) localOnPeerSide(r *api.BGPPeer) bool {
	if r.Spec.PeerSelector != "" {
		s := p.sel(r, "peerSelector", r.Spec.PeerSelector)
		return s != nil && s.Evaluate(p.local.labels)
	}
	ip, port, err := parsePeerIP(r.Spec.PeerIP)
	if err != nil || ip != p.local.ip {
		return false
	}
	as := uint32(r.Spec.ASNumber)
	if as == 0 {
		as = p.globalAS()
	}
	if as != p.local.as {
		return false
	}
	lp := p.local.port
	if lp == 0 {
		lp = DefaultListenPort
	}
	return port == 0 || port == lp
}

// parsePeerIP parses "ip" or "ip:port" ("[v6]:port").
func parsePeerIP(s string) (netip.Addr, uint16, error) {
	if s == "" {
		return netip.Addr{}, 0, fmt.Errorf("empty (set peerIP or peerSelector)")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), 0, nil
	}
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q is not an IP or IP:port", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("%q: %q is not an IP", s, host)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, ps)
	}
	return a.Unmap(), uint16(port), nil
}

// addFromResource applies a BGPPeer's session settings to a candidate.
func (p *planner) addFromResource(r *api.BGPPeer, c candidate, typ PeerType) {
	if c.ip == p.local.ip {
		return
	}
	prefix := "Global"
	if typ == PeerNode {
		prefix = "Node"
	}
	peer := Peer{
		Name:     prefix + "_" + underscored(c.ip),
		Address:  c.ip,
		Port:     c.port,
		ASNumber: c.as,
		Type:     typ,
	}
	if c.port != 0 {
		peer.Name += "_port_" + strconv.Itoa(int(c.port))
	}
	if r.Spec.LocalASNumber != nil {
		peer.LocalASNumber = uint32(*r.Spec.LocalASNumber)
	}
	switch r.Spec.SourceAddress {
	case "", "UseNodeIP":
		peer.SourceAddress = p.local.ip
	case "None":
	default:
		p.problem("BGPPeer %s: spec.sourceAddress %q: want UseNodeIP or None", r.Name, r.Spec.SourceAddress)
		peer.SourceAddress = p.local.ip
	}
	if r.Spec.MaxRestartTime != nil {
		peer.RestartTime = r.Spec.MaxRestartTime.Duration
	}
	if r.Spec.KeepaliveTime != nil {
		peer.KeepaliveTime = r.Spec.KeepaliveTime.Duration
	}
	if r.Spec.TTLSecurity != nil {
		peer.TTLSecurity = *r.Spec.TTLSecurity
	}
	if r.Spec.Password != nil {
		p.problem("BGPPeer %s: spec.password is not supported yet; the session runs without one", r.Name)
	}
	if len(r.Spec.Filters) > 0 {
		p.problem("BGPPeer %s: spec.filters is not supported yet; ignored", r.Name)
	}
	effectiveAS := p.local.as
	if peer.LocalASNumber != 0 {
		effectiveAS = peer.LocalASNumber
	}
	if peer.ASNumber == effectiveAS && p.local.clusterID != "" && c.clusterID != p.local.clusterID {
		peer.RouteReflectorClient = true
	}
	if (typ == PeerGlobal) && c.calicoNode && c.ip.String() > p.local.ip.String() {
		peer.Passive = true
	}
	p.add(peer)
}

func (p *planner) add(peer Peer) {
	if p.seen[peer.Address] {
		return
	}
	p.seen[peer.Address] = true
	p.peers = append(p.peers, peer)
}

func (p *planner) prefixes() (adv, blackholes []netip.Prefix) {
	var own []netip.Prefix
	for _, b := range p.in.Blocks {
		if !b.Addr().Is4() {
			p.problem("block %s: IPv6 is not advertised yet", b)
			continue
		}
		own = append(own, b)
		adv = append(adv, b)
		if b.Bits() < 32 {
			blackholes = append(blackholes, b)
		}
	}
	for _, a := range p.in.Borrowed {
		a = a.Unmap()
		if !a.Is4() {
			p.problem("borrowed address %s: IPv6 is not advertised yet", a)
			continue
		}
		if slices.ContainsFunc(own, func(b netip.Prefix) bool { return b.Contains(a) }) {
			continue // in one of our own blocks: the block covers it
		}
		adv = append(adv, netip.PrefixFrom(a, 32))
	}
	cmpPfx := func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	}
	slices.SortFunc(adv, cmpPfx)
	slices.SortFunc(blackholes, cmpPfx)
	return slices.Compact(adv), slices.Compact(blackholes)
}

// underscored renders 10.0.0.2 as 10_0_0_2 (BIRD protocol names).
func underscored(a netip.Addr) string {
	return strings.NewReplacer(".", "_", ":", "_").Replace(a.String())
}
