package calc

import (
	"errors"
	"fmt"
	"slices"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/policy"
	"github.com/brindle-net/brindle/selector"
)

// refList collects the distinct sets a policy's or profile's rules use.
type refList struct {
	refs []setRef
	seen map[string]bool
}

func (l *refList) add(r setRef) string {
	if !l.seen[r.id] {
		if l.seen == nil {
			l.seen = map[string]bool{}
		}
		l.seen[r.id] = true
		l.refs = append(l.refs, r)
	}
	return r.id
}

// convertRules turns compiled rules (policy.CompileRule: scoped selectors,
// numeric protocols, port ranges and named ports) into desired rules, and
// records the IP sets they use. A rule with a Kubernetes services match is
// left out: calc has no service data, so, as in the reference evaluator, it
// never matches.
func convertRules(rs []*policy.Rule, refs *refList, where string) ([]desired.Rule, error) {
	var out []desired.Rule
	for _, r := range rs {
		if r.Source.Services != nil || r.Destination.Services != nil {
			continue
		}
		dr, err := convertRule(r, refs)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", where, r.Index, err)
		}
		out = append(out, dr)
	}
	return out, nil
}

func convertAction(a api.Action) desired.Action {
	switch a {
	case api.Allow:
		return desired.Allow
	case api.Deny:
		return desired.Deny
	case api.Log:
		return desired.Log
	}
	return desired.Pass
}

func convertRule(r *policy.Rule, refs *refList) (desired.Rule, error) {
	dr := desired.Rule{
		Action:      convertAction(r.Action),
		IPVersion:   uint8(r.IPVersion),
		Protocol:    r.Protocol,
		NotProtocol: r.NotProtocol,
		ICMP:        convertICMP(r.ICMP),
		NotICMP:     convertICMP(r.NotICMP),
		Src:         convertEntity(&r.Source, refs),
		Dst:         convertEntity(&r.Destination, refs),
	}
	// What desired.State.Validate would refuse; api validation refuses
	// these too, so only an unvalidated object gets here.
	if dr.HasPorts() && (dr.Protocol == nil || !desired.ProtocolHasPorts(*dr.Protocol)) {
		return dr, errors.New("ports need protocol TCP, UDP, SCTP or UDPLite")
	}
	if dr.ICMP != nil || dr.NotICMP != nil {
		switch {
		case dr.Protocol == nil || (*dr.Protocol != desired.ProtoICMP && *dr.Protocol != desired.ProtoICMPv6):
			return dr, errors.New("icmp matches need protocol ICMP or ICMPv6")
		case *dr.Protocol == desired.ProtoICMP && dr.IPVersion == 6, *dr.Protocol == desired.ProtoICMPv6 && dr.IPVersion == 4:
			return dr, fmt.Errorf("protocol %d does not fit ipVersion %d", *dr.Protocol, dr.IPVersion)
		}
	}
	return dr, nil
}

func convertICMP(m *policy.ICMPMatch) *desired.ICMPMatch {
	if m == nil {
		return nil
	}
	return &desired.ICMPMatch{Type: m.Type, Code: m.Code}
}

func convertPorts(rs []policy.PortRange) []desired.PortRange {
	var out []desired.PortRange
	for _, r := range rs {
		out = append(out, desired.PortRange{Min: r.Min, Max: r.Max})
	}
	return out
}

// convertEntity maps one side of a rule: the selector and the notSelector
// each to a selector set, nets and notNets each to a CIDR set, and each
// named port to the set of address+protocol+port of the endpoints that
// match the side's selector (all endpoints when it has none) and serve that
// port name — the same pairing the reference evaluator makes.
func convertEntity(e *policy.Entity, refs *refList) desired.Match {
	var m desired.Match
	if e.Selector != nil {
		m.IPSetIDs = []string{refs.add(setRef{id: e.Selector.UniqueID(), kind: refSelector, sel: e.Selector})}
	}
	if e.NotSelector != nil {
		m.NotIPSetIDs = []string{refs.add(setRef{id: e.NotSelector.UniqueID(), kind: refSelector, sel: e.NotSelector})}
	}
	if len(e.Nets) > 0 {
		m.NetsIPSetID = refs.add(setRef{id: desired.CIDRSetID(e.Nets), kind: refCIDRs, nets: e.Nets})
	}
	if len(e.NotNets) > 0 {
		m.NotNetsIPSetID = refs.add(setRef{id: desired.CIDRSetID(e.NotNets), kind: refCIDRs, nets: e.NotNets})
	}
	m.Ports = convertPorts(e.Ports)
	m.NotPorts = convertPorts(e.NotPorts)
	sel := e.Selector
	if sel == nil && (len(e.NamedPorts) > 0 || len(e.NotNamedPorts) > 0) {
		sel = selector.All()
	}
	named := func(names []string) []string {
		var ids []string
		for _, n := range names {
			id := refs.add(setRef{id: namedPortSetID(sel, n), kind: refNamedPort, sel: sel, port: n})
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	m.NamedPortIPSetIDs = named(e.NamedPorts)
	m.NotNamedPortIPSetIDs = named(e.NotNamedPorts)
	return m
}
