package vxlan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, ip, vtep, mac string) *api.Node {
	n := &api.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if ip != "" {
		n.Spec.BGP = &api.NodeBGPSpec{IPv4Address: ip}
	}
	n.Spec.IPv4VXLANTunnelAddr = vtep
	n.Spec.VXLANTunnelMACAddr = mac
	return n
}

func ippool(name, cidr, vxlan string, nat bool) *api.IPPool {
	return &api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: api.IPPoolSpec{CIDR: cidr, VXLANMode: vxlan, NATOutgoing: nat}}
}

func block(cidr, owner string, borrowed ...string) Block {
	b := Block{CIDR: netip.MustParsePrefix(cidr), Owner: owner}
	for i := 0; i+1 < len(borrowed); i += 2 {
		if b.Borrowed == nil {
			b.Borrowed = map[netip.Addr]string{}
		}
		b.Borrowed[netip.MustParseAddr(borrowed[i])] = borrowed[i+1]
	}
	return b
}

// Three nodes: a and b share 10.1.0.0/24, c is on 10.2.0.0/24.
func threeNodes() []*api.Node {
	return []*api.Node{
		node("a", "10.1.0.1/24", "192.168.0.1", "02:00:00:00:00:0a"),
		node("b", "10.1.0.2/24", "192.168.0.65", "02:00:00:00:00:0b"),
		node("c", "10.2.0.3/24", "192.168.0.129", "02:00:00:00:00:0c"),
	}
}

func threeBlocks() []Block {
	return []Block{
		block("192.168.0.0/26", "a"),
		block("192.168.0.64/26", "b"),
		block("192.168.0.128/26", "c"),
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want string
	}{{
		name: "no vxlan pool: nothing",
		in: Input{Hostname: "a", Nodes: threeNodes(), Blocks: threeBlocks(),
			Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapNever, false)}},
		want: ``,
	}, {
		name: "always: every remote block via its VTEP, one route per block",
		in: Input{Hostname: "a", Nodes: threeNodes(), Blocks: threeBlocks(),
			Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapAlways, false)}},
		want: `
link vxlan local 10.1.0.1 addr 192.168.0.1/32 mac 02:00:00:00:00:0a
neigh 192.168.0.65 lladdr 02:00:00:00:00:0b  # b
fdb 02:00:00:00:00:0b dst 10.1.0.2  # b
neigh 192.168.0.129 lladdr 02:00:00:00:00:0c  # c
fdb 02:00:00:00:00:0c dst 10.2.0.3  # c
route 192.168.0.64/26 via 192.168.0.65 dev vxlan onlink  # b
route 192.168.0.128/26 via 192.168.0.129 dev vxlan onlink  # c
`,
	}, {
		name: "cross-subnet: same subnet plain, other subnet encapsulated",
		in: Input{Hostname: "a", Nodes: threeNodes(), Blocks: threeBlocks(),
			Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapCrossSubnet, false)}},
		want: `
link vxlan local 10.1.0.1 addr 192.168.0.1/32 mac 02:00:00:00:00:0a
neigh 192.168.0.65 lladdr 02:00:00:00:00:0b  # b
fdb 02:00:00:00:00:0b dst 10.1.0.2  # b
neigh 192.168.0.129 lladdr 02:00:00:00:00:0c  # c
fdb 02:00:00:00:00:0c dst 10.2.0.3  # c
route 192.168.0.64/26 via 10.1.0.2  # b
route 192.168.0.128/26 via 192.168.0.129 dev vxlan onlink  # c
`,
	}, {
		name: "cross-subnet seen from the other subnet",
		in: Input{Hostname: "c", Nodes: threeNodes(), Blocks: threeBlocks(),
			Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapCrossSubnet, false)}},
		want: `
link vxlan local 10.2.0.3 addr 192.168.0.129/32 mac 02:00:00:00:00:0c
neigh 192.168.0.1 lladdr 02:00:00:00:00:0a  # a
fdb 02:00:00:00:00:0a dst 10.1.0.1  # a
neigh 192.168.0.65 lladdr 02:00:00:00:00:0b  # b
fdb 02:00:00:00:00:0b dst 10.1.0.2  # b
route 192.168.0.0/26 via 192.168.0.1 dev vxlan onlink  # a
route 192.168.0.64/26 via 192.168.0.65 dev vxlan onlink  # b
`,
	}, {
		name: "blocks of other pools and unowned blocks are not routed; several blocks per node",
		in: Input{Hostname: "a", Nodes: threeNodes(),
			Blocks: append(threeBlocks(), block("192.168.1.0/26", "b"), block("192.168.2.0/26", ""),
				block("10.200.0.0/26", "c")),
			Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapAlways, false),
				ippool("bgp", "10.200.0.0/16", api.EncapNever, false)}},
		want: `
link vxlan local 10.1.0.1 addr 192.168.0.1/32 mac 02:00:00:00:00:0a
neigh 192.168.0.65 lladdr 02:00:00:00:00:0b  # b
fdb 02:00:00:00:00:0b dst 10.1.0.2  # b
neigh 192.168.0.129 lladdr 02:00:00:00:00:0c  # c
fdb 02:00:00:00:00:0c dst 10.2.0.3  # c
route 192.168.0.64/26 via 192.168.0.65 dev vxlan onlink  # b
route 192.168.0.128/26 via 192.168.0.129 dev vxlan onlink  # c
route 192.168.1.0/26 via 192.168.0.65 dev vxlan onlink  # b
`,
	}, {
		name: "borrowed addresses get a /32 to the borrower, unless the borrower is us",
		in: Input{Hostname: "a", Nodes: threeNodes(),
			Blocks: []Block{
				block("192.168.0.0/26", "a", "192.168.0.5", "c"),
				block("192.168.0.64/26", "b", "192.168.0.70", "a", "192.168.0.71", "c"),
				block("192.168.0.128/26", "", "192.168.0.130", "b"),
			},
			Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapAlways, false)}},
		want: `
link vxlan local 10.1.0.1 addr 192.168.0.1/32 mac 02:00:00:00:00:0a
neigh 192.168.0.65 lladdr 02:00:00:00:00:0b  # b
fdb 02:00:00:00:00:0b dst 10.1.0.2  # b
neigh 192.168.0.129 lladdr 02:00:00:00:00:0c  # c
fdb 02:00:00:00:00:0c dst 10.2.0.3  # c
route 192.168.0.5/32 via 192.168.0.129 dev vxlan onlink  # c
route 192.168.0.64/26 via 192.168.0.65 dev vxlan onlink  # b
route 192.168.0.71/32 via 192.168.0.129 dev vxlan onlink  # c
route 192.168.0.130/32 via 192.168.0.65 dev vxlan onlink  # b
`,
	}, {
		name: "this node has no VTEP yet: no device; cross-subnet same-subnet routes still planned",
		in: Input{Hostname: "a",
			Nodes:  []*api.Node{node("a", "10.1.0.1/24", "", ""), threeNodes()[1], threeNodes()[2]},
			Blocks: threeBlocks(),
			Pools:  []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapCrossSubnet, false)}},
		want: `
# no tunnel device yet
route 192.168.0.64/26 via 10.1.0.2  # b
# problem: 192.168.0.128/26: not routed until this node has a tunnel
# problem: this node "a" has no VTEP address and MAC yet
`,
	}, {
		name: "remote node without VTEP, without address, unknown, malformed",
		in: Input{Hostname: "a",
			Nodes: []*api.Node{threeNodes()[0], node("b", "10.1.0.2/24", "", ""), node("c", "", "192.168.0.129", "02:00:00:00:00:0c"),
				node("e", "10.1.0.9/24", "not-an-ip", "zz")},
			Blocks: append(threeBlocks(), block("192.168.0.192/26", "d"), block("192.168.1.0/26", "e")),
			Pools:  []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapAlways, false)}},
		want: `
link vxlan local 10.1.0.1 addr 192.168.0.1/32 mac 02:00:00:00:00:0a
# problem: 192.168.0.128/26: node "c" has no spec.bgp.ipv4Address
# problem: 192.168.0.192/26: node "d" has no Node resource
# problem: 192.168.0.64/26: node "b" has no VTEP address and MAC yet
# problem: 192.168.1.0/26: node "e" has no VTEP address and MAC yet
# problem: node "e": spec.ipv4VXLANTunnelAddr "not-an-ip" is not an IPv4 address
# problem: node "e": spec.vxlanTunnelMACAddr "zz" is not a 6-byte MAC address
`,
	}, {
		name: "ipv6 pools are ignored",
		in: Input{Hostname: "a", Nodes: threeNodes(), Blocks: []Block{block("fd00::/122", "b")},
			Pools: []*api.IPPool{ippool("v6", "fd00::/64", api.EncapAlways, false)}},
		want: ``,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(tc.in).String()
			want := strings.TrimPrefix(tc.want, "\n")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlanOrderIndependent: the plan depends on the inputs' contents, not
// their order.
func TestPlanOrderIndependent(t *testing.T) {
	in := Input{Hostname: "b", Nodes: threeNodes(), Blocks: threeBlocks(),
		Pools: []*api.IPPool{ippool("p", "192.168.0.0/16", api.EncapCrossSubnet, false)}}
	want := Plan(in)
	rev := in
	rev.Nodes = []*api.Node{in.Nodes[2], in.Nodes[1], in.Nodes[0]}
	rev.Blocks = []Block{in.Blocks[2], in.Blocks[0], in.Blocks[1]}
	if diff := cmp.Diff(want.String(), Plan(rev).String()); diff != "" {
		t.Errorf("reordered input changed the plan (-want +got):\n%s", diff)
	}
}

func TestMACFor(t *testing.T) {
	a, b := MACFor("node-a"), MACFor("node-b")
	if a.String() == b.String() {
		t.Errorf("MACFor gave %s for two nodes", a)
	}
	if a.String() != MACFor("node-a").String() {
		t.Errorf("MACFor is not deterministic")
	}
	for _, m := range [][]byte{a, b} {
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Errorf("MAC %x: want unicast and locally administered", m)
		}
	}
}

func TestVXLANPools(t *testing.T) {
	got := VXLANPools([]*api.IPPool{
		ippool("z", "192.168.0.0/16", api.EncapCrossSubnet, false),
		ippool("never", "10.0.0.0/16", api.EncapNever, false),
		ippool("a", "172.16.0.0/16", api.EncapAlways, false),
		ippool("v6", "fd00::/64", api.EncapAlways, false),
		nil,
	})
	var names []string
	for _, p := range got {
		names = append(names, p.Name)
	}
	if diff := cmp.Diff([]string{"a", "z"}, names); diff != "" {
		t.Errorf("VXLANPools (-want +got):\n%s", diff)
	}
}
