package desired

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Protocol numbers the validation and the dataplanes need.
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoICMPv6  uint8 = 58
	ProtoSCTP    uint8 = 132
	ProtoUDPLite uint8 = 136
)

// ProtocolHasPorts reports whether p carries port numbers.
func ProtocolHasPorts(p uint8) bool {
	return p == ProtoTCP || p == ProtoUDP || p == ProtoSCTP || p == ProtoUDPLite
}

// MaxInterfaceNameLen is the kernel's interface name limit (IFNAMSIZ-1).
const MaxInterfaceNameLen = 15

// Validate checks the invariants listed in the package documentation and
// returns every violation found, each naming the object and field, in a
// stable order. It is the conjunction of ValidateConfig and the per-object
// checks below over every object.
func (s *State) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s.checkConfig(add)
	for id := range s.IPSets.All() {
		s.checkIPSet(id, add)
	}
	for id := range s.Policies.Keys() {
		s.checkPolicy(id, add)
	}
	for name := range s.Profiles.All() {
		s.checkProfile(name, add)
	}
	for iface := range s.Endpoints.All() {
		s.checkEndpoint(iface, add)
	}
	return joinSorted(errs)
}

// ValidateConfig checks the config.
func (s *State) ValidateConfig() error { return s.one(s.checkConfig) }

// ValidateIPSet checks one IP set's members.
func (s *State) ValidateIPSet(id string) error {
	return s.one(func(add func(string, ...any)) { s.checkIPSet(id, add) })
}

// ValidatePolicy checks one policy's rules, including that the IP sets
// they name exist with the right types.
func (s *State) ValidatePolicy(id PolicyID) error {
	return s.one(func(add func(string, ...any)) { s.checkPolicy(id, add) })
}

// ValidateProfile checks one profile's rules, like ValidatePolicy.
func (s *State) ValidateProfile(name string) error {
	return s.one(func(add func(string, ...any)) { s.checkProfile(name, add) })
}

// ValidateEndpoint checks one endpoint, including that the policies its
// tiers name exist.
func (s *State) ValidateEndpoint(iface string) error {
	return s.one(func(add func(string, ...any)) { s.checkEndpoint(iface, add) })
}

func (s *State) one(check func(add func(string, ...any))) error {
	var errs []error
	check(func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) })
	return joinSorted(errs)
}

// joinSorted joins errors in a stable order (maps iterate in random order).
func joinSorted(errs []error) error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

func (s *State) checkConfig(add func(string, ...any)) {
	for _, p := range s.Config.InterfacePrefixes {
		if p == "" || len(p) > MaxInterfaceNameLen {
			add("config: interface prefix %q must be 1-%d bytes", p, MaxInterfaceNameLen)
		}
	}
	if s.Config.DefaultEndpointToHostAction > EndpointToHostReturn {
		add("config: bad DefaultEndpointToHostAction %d", s.Config.DefaultEndpointToHostAction)
	}
}

// ValidateIPSetSince checks one IP set, given its previous version old,
// which was valid: when the type is the same only the members old lacks
// are checked (the cost of the change, not of the set); otherwise the
// whole set, as ValidateIPSet.
func (s *State) ValidateIPSetSince(id string, old IPSet) error {
	set, ok := s.IPSets.Get(id)
	if !ok || id == "" || set.Type != old.Type {
		return s.ValidateIPSet(id)
	}
	for m := range set.Members.Diff(old.Members, nil) {
		if !set.Members.Has(m) {
			continue // removed
		}
		if err := checkMember(set.Type, m); err != nil {
			return fmt.Errorf("ip set %q: member %v: %w", id, m, err)
		}
	}
	return nil
}

func (s *State) checkIPSet(id string, add func(string, ...any)) {
	set, ok := s.IPSets.Get(id)
	if !ok {
		add("ip set %q does not exist", id)
		return
	}
	if id == "" {
		add("ip set with an empty ID")
	}
	for m := range set.Members.Keys() {
		if err := checkMember(set.Type, m); err != nil {
			add("ip set %q: member %v: %w", id, m, err)
			return
		}
	}
}

func (s *State) checkPolicy(id PolicyID, add func(string, ...any)) {
	p, ok := s.Policies.Get(id)
	if !ok {
		add("policy %s does not exist", id)
		return
	}
	s.checkRules(&id, "", "inbound", p.Inbound, add)
	s.checkRules(&id, "", "outbound", p.Outbound, add)
}

func (s *State) checkProfile(name string, add func(string, ...any)) {
	p, ok := s.Profiles.Get(name)
	if !ok {
		add("profile %s does not exist", name)
		return
	}
	s.checkRules(nil, name, "inbound", p.Inbound, add)
	s.checkRules(nil, name, "outbound", p.Outbound, add)
}

func (s *State) checkEndpoint(iface string, add func(string, ...any)) {
	ep, ok := s.Endpoints.Get(iface)
	if !ok {
		add("endpoint %q does not exist", iface)
		return
	}
	if iface == "" || len(iface) > MaxInterfaceNameLen || strings.ContainsRune(iface, 0) {
		add("endpoint %q: interface name must be 1-%d bytes", iface, MaxInterfaceNameLen)
	}
	for i, t := range ep.Tiers {
		if t.DefaultAction != Deny && t.DefaultAction != Pass {
			add("endpoint %q: tiers[%d] (%s): default action %v is not Deny or Pass", iface, i, t.Name, t.DefaultAction)
		}
		for j, pid := range t.IngressPolicies {
			if !s.Policies.Has(pid) {
				add("endpoint %q: tiers[%d] (%s) ingress policy [%d] %s does not exist", iface, i, t.Name, j, pid)
			}
		}
		for j, pid := range t.EgressPolicies {
			if !s.Policies.Has(pid) {
				add("endpoint %q: tiers[%d] (%s) egress policy [%d] %s does not exist", iface, i, t.Name, j, pid)
			}
		}
	}
}

func checkMember(t IPSetType, m Member) error {
	if !m.Prefix.IsValid() {
		return errors.New("invalid prefix")
	}
	if m.Prefix != m.Prefix.Masked() {
		return errors.New("prefix is not masked")
	}
	full := m.Prefix.Bits() == m.Prefix.Addr().BitLen()
	switch t {
	case Addrs:
		if !full || m.Protocol != 0 || m.Port != 0 {
			return errors.New("an addrs set holds single addresses only")
		}
	case Nets:
		if m.Protocol != 0 || m.Port != 0 {
			return errors.New("a nets set holds CIDRs only")
		}
	case NamedPorts:
		if !full || m.Protocol == 0 {
			return errors.New("a named-ports set holds address+protocol+port")
		}
	default:
		return fmt.Errorf("unknown set type %d", t)
	}
	return nil
}

// rulePos names a rule for an error message; it is formatted only when
// there is an error.
type rulePos struct {
	policy       *PolicyID // nil for a profile
	profile, dir string
	i            int
}

func (p rulePos) String() string {
	if p.policy != nil {
		return fmt.Sprintf("policy %s %s rule [%d]", p.policy, p.dir, p.i)
	}
	return fmt.Sprintf("profile %s %s rule [%d]", p.profile, p.dir, p.i)
}

// setKinds are the set types a reference accepts.
type setKinds uint8

const (
	acceptAddrs setKinds = 1 << iota
	acceptNets
	acceptNamedPorts
)

func (k setKinds) accepts(t IPSetType) bool {
	switch t {
	case Addrs:
		return k&acceptAddrs != 0
	case Nets:
		return k&acceptNets != 0
	case NamedPorts:
		return k&acceptNamedPorts != 0
	}
	return false
}

func (s *State) checkRules(policy *PolicyID, profile, dir string, rules []Rule, add func(string, ...any)) {
	for i := range rules {
		r := &rules[i]
		at := rulePos{policy, profile, dir, i}
		switch r.Action {
		case Allow, Deny, Log, Pass:
		default:
			add("%s: bad action %v", at, r.Action)
		}
		if r.IPVersion != 0 && r.IPVersion != 4 && r.IPVersion != 6 {
			add("%s: ipVersion %d is not 0, 4 or 6", at, r.IPVersion)
		}
		if r.HasPorts() && (r.Protocol == nil || !ProtocolHasPorts(*r.Protocol)) {
			add("%s: ports need protocol TCP, UDP, SCTP or UDPLite", at)
		}
		if r.ICMP != nil || r.NotICMP != nil {
			if r.Protocol == nil || (*r.Protocol != ProtoICMP && *r.Protocol != ProtoICMPv6) {
				add("%s: icmp matches need protocol ICMP or ICMPv6", at)
			} else if (*r.Protocol == ProtoICMP && r.IPVersion == 6) || (*r.Protocol == ProtoICMPv6 && r.IPVersion == 4) {
				add("%s: protocol %d does not fit ipVersion %d", at, *r.Protocol, r.IPVersion)
			}
		}
		s.checkMatch(at, "source", &r.Src, add)
		s.checkMatch(at, "destination", &r.Dst, add)
	}
}

func (s *State) checkMatch(at rulePos, side string, m *Match, add func(string, ...any)) {
	ref := func(field, id string, ok setKinds) {
		set, found := s.IPSets.Get(id)
		switch {
		case !found:
			add("%s: %s %s: ip set %q does not exist", at, side, field, id)
		case !ok.accepts(set.Type):
			add("%s: %s %s: ip set %q has type %v", at, side, field, id, set.Type)
		}
	}
	for _, id := range m.IPSetIDs {
		ref("ipSetIDs", id, acceptAddrs|acceptNets)
	}
	for _, id := range m.NotIPSetIDs {
		ref("notIPSetIDs", id, acceptAddrs|acceptNets)
	}
	if m.NetsIPSetID != "" {
		ref("nets", m.NetsIPSetID, acceptNets)
	}
	if m.NotNetsIPSetID != "" {
		ref("notNets", m.NotNetsIPSetID, acceptNets)
	}
	for _, id := range m.NamedPortIPSetIDs {
		ref("namedPorts", id, acceptNamedPorts)
	}
	for _, id := range m.NotNamedPortIPSetIDs {
		ref("notNamedPorts", id, acceptNamedPorts)
	}
	for j, pr := range m.Ports {
		if pr.Min > pr.Max {
			add("%s: %s port range [%d] %d:%d has min > max", at, side, j, pr.Min, pr.Max)
		}
	}
	for j, pr := range m.NotPorts {
		if pr.Min > pr.Max {
			add("%s: %s notPorts range [%d] %d:%d has min > max", at, side, j, pr.Min, pr.Max)
		}
	}
}

// Equal reports whether two states are the same.
func (s *State) Equal(o *State) bool {
	return s.Config.Equal(o.Config) &&
		s.IPSets.EqualFunc(o.IPSets, IPSet.Equal) &&
		s.Policies.EqualFunc(o.Policies, Policy.Equal) &&
		s.Profiles.EqualFunc(o.Profiles, Profile.Equal) &&
		s.Endpoints.EqualFunc(o.Endpoints, Endpoint.Equal)
}
