package desired

import (
	"errors"
	"fmt"
	"maps"
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
// stable order.
func (s *State) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, p := range s.Config.InterfacePrefixes {
		if p == "" || len(p) > MaxInterfaceNameLen {
			add("config: interface prefix %q must be 1-%d bytes", p, MaxInterfaceNameLen)
		}
	}
	if s.Config.DefaultEndpointToHostAction > EndpointToHostReturn {
		add("config: bad DefaultEndpointToHostAction %d", s.Config.DefaultEndpointToHostAction)
	}
	for id, set := range s.IPSets {
		if id == "" {
			add("ip set with an empty ID")
		}
		for m := range set.Members {
			if err := checkMember(set.Type, m); err != nil {
				add("ip set %q: member %v: %w", id, m, err)
				break
			}
		}
	}
	for id, p := range s.Policies {
		s.checkRules(func() string { return "policy " + id.String() + " inbound" }, p.Inbound, add)
		s.checkRules(func() string { return "policy " + id.String() + " outbound" }, p.Outbound, add)
	}
	for name, p := range s.Profiles {
		s.checkRules(func() string { return "profile " + name + " inbound" }, p.Inbound, add)
		s.checkRules(func() string { return "profile " + name + " outbound" }, p.Outbound, add)
	}
	for iface, ep := range s.Endpoints {
		if iface == "" || len(iface) > MaxInterfaceNameLen || strings.ContainsRune(iface, 0) {
			add("endpoint %q: interface name must be 1-%d bytes", iface, MaxInterfaceNameLen)
		}
		for i, t := range ep.Tiers {
			if t.DefaultAction != Deny && t.DefaultAction != Pass {
				add("endpoint %q: tiers[%d] (%s): default action %v is not Deny or Pass", iface, i, t.Name, t.DefaultAction)
			}
			for _, dir := range []struct {
				name string
				ids  []PolicyID
			}{{"ingress", t.IngressPolicies}, {"egress", t.EgressPolicies}} {
				for j, pid := range dir.ids {
					if _, ok := s.Policies[pid]; !ok {
						add("endpoint %q: tiers[%d] (%s) %s policy [%d] %s does not exist", iface, i, t.Name, dir.name, j, pid)
					}
				}
			}
		}
	}
	// Maps iterate in random order: sort the messages so the error is
	// stable.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
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

// checkRules checks rules; where names them, lazily (it is only needed
// for an error).
func (s *State) checkRules(where func() string, rules []Rule, add func(string, ...any)) {
	for i, r := range rules {
		at := lazyString(func() string { return fmt.Sprintf("%s rule [%d]", where(), i) })
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
		for _, side := range [2]struct {
			name string
			m    *Match
		}{{"source", &r.Src}, {"destination", &r.Dst}} {
			ref := func(field, id string, ok func(IPSetType) bool) {
				set, found := s.IPSets[id]
				switch {
				case !found:
					add("%s: %s %s: ip set %q does not exist", at, side.name, field, id)
				case !ok(set.Type):
					add("%s: %s %s: ip set %q has type %v", at, side.name, field, id, set.Type)
				}
			}
			addrs := func(t IPSetType) bool { return t == Addrs || t == Nets }
			nets := func(t IPSetType) bool { return t == Nets }
			nps := func(t IPSetType) bool { return t == NamedPorts }
			for _, id := range side.m.IPSetIDs {
				ref("ipSetIDs", id, addrs)
			}
			for _, id := range side.m.NotIPSetIDs {
				ref("notIPSetIDs", id, addrs)
			}
			if side.m.NetsIPSetID != "" {
				ref("nets", side.m.NetsIPSetID, nets)
			}
			if side.m.NotNetsIPSetID != "" {
				ref("notNets", side.m.NotNetsIPSetID, nets)
			}
			for _, id := range side.m.NamedPortIPSetIDs {
				ref("namedPorts", id, nps)
			}
			for _, id := range side.m.NotNamedPortIPSetIDs {
				ref("notNamedPorts", id, nps)
			}
			for _, ports := range [][]PortRange{side.m.Ports, side.m.NotPorts} {
				for j, pr := range ports {
					if pr.Min > pr.Max {
						add("%s: %s port range [%d] %d:%d has min > max", at, side.name, j, pr.Min, pr.Max)
					}
				}
			}
		}
	}
}

// Equal reports whether two states are the same.
func (s *State) Equal(o *State) bool {
	return s.Config.Equal(o.Config) &&
		maps.EqualFunc(s.IPSets, o.IPSets, IPSet.Equal) &&
		maps.EqualFunc(s.Policies, o.Policies, Policy.Equal) &&
		maps.EqualFunc(s.Profiles, o.Profiles, Profile.Equal) &&
		maps.EqualFunc(s.Endpoints, o.Endpoints, Endpoint.Equal)
}

// lazyString defers building a string until it is formatted.
type lazyString func() string

func (l lazyString) String() string { return l() }
