package vxlan

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/brindle-net/brindle/api"
)

// BenchmarkPlan: a 1,000-node cluster with two blocks per node, half the
// nodes in another subnet (CrossSubnet), planned from one node.
func BenchmarkPlan(b *testing.B) {
	const nodes = 1000
	in := Input{Hostname: "n0", Pools: []*api.IPPool{ippool("p", "10.0.0.0/8", api.EncapCrossSubnet, false)}}
	for i := range nodes {
		name := fmt.Sprintf("n%d", i)
		in.Nodes = append(in.Nodes, node(name, fmt.Sprintf("172.%d.%d.%d/24", 16+i%2, i/250, 1+i%250),
			fmt.Sprintf("10.%d.%d.1", i/256, i%256), MACFor(name).String()))
		for j := range 2 {
			in.Blocks = append(in.Blocks, Block{CIDR: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.%d/26", i/256, i%256, 64*j)), Owner: name})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		d := Plan(in)
		if len(d.Routes) != 2*(nodes-1) {
			b.Fatalf("%d routes", len(d.Routes))
		}
	}
}
