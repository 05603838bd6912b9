package desired

import (
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// State is the whole desired policy dataplane of one host. Its
// collections are Maps, so that a producer can hand out a State with a few
// objects changed without copying every object of a collection.
type State struct {
	Config    Config
	IPSets    Map[string, IPSet]
	Policies  Map[PolicyID, Policy]
	Profiles  Map[string, Profile]
	Endpoints Map[string, Endpoint]

	// Gen and Delta are hints for a consumer that keeps what it built
	// from the state before; they are not part of the state's content
	// (Equal ignores them). Gen numbers this state among those its
	// producer handed out (0 for none; calc starts each instance at a
	// random number, so two producers' numbers do not meet). Delta, when
	// set, names at least every key whose value differs between the state
	// numbered Delta.Since and this one (calc also names a key whose new
	// value is equal but another object); a consumer whose last state was
	// another ignores it. A consumer trusts Delta: whoever derives a new
	// State from one that has them (s2 := *s, then changes) must clear
	// both.
	Gen   uint64
	Delta *Delta
}

// Delta lists the keys of each collection whose value was added, changed
// or removed since the state numbered Since.
type Delta struct {
	Since     uint64
	IPSets    []string
	Policies  []PolicyID
	Profiles  []string
	Endpoints []string
}

// Config is the part of the agent's configuration the dataplane needs.
type Config struct {
	// InterfacePrefixes are the prefixes of workload interface names
	// (default ["cali"]). Traffic on an interface with one of these
	// prefixes and no endpoint is dropped.
	InterfacePrefixes []string
	// DefaultEndpointToHostAction applies to workload→host traffic after
	// the workload's egress policy allowed it.
	DefaultEndpointToHostAction EndpointToHostAction
}

// DefaultInterfacePrefix is the default workload interface prefix.
const DefaultInterfacePrefix = "cali"

// Prefixes returns InterfacePrefixes, or the default when it is empty.
func (c Config) Prefixes() []string {
	if len(c.InterfacePrefixes) == 0 {
		return []string{DefaultInterfacePrefix}
	}
	return c.InterfacePrefixes
}

// Equal reports whether two configs are the same.
func (c Config) Equal(o Config) bool {
	return slices.Equal(c.InterfacePrefixes, o.InterfacePrefixes) &&
		c.DefaultEndpointToHostAction == o.DefaultEndpointToHostAction
}

// EndpointToHostAction is what happens to workload→host traffic that the
// workload's egress policy allowed.
type EndpointToHostAction uint8

// Endpoint-to-host actions. The zero value is Drop, Felix's default.
const (
	EndpointToHostDrop EndpointToHostAction = iota
	EndpointToHostAccept
	EndpointToHostReturn
)

func (a EndpointToHostAction) String() string {
	switch a {
	case EndpointToHostDrop:
		return "Drop"
	case EndpointToHostAccept:
		return "Accept"
	case EndpointToHostReturn:
		return "Return"
	}
	return "EndpointToHostAction(" + strconv.Itoa(int(a)) + ")"
}

// IPSetType is the kind of member an IP set holds.
type IPSetType uint8

// IP set types.
const (
	// Addrs sets hold single addresses (members are /32 or /128).
	Addrs IPSetType = iota + 1
	// Nets sets hold CIDRs (interval sets); a single address is a /32.
	Nets
	// NamedPorts sets hold address+protocol+port members.
	NamedPorts
)

func (t IPSetType) String() string {
	switch t {
	case Addrs:
		return "addrs"
	case Nets:
		return "nets"
	case NamedPorts:
		return "named-ports"
	}
	return "IPSetType(" + strconv.Itoa(int(t)) + ")"
}

// Member is one IP set member. Addrs members have a full-length Prefix;
// Nets members any masked Prefix; NamedPorts members a full-length Prefix
// plus Protocol and Port.
type Member struct {
	Prefix   netip.Prefix
	Protocol uint8
	Port     uint16
}

// AddrMember returns the member for one address.
func AddrMember(a netip.Addr) Member {
	return Member{Prefix: netip.PrefixFrom(a, a.BitLen())}
}

// NetMember returns the member for one CIDR (masked).
func NetMember(p netip.Prefix) Member { return Member{Prefix: p.Masked()} }

// NamedPortMember returns the member for an address, protocol and port.
func NamedPortMember(a netip.Addr, proto uint8, port uint16) Member {
	return Member{Prefix: netip.PrefixFrom(a, a.BitLen()), Protocol: proto, Port: port}
}

// IPSet is a named set of members.
type IPSet struct {
	Type    IPSetType
	Members Map[Member, struct{}]
}

// NewIPSet builds an IPSet from a list of members.
func NewIPSet(t IPSetType, members ...Member) IPSet {
	var e MapEdit[Member, struct{}]
	for _, x := range members {
		e.Set(x, struct{}{})
	}
	return IPSet{Type: t, Members: e.Map()}
}

// Equal reports whether two sets have the same type and members.
func (s IPSet) Equal(o IPSet) bool {
	return s.Type == o.Type && s.Members.EqualFunc(o.Members, func(struct{}, struct{}) bool { return true })
}

// SortedMembers returns the members in a stable order (by address, then
// prefix length, protocol, port).
func (s IPSet) SortedMembers() []Member {
	out := make([]Member, 0, s.Members.Len())
	for m := range s.Members.Keys() {
		out = append(out, m)
	}
	slices.SortFunc(out, CompareMembers)
	return out
}

// CompareMembers orders members by address, prefix length, protocol, port.
func CompareMembers(a, b Member) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	if c := a.Prefix.Bits() - b.Prefix.Bits(); c != 0 {
		return c
	}
	if c := int(a.Protocol) - int(b.Protocol); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}

// CIDRSetID returns the ID of the Nets set holding exactly the given CIDRs:
// "c:" plus a hash of the sorted, masked, deduplicated CIDRs. Equal lists
// in any order share one ID.
func CIDRSetID(cidrs []netip.Prefix) string {
	ps := make([]netip.Prefix, len(cidrs))
	for i, p := range cidrs {
		ps[i] = p.Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	ps = slices.Compact(ps)
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	sum := sha256.Sum224([]byte(b.String()))
	return "c:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// PolicyID identifies a policy. It is comparable.
type PolicyID struct {
	Tier      string
	Name      string
	Namespace string // empty for a global policy
	Kind      string // "NetworkPolicy" or "GlobalNetworkPolicy"
}

// String is "tier/namespace/name" or "tier/name", plus the kind when set.
func (id PolicyID) String() string {
	s := id.Tier + "/"
	if id.Namespace != "" {
		s += id.Namespace + "/"
	}
	s += id.Name
	if id.Kind != "" {
		s += " (" + id.Kind + ")"
	}
	return s
}

// Policy is an active policy's rules. Inbound rules apply to traffic to a
// selected endpoint (ingress), outbound to traffic from it (egress).
type Policy struct {
	Inbound  []Rule
	Outbound []Rule
	// Order is the policy's order within its tier (nil: after every
	// policy with one). Endpoints list their policies sorted by it, then
	// by name, namespace and kind; a dataplane may use it to lay out the
	// tier's policies in that order without an endpoint at hand.
	Order *float64
}

// CompareOrder compares two policy (or tier) orders; nil, meaning no
// order, sorts after every order.
func CompareOrder(a, b *float64) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return cmp.Compare(*a, *b)
}

// Equal reports whether two policies have the same rules and order.
func (p Policy) Equal(o Policy) bool {
	return rulesEqual(p.Inbound, o.Inbound) && rulesEqual(p.Outbound, o.Outbound) &&
		(p.Order == nil) == (o.Order == nil) && (p.Order == nil || *p.Order == *o.Order)
}

// Profile is an active profile's rules.
type Profile struct {
	Inbound  []Rule
	Outbound []Rule
}

// Equal reports whether two profiles have the same rules.
func (p Profile) Equal(o Profile) bool {
	return rulesEqual(p.Inbound, o.Inbound) && rulesEqual(p.Outbound, o.Outbound)
}

func rulesEqual(a, b []Rule) bool {
	return slices.EqualFunc(a, b, Rule.Equal)
}

// Action is what a rule does with a packet it matches.
type Action uint8

// Rule actions. Pass is Calico's "next-tier".
const (
	Allow Action = iota + 1
	Deny
	Log
	Pass
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "Allow"
	case Deny:
		return "Deny"
	case Log:
		return "Log"
	case Pass:
		return "Pass"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Rule is one policy or profile rule. Zero values and empty lists mean "no
// constraint". All criteria are ANDed.
type Rule struct {
	Action Action
	// IPVersion is 0 (both), 4 or 6.
	IPVersion   uint8
	Protocol    *uint8
	NotProtocol *uint8
	Src, Dst    Match
	ICMP        *ICMPMatch
	NotICMP     *ICMPMatch
}

// Equal reports whether two rules are the same.
func (r Rule) Equal(o Rule) bool {
	return r.Action == o.Action && r.IPVersion == o.IPVersion &&
		ptrEqual(r.Protocol, o.Protocol) && ptrEqual(r.NotProtocol, o.NotProtocol) &&
		r.Src.Equal(o.Src) && r.Dst.Equal(o.Dst) &&
		icmpEqual(r.ICMP, o.ICMP) && icmpEqual(r.NotICMP, o.NotICMP)
}

// HasPorts reports whether either side matches ports.
func (r Rule) HasPorts() bool {
	return r.Src.hasPorts() || r.Dst.hasPorts()
}

// Match is one side (source or destination) of a rule.
type Match struct {
	// IPSetIDs: the address must be in every one of these sets.
	IPSetIDs []string
	// NotIPSetIDs: the address must be in none of these sets.
	NotIPSetIDs []string
	// NetsIPSetID names a Nets set the address must be in ("" = none);
	// NotNetsIPSetID a Nets set it must not be in.
	NetsIPSetID    string
	NotNetsIPSetID string
	// Ports and NamedPortIPSetIDs are ORed (Calico): the packet matches
	// when its port is in one of the ranges, or its address+protocol+port
	// is in one of the named-port sets.
	Ports             []PortRange
	NamedPortIPSetIDs []string
	// NotPorts and NotNamedPortIPSetIDs: the port must be in none of the
	// ranges and the address+protocol+port in none of the sets.
	NotPorts             []PortRange
	NotNamedPortIPSetIDs []string
}

// Equal reports whether two matches are the same.
func (m Match) Equal(o Match) bool {
	return slices.Equal(m.IPSetIDs, o.IPSetIDs) && slices.Equal(m.NotIPSetIDs, o.NotIPSetIDs) &&
		m.NetsIPSetID == o.NetsIPSetID && m.NotNetsIPSetID == o.NotNetsIPSetID &&
		slices.Equal(m.Ports, o.Ports) && slices.Equal(m.NamedPortIPSetIDs, o.NamedPortIPSetIDs) &&
		slices.Equal(m.NotPorts, o.NotPorts) && slices.Equal(m.NotNamedPortIPSetIDs, o.NotNamedPortIPSetIDs)
}

func (m Match) hasPorts() bool {
	return len(m.Ports) > 0 || len(m.NamedPortIPSetIDs) > 0 || len(m.NotPorts) > 0 || len(m.NotNamedPortIPSetIDs) > 0
}

// PortRange is an inclusive range of ports; a single port has Min == Max.
type PortRange struct{ Min, Max uint16 }

// ICMPMatch matches an ICMP type and, when Code is set, a code.
type ICMPMatch struct {
	Type uint8
	Code *uint8
}

func icmpEqual(a, b *ICMPMatch) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Type == b.Type && ptrEqual(a.Code, b.Code)
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Endpoint is a local workload endpoint, keyed in State by its host-side
// interface name.
type Endpoint struct {
	// WorkloadID names the workload for humans (for example
	// "namespace/pod/eth0").
	WorkloadID string
	IPs        []netip.Prefix
	// Tiers in evaluation order; only tiers with a policy selecting the
	// endpoint in at least one direction. A tier with no policies for a
	// direction takes no part in that direction.
	Tiers []TierPolicies
	// ProfileIDs in evaluation order.
	ProfileIDs []string
}

// Equal reports whether two endpoints are the same.
func (e Endpoint) Equal(o Endpoint) bool {
	return e.WorkloadID == o.WorkloadID && slices.Equal(e.IPs, o.IPs) &&
		slices.EqualFunc(e.Tiers, o.Tiers, TierPolicies.Equal) &&
		slices.Equal(e.ProfileIDs, o.ProfileIDs)
}

// TierPolicies is one tier as it applies to one endpoint.
type TierPolicies struct {
	Name string
	// DefaultAction is Deny or Pass.
	DefaultAction   Action
	IngressPolicies []PolicyID
	EgressPolicies  []PolicyID
}

// Equal reports whether two tiers are the same.
func (t TierPolicies) Equal(o TierPolicies) bool {
	return t.Name == o.Name && t.DefaultAction == o.DefaultAction &&
		slices.Equal(t.IngressPolicies, o.IngressPolicies) &&
		slices.Equal(t.EgressPolicies, o.EgressPolicies)
}

// Policies returns the tier's policies for one direction (ingress when
// ingress is true).
func (t TierPolicies) Policies(ingress bool) []PolicyID {
	if ingress {
		return t.IngressPolicies
	}
	return t.EgressPolicies
}
