package routing

import (
	"net/netip"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/selector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func asn(n uint32) *api.ASNumber { a := api.ASNumber(n); return &a }

func boolp(b bool) *bool { return &b }

func cfg(name string, spec api.BGPConfigurationSpec) api.BGPConfiguration {
	return api.BGPConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func bgpPeer(name string, spec api.BGPPeerSpec) api.BGPPeer {
	return api.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func withAS(n api.Node, as uint32) api.Node {
	b := *n.Spec.BGP
	n.Spec.BGP = &b
	n.Spec.BGP.ASNumber = asn(as)
	return n
}

func withRR(n api.Node, id string) api.Node {
	b := *n.Spec.BGP
	n.Spec.BGP = &b
	n.Spec.BGP.RouteReflectorClusterID = id
	return n
}

var (
	nA = node("a", "10.0.0.1", map[string]string{"rack": "r1"})
	nB = node("b", "10.0.0.2", map[string]string{"rack": "r1"})
	nC = node("c", "10.0.0.10", map[string]string{"rack": "r2"})
	// nD has no BGP address: it never appears as a peer.
	nD = api.Node{ObjectMeta: metav1.ObjectMeta{Name: "d"}}
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func mesh(ip string, as uint32, passive bool, src string) Peer {
	return Peer{Name: "Mesh_" + underscored(addr(ip)), Address: addr(ip), ASNumber: as, Type: PeerMesh, Passive: passive, SourceAddress: addr(src)}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name string
		in   Inputs
		want Desired
	}{
		{
			name: "full mesh by default, higher string address dials",
			in:   Inputs{NodeName: "a", Nodes: []api.Node{nA, nB, nC, nD}, Blocks: pfxs("10.65.0.0/26")},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{
					mesh("10.0.0.2", 64512, true, "10.0.0.1"),
					// "10.0.0.10" > "10.0.0.1" as strings.
					mesh("10.0.0.10", 64512, true, "10.0.0.1"),
				},
				Prefixes:   pfxs("10.65.0.0/26"),
				Blackholes: pfxs("10.65.0.0/26"),
			},
		},
		{
			name: "mesh from the other side: string comparison, not numeric",
			in:   Inputs{NodeName: "b", Nodes: []api.Node{nA, nB, nC}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.2"), ListenPort: 179,
				Peers: []Peer{
					mesh("10.0.0.1", 64512, false, "10.0.0.2"),
					// "10.0.0.10" < "10.0.0.2" as strings: b dials c.
					mesh("10.0.0.10", 64512, false, "10.0.0.2"),
				},
			},
		},
		{
			name: "mesh off",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA, nB},
				Configs: []api.BGPConfiguration{cfg("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)})}},
			want: Desired{Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179},
		},
		{
			name: "AS precedence: Node, then node.<name> config, then default config",
			in: Inputs{NodeName: "a", Nodes: []api.Node{withAS(nA, 65001), nB, nC},
				Configs: []api.BGPConfiguration{
					cfg("default", api.BGPConfigurationSpec{ASNumber: asn(65100)}),
					cfg("node.b", api.BGPConfigurationSpec{ASNumber: asn(65200)}),
					cfg("node.a", api.BGPConfigurationSpec{ASNumber: asn(65300)}),
					cfg("other", api.BGPConfigurationSpec{ASNumber: asn(1)}),
				}},
			want: Desired{
				Enabled: true, ASNumber: 65001, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{
					mesh("10.0.0.2", 65200, true, "10.0.0.1"),
					mesh("10.0.0.10", 65100, true, "10.0.0.1"),
				},
			},
		},
		{
			name: "dotted AS and listen ports (node.<name> before default)",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA, nB},
				Configs: []api.BGPConfiguration{
					cfg("default", api.BGPConfigurationSpec{ASNumber: asn(1<<16 | 10), ListenPort: 1179}),
					cfg("node.b", api.BGPConfigurationSpec{ListenPort: 2179}),
				}},
			want: Desired{
				Enabled: true, ASNumber: 65546, RouterID: addr("10.0.0.1"), ListenPort: 1179,
				Peers: []Peer{{Name: "Mesh_10_0_0_2", Address: addr("10.0.0.2"), Port: 2179, ASNumber: 65546,
					Type: PeerMesh, Passive: true, SourceAddress: addr("10.0.0.1")}},
			},
		},
		{
			name: "mesh restart time",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA, nB},
				Configs: []api.BGPConfiguration{cfg("default", api.BGPConfigurationSpec{
					NodeMeshMaxRestartTime: &metav1.Duration{Duration: 30 * time.Second}})}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{{Name: "Mesh_10_0_0_2", Address: addr("10.0.0.2"), ASNumber: 64512,
					Type: PeerMesh, Passive: true, SourceAddress: addr("10.0.0.1"), RestartTime: 30 * time.Second}},
			},
		},
		{
			name: "global ToR peer, with the mesh",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA, nB},
				Peers: []api.BGPPeer{bgpPeer("tor", api.BGPPeerSpec{PeerIP: "10.0.0.254", ASNumber: 65000})}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{
					mesh("10.0.0.2", 64512, true, "10.0.0.1"),
					{Name: "Global_10_0_0_254", Address: addr("10.0.0.254"), ASNumber: 65000, Type: PeerGlobal, SourceAddress: addr("10.0.0.1")},
				},
			},
		},
		{
			name: "node-specific peer with port, options; another node's peer ignored",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA, nB},
				Configs: []api.BGPConfiguration{cfg("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)})},
				Peers: []api.BGPPeer{
					bgpPeer("mine", api.BGPPeerSpec{Node: "a", PeerIP: "192.0.2.1:1790", ASNumber: 65000,
						LocalASNumber: asn(64999), SourceAddress: "None", KeepaliveTime: &metav1.Duration{Duration: 10 * time.Second},
						MaxRestartTime: &metav1.Duration{Duration: 5 * time.Minute}, TTLSecurity: func() *uint8 { v := uint8(1); return &v }()}),
					bgpPeer("theirs", api.BGPPeerSpec{Node: "b", PeerIP: "192.0.2.2", ASNumber: 65000}),
				}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{{Name: "Node_192_0_2_1_port_1790", Address: addr("192.0.2.1"), Port: 1790, ASNumber: 65000,
					LocalASNumber: 64999, Type: PeerNode, KeepaliveTime: 10 * time.Second, RestartTime: 5 * time.Minute, TTLSecurity: 1}},
			},
		},
		{
			name: "nodeSelector picks the rack's ToR",
			in: Inputs{NodeName: "c", Nodes: []api.Node{nA, nB, nC},
				Configs: []api.BGPConfiguration{cfg("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)})},
				Peers: []api.BGPPeer{
					bgpPeer("tor-r1", api.BGPPeerSpec{NodeSelector: "rack == 'r1'", PeerIP: "10.0.1.254", ASNumber: 65001}),
					bgpPeer("tor-r2", api.BGPPeerSpec{NodeSelector: "rack == 'r2'", PeerIP: "10.0.2.254", ASNumber: 65002}),
				}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.10"), ListenPort: 179,
				Peers: []Peer{{Name: "Node_10_0_2_254", Address: addr("10.0.2.254"), ASNumber: 65002, Type: PeerNode, SourceAddress: addr("10.0.0.10")}},
			},
		},
		{
			name: "a global peer wins over a node-specific one to the same address",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA},
				Peers: []api.BGPPeer{
					bgpPeer("node", api.BGPPeerSpec{Node: "a", PeerIP: "192.0.2.1", ASNumber: 65001}),
					bgpPeer("global", api.BGPPeerSpec{PeerIP: "192.0.2.1", ASNumber: 65000}),
				}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{{Name: "Global_192_0_2_1", Address: addr("192.0.2.1"), ASNumber: 65000, Type: PeerGlobal, SourceAddress: addr("10.0.0.1")}},
			},
		},
		// Route reflector recipe (compat §7.4): c is the reflector, mesh off,
		// BGPPeer{nodeSelector: all(), peerSelector: rr == 'true'}.
		{
			name: "RR recipe: a client peers with the reflector",
			in:   rrInputs("a"),
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{{Name: "Node_10_0_0_10", Address: addr("10.0.0.10"), ASNumber: 64512, Type: PeerNode, SourceAddress: addr("10.0.0.1")}},
			},
		},
		{
			name: "RR recipe: the reflector peers back with every client (reverse peerings)",
			in:   rrInputs("c"),
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.10"), ListenPort: 179, ClusterID: "224.0.0.1",
				Peers: []Peer{
					{Name: "Node_10_0_0_1", Address: addr("10.0.0.1"), ASNumber: 64512, Type: PeerNode, RouteReflectorClient: true, SourceAddress: addr("10.0.0.10")},
					{Name: "Node_10_0_0_2", Address: addr("10.0.0.2"), ASNumber: 64512, Type: PeerNode, RouteReflectorClient: true, SourceAddress: addr("10.0.0.10")},
				},
			},
		},
		{
			name: "reflector skips the mesh and meshed nodes skip reflectors",
			in:   Inputs{NodeName: "a", Nodes: []api.Node{nA, nB, withRR(nC, "224.0.0.1")}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{mesh("10.0.0.2", 64512, true, "10.0.0.1")},
			},
		},
		{
			name: "a cluster ID that is not an IPv4 address is ignored",
			in:   Inputs{NodeName: "c", Nodes: []api.Node{nA, withRR(nC, "rr-1")}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.10"), ListenPort: 179,
				Peers:    []Peer{mesh("10.0.0.1", 64512, false, "10.0.0.10")},
				Problems: []string{`Node c: spec.bgp.routeReflectorClusterID "rr-1": want an IPv4 address such as 224.0.0.1; ignored`},
			},
		},
		{
			name: "reflector with mesh on has no mesh peers",
			in:   Inputs{NodeName: "c", Nodes: []api.Node{nA, nB, withRR(nC, "224.0.0.1")}},
			want: Desired{Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.10"), ListenPort: 179, ClusterID: "224.0.0.1"},
		},
		{
			name: "global peerSelector to nodes is passive toward higher addresses",
			in: Inputs{NodeName: "b", Nodes: []api.Node{nA, nB, nC},
				Configs: []api.BGPConfiguration{cfg("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)})},
				Peers:   []api.BGPPeer{bgpPeer("all", api.BGPPeerSpec{PeerSelector: "all()"})}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.2"), ListenPort: 179,
				Peers: []Peer{
					{Name: "Global_10_0_0_1", Address: addr("10.0.0.1"), ASNumber: 64512, Type: PeerGlobal, SourceAddress: addr("10.0.0.2")},
					{Name: "Global_10_0_0_10", Address: addr("10.0.0.10"), ASNumber: 64512, Type: PeerGlobal, SourceAddress: addr("10.0.0.2")},
				},
			},
		},
		{
			name: "peerIP naming a node takes its listen port; the named node peers back",
			in: Inputs{NodeName: "b", Nodes: []api.Node{nA, nB},
				Configs: []api.BGPConfiguration{
					cfg("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)}),
					cfg("node.b", api.BGPConfigurationSpec{ListenPort: 1179}),
				},
				Peers: []api.BGPPeer{bgpPeer("a-to-b", api.BGPPeerSpec{Node: "a", PeerIP: "10.0.0.2", ASNumber: 64512})}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.2"), ListenPort: 1179,
				Peers: []Peer{{Name: "Node_10_0_0_1", Address: addr("10.0.0.1"), ASNumber: 64512, Type: PeerNode, SourceAddress: addr("10.0.0.2")}},
			},
		},
		{
			name: "blocks, borrowed /32s, a /32 block gets no blackhole, borrowed inside own block is skipped",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA},
				Blocks:   pfxs("10.65.1.0/26", "10.65.0.0/26", "10.65.9.9/32"),
				Borrowed: []netip.Addr{addr("10.65.3.7"), addr("10.65.0.5"), addr("10.65.2.1"), addr("10.65.3.7")}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Prefixes:   pfxs("10.65.0.0/26", "10.65.1.0/26", "10.65.2.1/32", "10.65.3.7/32", "10.65.9.9/32"),
				Blackholes: pfxs("10.65.0.0/26", "10.65.1.0/26"),
			},
		},
		{
			name: "VXLAN pools (Always, CrossSubnet) are overlay pools; Never and a bad cidr are not",
			in: Inputs{NodeName: "a", Nodes: []api.Node{nA}, Blocks: pfxs("10.65.0.0/26"),
				Pools: []api.IPPool{
					pool("never", "10.70.0.0/16", api.EncapNever),
					pool("cross", "10.66.0.0/16", api.EncapCrossSubnet),
					pool("always", "10.65.0.0/16", api.EncapAlways),
					pool("bad", "10.67.0.0/33", api.EncapAlways),
				}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Prefixes:     pfxs("10.65.0.0/26"),
				Blackholes:   pfxs("10.65.0.0/26"),
				OverlayPools: pfxs("10.65.0.0/16", "10.66.0.0/16"),
				Problems:     []string{`IPPool bad: spec.cidr "10.67.0.0/33": netip.ParsePrefix("10.67.0.0/33"): prefix length out of range`},
			},
		},
		{
			name: "unknown node: BGP off",
			in:   Inputs{NodeName: "zz", Nodes: []api.Node{nA}},
			want: Desired{Problems: []string{"Node zz: not found; BGP is off"}},
		},
		{
			name: "node without an address: BGP off",
			in:   Inputs{NodeName: "d", Nodes: []api.Node{nA, nD}},
			want: Desired{Problems: []string{"Node d: spec.bgp.ipv4Address is not set; BGP is off"}},
		},
		{
			name: "bad resources are skipped and reported",
			in: Inputs{NodeName: "a",
				Nodes:  []api.Node{nA, node("bad", "10.0.0.x", nil), node("v6", "fd00::1", nil)},
				Blocks: pfxs("fd00:65::/122"),
				Peers: []api.BGPPeer{
					bgpPeer("badip", api.BGPPeerSpec{PeerIP: "10.0.0.300", ASNumber: 1}),
					bgpPeer("badport", api.BGPPeerSpec{PeerIP: "10.0.0.3:99999", ASNumber: 1}),
					bgpPeer("noas", api.BGPPeerSpec{PeerIP: "10.0.0.3"}),
					bgpPeer("badsel", api.BGPPeerSpec{NodeSelector: "rack ==", PeerIP: "10.0.0.4", ASNumber: 1}),
					bgpPeer("v6", api.BGPPeerSpec{PeerIP: "fd00::9", ASNumber: 1}),
					bgpPeer("pw", api.BGPPeerSpec{PeerIP: "10.0.0.5", ASNumber: 1, Password: &api.BGPPassword{}, Filters: []string{"f"}}),
				}},
			want: Desired{
				Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"), ListenPort: 179,
				Peers: []Peer{{Name: "Global_10_0_0_5", Address: addr("10.0.0.5"), ASNumber: 1, Type: PeerGlobal, SourceAddress: addr("10.0.0.1")}},
				Problems: []string{
					`BGPPeer badip: spec.peerIP: "10.0.0.300" is not an IP or IP:port`,
					`BGPPeer badport: spec.peerIP: "10.0.0.3:99999": port "99999" is not a number from 1 to 65535`,
					`BGPPeer badsel: spec.nodeSelector: ` + selectorErr(t, "rack =="),
					`BGPPeer noas: spec.asNumber is required with spec.peerIP`,
					`BGPPeer pw: spec.filters is not supported yet; ignored`,
					`BGPPeer pw: spec.password is not supported yet; the session runs without one`,
					`BGPPeer v6: spec.peerIP fd00::9: IPv6 peering is not supported yet`,
					`Node bad: spec.bgp.ipv4Address: "10.0.0.x/24" is not an address or address/length`,
					`Node v6: spec.bgp.ipv4Address: "fd00::1/24" is not IPv4`,
					`block fd00:65::/122: IPv6 is not advertised yet`,
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmpNetip); d != "" {
				t.Errorf("Plan (-want +got)\n%s", d)
			}
			again, _ := Plan(tt.in)
			if d := cmp.Diff(got, again, cmpNetip); d != "" {
				t.Errorf("Plan is not deterministic\n%s", d)
			}
		})
	}
}

func pool(name, cidr, vxlan string) api.IPPool {
	return api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: api.IPPoolSpec{CIDR: cidr, VXLANMode: vxlan}}
}

func selectorErr(t *testing.T, s string) string {
	t.Helper()
	_, err := selectorParse(s)
	if err == nil {
		t.Fatalf("selector %q parsed", s)
	}
	return err.Error()
}

func rrInputs(local string) Inputs {
	rr := withRR(nC, "224.0.0.1")
	rr.Labels = map[string]string{"rr": "true"}
	return Inputs{
		NodeName: local,
		Nodes:    []api.Node{nA, nB, rr},
		Configs:  []api.BGPConfiguration{cfg("default", api.BGPConfigurationSpec{NodeToNodeMeshEnabled: boolp(false)})},
		Peers:    []api.BGPPeer{bgpPeer("to-rr", api.BGPPeerSpec{NodeSelector: "all()", PeerSelector: "rr == 'true'"})},
	}
}

func TestPlanErrors(t *testing.T) {
	tests := []struct {
		in   Inputs
		want string
	}{
		{Inputs{}, "routing plan: NodeName is empty"},
		{Inputs{NodeName: "a", Blocks: []netip.Prefix{{}}}, "routing plan: Blocks[0] is not a valid prefix"},
		{Inputs{NodeName: "a", Blocks: pfxs("10.0.0.0/26", "10.0.0.1/26")}, "routing plan: Blocks[1] 10.0.0.1/26 has host bits set (want 10.0.0.0/26)"},
		{Inputs{NodeName: "a", Borrowed: []netip.Addr{{}}}, "routing plan: Borrowed[0] is not a valid address"},
	}
	for _, tt := range tests {
		_, err := Plan(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Plan(%+v) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestDesiredValidate(t *testing.T) {
	ok := Desired{Enabled: true, ASNumber: 64512, RouterID: addr("10.0.0.1"),
		Peers: []Peer{{Name: "p", Address: addr("10.0.0.2"), ASNumber: 1}}}
	tests := []struct {
		mut  func(*Desired)
		want string
	}{
		{func(d *Desired) {}, ""},
		{func(d *Desired) { *d = Desired{} }, ""},
		{func(d *Desired) { d.RouterID = addr("fd00::1") }, "desired: RouterID fd00::1 is not IPv4"},
		{func(d *Desired) { d.ASNumber = 0 }, "desired: ASNumber is 0"},
		{func(d *Desired) { d.Peers = append(d.Peers, d.Peers[0]) }, "desired: Peers[1] p: address 10.0.0.2 is listed twice"},
		{func(d *Desired) { d.Peers[0].ASNumber = 0 }, "desired: Peers[0] p: ASNumber is 0"},
		{func(d *Desired) { d.Peers[0].RestartTime = time.Hour * 2 }, "desired: Peers[0] p: RestartTime 2h0m0s: want 0 to 4095s"},
		{func(d *Desired) { d.Prefixes = pfxs("10.0.0.1/24") }, "desired: Prefixes[0] 10.0.0.1/24: want a masked IPv4 prefix"},
		{func(d *Desired) { d.Blackholes = pfxs("fd00::/64") }, "desired: Blackholes[0] fd00::/64: want a masked IPv4 prefix"},
	}
	for i, tt := range tests {
		d := ok
		d.Peers = append([]Peer(nil), ok.Peers...)
		tt.mut(&d)
		err := d.validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%d: validate() = %q, want %q", i, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		c    Config
		want string
	}{
		{Config{}, ""},
		{Config{RouteProtocol: 3}, "routing config: RouteProtocol 3 is shared with other software (0-4); pick another"},
		{Config{RouteProtocol: 98}, "routing config: RouteProtocol 98 is the route dataplane's; pick another"},
		{Config{HoldTime: time.Second}, "routing config: HoldTime 1s: want 3s to 65535s (RFC 4271)"},
		{Config{RestartTime: 5000 * time.Second}, "routing config: RestartTime 1h23m20s: want 1s to 4095s (RFC 4724)"},
		{Config{ListenAddresses: []string{"x"}}, `routing config: ListenAddresses[0] "x" is not an IP`},
	}
	for _, tt := range tests {
		err := tt.c.WithDefaults().Validate()
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Validate(%+v) = %q, want %q", tt.c, got, tt.want)
		}
	}
}

func TestParseProcAddr(t *testing.T) {
	// /proc/net/tcp prints the address word in native byte order; on the
	// little-endian machines we run on, 10.123.0.11 is 0B007B0A.
	a, p, ok := parseProcAddr("0B007B0A:00B3")
	if !ok || a != addr("10.123.0.11") || p != 179 {
		t.Errorf("parseProcAddr = %v %d %v", a, p, ok)
	}
	if _, _, ok := parseProcAddr("zz"); ok {
		t.Error("parseProcAddr accepted garbage")
	}
}

func selectorParse(s string) (*selector.Selector, error) { return selector.Parse(s) }

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
