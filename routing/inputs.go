package routing

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/ipam"
)

// IPAM key layout (compat §3.2), as package ipam writes it.
const (
	ipamBlockPrefix = "/calico/ipam/v2/assignment/"
	ipamHostPrefix  = "/calico/ipam/v2/host/"
)

// WatchOptions is what a Daemon for node watches: Nodes, BGPPeers,
// BGPConfigurations, IPPools, every IPAM block and the node's own affinities.
func WatchOptions(node string) datastore.WatchOptions {
	var opts datastore.WatchOptions
	for _, k := range []string{"Node", "BGPPeer", "BGPConfiguration", "IPPool"} {
		info, _ := api.LookupKind(k)
		opts.Kinds = append(opts.Kinds, info)
	}
	opts.RawPrefixes = []string{ipamBlockPrefix, ipamHostPrefix + node + "/"}
	return opts
}

// inputState is the daemon's view of the datastore, kept up to date from
// the watch. It turns into Inputs for Plan.
type inputState struct {
	node    string
	nodes   map[string]api.Node
	peers   map[string]api.BGPPeer
	configs map[string]api.BGPConfiguration
	pools   map[string]api.IPPool
	// affine are the blocks this node holds an affinity for that counts
	// (confirmed, or no state: compat §7.3), by affinity key.
	affine map[string]netip.Prefix
	// mine are the in-use IPv4 addresses of each block (by block key)
	// whose allocation's "node" attribute is this node.
	mine map[string][]netip.Addr
	// problems are values that could not be used, by key.
	problems map[string]string
}

func newInputState(node string) *inputState {
	return &inputState{
		node:     node,
		nodes:    map[string]api.Node{},
		peers:    map[string]api.BGPPeer{},
		configs:  map[string]api.BGPConfiguration{},
		pools:    map[string]api.IPPool{},
		affine:   map[string]netip.Prefix{},
		mine:     map[string][]netip.Addr{},
		problems: map[string]string{},
	}
}

// feed applies one watch update. Objects are copied, never modified, so
// updates from a shared Hub are safe. It reports whether the update can
// change the plan.
func (s *inputState) feed(u datastore.Update) bool {
	if u.Type != datastore.UpdateSet && u.Type != datastore.UpdateDelete {
		return false
	}
	del := u.Type == datastore.UpdateDelete
	if u.Kind != "" {
		return s.feedResource(u, del)
	}
	delete(s.problems, u.Key)
	switch {
	case strings.HasPrefix(u.Key, ipamBlockPrefix):
		return s.feedBlock(u.Key, u.Value, del)
	case strings.HasPrefix(u.Key, ipamHostPrefix+s.node+"/"):
		return s.feedAffinity(u.Key, u.Value, del)
	}
	return false
}

func (s *inputState) feedResource(u datastore.Update, del bool) bool {
	switch u.Kind {
	case "Node":
		if n, ok := u.Object.(*api.Node); ok && !del {
			s.nodes[u.Name] = *n
		} else {
			delete(s.nodes, u.Name)
		}
	case "BGPPeer":
		if p, ok := u.Object.(*api.BGPPeer); ok && !del {
			s.peers[u.Name] = *p
		} else {
			delete(s.peers, u.Name)
		}
	case "BGPConfiguration":
		if c, ok := u.Object.(*api.BGPConfiguration); ok && !del {
			s.configs[u.Name] = *c
		} else {
			delete(s.configs, u.Name)
		}
	case "IPPool":
		if p, ok := u.Object.(*api.IPPool); ok && !del {
			s.pools[u.Name] = *p
		} else {
			delete(s.pools, u.Name)
		}
	default:
		return false
	}
	return true
}

// feedAffinity tracks this node's affinity keys
// (/calico/ipam/v2/host/<node>/ipv4/block/<a.b.c.d-nn>).
func (s *inputState) feedAffinity(key string, value []byte, del bool) bool {
	_, had := s.affine[key]
	delete(s.affine, key)
	if del {
		return had
	}
	rest := strings.TrimPrefix(key, ipamHostPrefix+s.node+"/")
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "block" {
		s.problems[key] = "not an affinity key (want <node>/ipv4/block/<cidr>)"
		return had
	}
	if parts[0] != "ipv4" {
		return had // IPv6 is not advertised yet
	}
	cidr, err := parseCIDRName(parts[2])
	if err != nil {
		s.problems[key] = err.Error()
		return had
	}
	var a ipam.Affinity
	if err := json.Unmarshal(value, &a); err != nil {
		s.problems[key] = "affinity: " + err.Error()
		return had
	}
	if a.Deleted || (a.State != "" && a.State != ipam.AffinityConfirmed) {
		return had // pending and pendingDeletion count as absent (compat §4.1)
	}
	s.affine[key] = cidr
	return true
}

// feedBlock records the addresses of a block
// (/calico/ipam/v2/assignment/ipv4/block/<a.b.c.d-nn>) allocated to this
// node.
func (s *inputState) feedBlock(key string, value []byte, del bool) bool {
	had := len(s.mine[key]) > 0
	delete(s.mine, key)
	if del {
		return had
	}
	parts := strings.Split(strings.TrimPrefix(key, ipamBlockPrefix), "/")
	if len(parts) != 3 || parts[1] != "block" {
		s.problems[key] = "not a block key (want ipv4/block/<cidr>)"
		return had
	}
	if parts[0] != "ipv4" {
		return had
	}
	cidr, err := parseCIDRName(parts[2])
	if err != nil {
		s.problems[key] = err.Error()
		return had
	}
	var b ipam.Block
	if err := json.Unmarshal(value, &b); err != nil {
		s.problems[key] = "block: " + err.Error()
		return had
	}
	size := 1 << (32 - cidr.Bits())
	var mine []netip.Addr
	for o, a := range b.Allocations {
		if a == nil || o >= size {
			continue
		}
		if *a < 0 || *a >= len(b.Attributes) {
			s.problems[key] = fmt.Sprintf("block: allocations[%d] refers to attribute %d of %d", o, *a, len(b.Attributes))
			continue
		}
		attr := b.Attributes[*a]
		if attr.ReleasedAt != nil || attr.Secondary[ipam.AttrNode] != s.node {
			continue
		}
		mine = append(mine, ordinal4(cidr, o))
	}
	if len(mine) > 0 {
		s.mine[key] = mine
	}
	return had || len(mine) > 0
}

// parseCIDRName parses a block name as keys spell it: 10.0.0.0-26.
func parseCIDRName(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("block name %q: want <address>-<prefix length>", s)
	}
	p, err := netip.ParsePrefix(s[:i] + "/" + s[i+1:])
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("block name %q: %w", s, err)
	}
	if !p.Addr().Is4() || p.Masked() != p || p.Bits() < 20 {
		return netip.Prefix{}, fmt.Errorf("block name %q: want a masked IPv4 block of /20 to /32", s)
	}
	return p, nil
}

// ordinal4 is the o'th address of an IPv4 block.
func ordinal4(cidr netip.Prefix, o int) netip.Addr {
	a := cidr.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(o)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// inputs renders the state for Plan: Blocks are the node's affine blocks,
// Borrowed its addresses that no affine block of its own covers (in other
// nodes' blocks, or in blocks nobody is affine to). Everything is sorted,
// so equal states give equal Inputs.
func (s *inputState) inputs() Inputs {
	in := Inputs{NodeName: s.node}
	for _, k := range sortedKeys(s.nodes) {
		in.Nodes = append(in.Nodes, s.nodes[k])
	}
	for _, k := range sortedKeys(s.peers) {
		in.Peers = append(in.Peers, s.peers[k])
	}
	for _, k := range sortedKeys(s.configs) {
		in.Configs = append(in.Configs, s.configs[k])
	}
	for _, k := range sortedKeys(s.pools) {
		in.Pools = append(in.Pools, s.pools[k])
	}
	for _, p := range s.affine {
		in.Blocks = append(in.Blocks, p)
	}
	slices.SortFunc(in.Blocks, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	in.Blocks = slices.Compact(in.Blocks)
	for _, addrs := range s.mine {
		for _, a := range addrs {
			if !slices.ContainsFunc(in.Blocks, func(b netip.Prefix) bool { return b.Contains(a) }) {
				in.Borrowed = append(in.Borrowed, a)
			}
		}
	}
	slices.SortFunc(in.Borrowed, netip.Addr.Compare)
	in.Borrowed = slices.Compact(in.Borrowed)
	return in
}

// problemList lists the values the state skipped, sorted.
func (s *inputState) problemList() []string {
	var out []string
	for _, k := range sortedKeys(s.problems) {
		out = append(out, k+": "+s.problems[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
