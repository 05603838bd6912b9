package calc

import (
	"fmt"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/desired"
)

// render prints a desired state as stable, reviewable text. IP sets are
// named by what they hold (describe maps an ID to that), so a reviewer
// never reads a hash.
func render(s *desired.State, describe func(id string) string) string {
	var b strings.Builder
	name := func(id string) string {
		if d := describe(id); d != "" {
			return "{" + d + "}"
		}
		return "{?" + id + "}"
	}
	fmt.Fprintf(&b, "config prefixes=%s endpoint-to-host=%v\n", strings.Join(s.Config.Prefixes(), ","), s.Config.DefaultEndpointToHostAction)
	for _, iface := range slices.Sorted(s.Endpoints.Keys()) {
		ep, _ := s.Endpoints.Get(iface)
		var ips []string
		for _, p := range ep.IPs {
			ips = append(ips, p.String())
		}
		fmt.Fprintf(&b, "endpoint %s %s %s\n", iface, ep.WorkloadID, strings.Join(ips, " "))
		for _, t := range ep.Tiers {
			fmt.Fprintf(&b, "  tier %s default=%v in=[%s] out=[%s]\n", t.Name, t.DefaultAction, policyIDs(t.IngressPolicies), policyIDs(t.EgressPolicies))
		}
		fmt.Fprintf(&b, "  profiles [%s]\n", strings.Join(ep.ProfileIDs, " "))
	}
	ids := slices.SortedFunc(s.Policies.Keys(), func(a, b desired.PolicyID) int { return strings.Compare(a.String(), b.String()) })
	for _, id := range ids {
		p, _ := s.Policies.Get(id)
		fmt.Fprintf(&b, "policy %s\n", id)
		renderRules(&b, "in ", p.Inbound, name)
		renderRules(&b, "out", p.Outbound, name)
	}
	for _, n := range slices.Sorted(s.Profiles.Keys()) {
		p, _ := s.Profiles.Get(n)
		fmt.Fprintf(&b, "profile %s\n", n)
		renderRules(&b, "in ", p.Inbound, name)
		renderRules(&b, "out", p.Outbound, name)
	}
	type named struct{ name, id string }
	var sets []named
	for id := range s.IPSets.All() {
		sets = append(sets, named{name(id), id})
	}
	slices.SortFunc(sets, func(a, b named) int { return strings.Compare(a.name+a.id, b.name+b.id) })
	for _, n := range sets {
		set, _ := s.IPSets.Get(n.id)
		var ms []string
		for _, m := range set.SortedMembers() {
			if set.Type == desired.NamedPorts {
				ms = append(ms, fmt.Sprintf("%s,%d:%d", m.Prefix.Addr(), m.Protocol, m.Port))
			} else {
				ms = append(ms, m.Prefix.String())
			}
		}
		fmt.Fprintf(&b, "ipset %s %v [%s]\n", n.name, set.Type, strings.Join(ms, " "))
	}
	return b.String()
}

func policyIDs(ids []desired.PolicyID) string {
	var out []string
	for _, id := range ids {
		out = append(out, id.String())
	}
	return strings.Join(out, ", ")
}

func renderRules(b *strings.Builder, dir string, rs []desired.Rule, name func(string) string) {
	for _, r := range rs {
		var f []string
		f = append(f, r.Action.String())
		if r.IPVersion != 0 {
			f = append(f, fmt.Sprintf("ipv%d", r.IPVersion))
		}
		if r.Protocol != nil {
			f = append(f, fmt.Sprintf("proto=%d", *r.Protocol))
		}
		if r.NotProtocol != nil {
			f = append(f, fmt.Sprintf("!proto=%d", *r.NotProtocol))
		}
		icmp := func(k string, m *desired.ICMPMatch) {
			if m == nil {
				return
			}
			s := fmt.Sprintf("%s=%d", k, m.Type)
			if m.Code != nil {
				s += fmt.Sprintf("/%d", *m.Code)
			}
			f = append(f, s)
		}
		icmp("icmp", r.ICMP)
		icmp("!icmp", r.NotICMP)
		f = append(f, renderMatch("src", r.Src, name)...)
		f = append(f, renderMatch("dst", r.Dst, name)...)
		fmt.Fprintf(b, "  %s %s\n", dir, strings.Join(f, " "))
	}
}

func renderMatch(side string, m desired.Match, name func(string) string) []string {
	var f []string
	sets := func(k string, ids []string) {
		if len(ids) == 0 {
			return
		}
		var ns []string
		for _, id := range ids {
			ns = append(ns, name(id))
		}
		f = append(f, side+"."+k+"="+strings.Join(ns, "|"))
	}
	ports := func(k string, ps []desired.PortRange) {
		if len(ps) == 0 {
			return
		}
		var s []string
		for _, p := range ps {
			if p.Min == p.Max {
				s = append(s, fmt.Sprint(p.Min))
			} else {
				s = append(s, fmt.Sprintf("%d-%d", p.Min, p.Max))
			}
		}
		f = append(f, side+"."+k+"="+strings.Join(s, ","))
	}
	sets("in", m.IPSetIDs)
	sets("!in", m.NotIPSetIDs)
	if m.NetsIPSetID != "" {
		sets("nets", []string{m.NetsIPSetID})
	}
	if m.NotNetsIPSetID != "" {
		sets("!nets", []string{m.NotNetsIPSetID})
	}
	ports("ports", m.Ports)
	sets("named", m.NamedPortIPSetIDs)
	ports("!ports", m.NotPorts)
	sets("!named", m.NotNamedPortIPSetIDs)
	return f
}
