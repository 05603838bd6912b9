package nft

import (
	"net/netip"

	"github.com/brindle-net/brindle/desired"
)

// Hand-built desired states shared by the golden and privileged tests
// (calc does not exist yet).

func u8(v uint8) *uint8 { return &v }

func addrSet(ips ...string) desired.IPSet {
	var ms []desired.Member
	for _, ip := range ips {
		ms = append(ms, desired.AddrMember(netip.MustParseAddr(ip)))
	}
	return desired.NewIPSet(desired.Addrs, ms...)
}

func netSet(cidrs ...string) desired.IPSet {
	var ms []desired.Member
	for _, c := range cidrs {
		ms = append(ms, desired.NetMember(netip.MustParsePrefix(c)))
	}
	return desired.NewIPSet(desired.Nets, ms...)
}

var allowAll = desired.Profile{
	Inbound:  []desired.Rule{{Action: desired.Allow}},
	Outbound: []desired.Rule{{Action: desired.Allow}},
}

func ep(id string, ips []netip.Addr, tiers []desired.TierPolicies, profiles ...string) desired.Endpoint {
	e := desired.Endpoint{WorkloadID: id, Tiers: tiers, ProfileIDs: profiles}
	for _, ip := range ips {
		e.IPs = append(e.IPs, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return e
}

// Selector IDs of the PCI example (the talk's policy): databases with
// compliance==PCI accept TCP 6379 from frontends with compliance==PCI.
const (
	selPCIFrontend = "s:role == 'frontend' && compliance == 'PCI'"
	selPCIDatabase = "s:role == 'database' && compliance == 'PCI'"
)

var pciPolicy = desired.PolicyID{Tier: "default", Name: "pci-db", Kind: "GlobalNetworkPolicy"}

// pciState: workloads "front" (PCI frontend), "other" (frontend, not PCI)
// and "db" (PCI database). The db is selected by the PCI policy, so it
// gets default deny plus the one allow rule; everything else is open via
// the kns profile.
func pciState(front, other, db netip.Addr, ifFront, ifOther, ifDB string) *desired.State {
	tiers := []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pciPolicy}}}
	return &desired.State{
		IPSets: desired.MapOf(map[string]desired.IPSet{
			selPCIFrontend: addrSet(front.String()),
		}),
		Policies: desired.MapOf(map[desired.PolicyID]desired.Policy{
			pciPolicy: {Inbound: []desired.Rule{{
				Action:   desired.Allow,
				Protocol: u8(desired.ProtoTCP),
				Src:      desired.Match{IPSetIDs: []string{selPCIFrontend}},
				Dst:      desired.Match{Ports: []desired.PortRange{{Min: 6379, Max: 6379}}},
			}}},
		}),
		Profiles: desired.MapOf(map[string]desired.Profile{"kns.default": allowAll}),
		Endpoints: desired.MapOf(map[string]desired.Endpoint{
			ifFront: ep("default/front", []netip.Addr{front}, nil, "kns.default"),
			ifOther: ep("default/other", []netip.Addr{other}, nil, "kns.default"),
			ifDB:    ep("default/db", []netip.Addr{db}, tiers, "kns.default"),
		}),
	}
}

// kitchenSink exercises every rule feature for the golden test.
func kitchenSink() *desired.State {
	adminPol := desired.PolicyID{Tier: "admin", Name: "quarantine", Kind: "GlobalNetworkPolicy"}
	logPol := desired.PolicyID{Tier: "default", Name: "log-all", Namespace: "prod", Kind: "NetworkPolicy"}
	webPol := desired.PolicyID{Tier: "default", Name: "web", Namespace: "prod", Kind: "NetworkPolicy"}
	code := uint8(0)
	nets := desired.CIDRSetID([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.168.0.0/24"), netip.MustParsePrefix("192.168.1.0/24")})
	return &desired.State{
		Config: desired.Config{InterfacePrefixes: []string{"cali", "tap"}, DefaultEndpointToHostAction: desired.EndpointToHostAccept},
		IPSets: desired.MapOf(map[string]desired.IPSet{
			"s:quarantined": addrSet("10.65.0.9", "fd00::9"),
			"s:web":         addrSet("10.65.0.2", "10.65.0.3"),
			nets:            netSet("10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/24", "192.168.1.0/24"),
			"c:all":         netSet("0.0.0.0/0"),
			"n:http":        desired.NewIPSet(desired.NamedPorts, desired.NamedPortMember(netip.MustParseAddr("10.65.0.2"), 6, 8080)),
		}),
		Policies: desired.MapOf(map[desired.PolicyID]desired.Policy{
			adminPol: {
				Inbound:  []desired.Rule{{Action: desired.Deny, Src: desired.Match{IPSetIDs: []string{"s:quarantined"}}}, {Action: desired.Pass}},
				Outbound: []desired.Rule{{Action: desired.Pass}},
			},
			logPol: {Inbound: []desired.Rule{{Action: desired.Log, Protocol: u8(desired.ProtoTCP)}}},
			webPol: {
				Inbound: []desired.Rule{
					{Action: desired.Allow, Protocol: u8(desired.ProtoTCP),
						Src: desired.Match{NetsIPSetID: nets, NotIPSetIDs: []string{"s:quarantined"}},
						Dst: desired.Match{Ports: []desired.PortRange{{Min: 80, Max: 80}, {Min: 8000, Max: 8099}}, NamedPortIPSetIDs: []string{"n:http"}}},
					{Action: desired.Allow, IPVersion: 4, Protocol: u8(desired.ProtoICMP), ICMP: &desired.ICMPMatch{Type: 8, Code: &code}},
					{Action: desired.Deny, Protocol: u8(desired.ProtoICMP), NotICMP: &desired.ICMPMatch{Type: 8}},
					{Action: desired.Allow, Protocol: u8(desired.ProtoSCTP), Dst: desired.Match{Ports: []desired.PortRange{{Min: 9000, Max: 9000}}}},
					{Action: desired.Allow, Protocol: u8(desired.ProtoUDP), Src: desired.Match{NotNetsIPSetID: "c:all", NotPorts: []desired.PortRange{{Min: 1, Max: 1023}}}},
					{Action: desired.Allow, Protocol: u8(desired.ProtoUDPLite), Src: desired.Match{NotPorts: []desired.PortRange{{Min: 53, Max: 53}, {Min: 123, Max: 123}}}},
					{Action: desired.Allow, NotProtocol: u8(desired.ProtoUDP)},
				},
				Outbound: []desired.Rule{{Action: desired.Allow, Dst: desired.Match{IPSetIDs: []string{"s:web"}}}},
			},
		}),
		Profiles: desired.MapOf(map[string]desired.Profile{
			"kns.prod":     allowAll,
			"ksa.prod.web": {},
		}),
		Endpoints: desired.MapOf(map[string]desired.Endpoint{
			"cali12345": ep("prod/web-1/eth0", []netip.Addr{netip.MustParseAddr("10.65.0.2")}, []desired.TierPolicies{
				{Name: "admin", DefaultAction: desired.Pass, IngressPolicies: []desired.PolicyID{adminPol}, EgressPolicies: []desired.PolicyID{adminPol}},
				{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{logPol, webPol}, EgressPolicies: []desired.PolicyID{webPol}},
			}, "kns.prod", "ksa.prod.web"),
			"tap0aa": ep("openstack/vm-1", []netip.Addr{netip.MustParseAddr("10.65.1.5")}, nil, "missing-profile", "kns.prod"),
		}),
	}
}
