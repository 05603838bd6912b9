package desired

import (
	"slices"
)

// Clone returns a copy of the set. Its Members Map is shared: a Map is
// never modified (Set and Delete on a copy leave the original alone).
func (s IPSet) Clone() IPSet {
	return s
}

// Clone returns a deep copy of the policy.
func (p Policy) Clone() Policy {
	out := Policy{Inbound: cloneRules(p.Inbound), Outbound: cloneRules(p.Outbound)}
	if p.Order != nil {
		o := *p.Order
		out.Order = &o
	}
	return out
}

// Clone returns a deep copy of the profile.
func (p Profile) Clone() Profile {
	return Profile{Inbound: cloneRules(p.Inbound), Outbound: cloneRules(p.Outbound)}
}

func cloneRules(rs []Rule) []Rule {
	if rs == nil {
		return nil
	}
	out := make([]Rule, len(rs))
	for i, r := range rs {
		out[i] = r.Clone()
	}
	return out
}

// Clone returns a deep copy of the rule.
func (r Rule) Clone() Rule {
	c := r
	c.Protocol = clonePtr(r.Protocol)
	c.NotProtocol = clonePtr(r.NotProtocol)
	c.ICMP = cloneICMP(r.ICMP)
	c.NotICMP = cloneICMP(r.NotICMP)
	c.Src = r.Src.Clone()
	c.Dst = r.Dst.Clone()
	return c
}

// Clone returns a deep copy of the match.
func (m Match) Clone() Match {
	c := m
	c.IPSetIDs = slices.Clone(m.IPSetIDs)
	c.NotIPSetIDs = slices.Clone(m.NotIPSetIDs)
	c.Ports = slices.Clone(m.Ports)
	c.NamedPortIPSetIDs = slices.Clone(m.NamedPortIPSetIDs)
	c.NotPorts = slices.Clone(m.NotPorts)
	c.NotNamedPortIPSetIDs = slices.Clone(m.NotNamedPortIPSetIDs)
	return c
}

// Clone returns a deep copy of the endpoint.
func (e Endpoint) Clone() Endpoint {
	c := e
	c.IPs = slices.Clone(e.IPs)
	c.ProfileIDs = slices.Clone(e.ProfileIDs)
	if e.Tiers != nil {
		c.Tiers = make([]TierPolicies, len(e.Tiers))
		for i, t := range e.Tiers {
			t.IngressPolicies = slices.Clone(t.IngressPolicies)
			t.EgressPolicies = slices.Clone(t.EgressPolicies)
			c.Tiers[i] = t
		}
	}
	return c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func cloneICMP(m *ICMPMatch) *ICMPMatch {
	if m == nil {
		return nil
	}
	return &ICMPMatch{Type: m.Type, Code: clonePtr(m.Code)}
}
