package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/selector"
)

// Evaluator evaluates packets against a Model and a World. Everything that
// does not depend on the packet is computed once by NewEvaluator: effective
// labels, a match bitmap per distinct selector over every endpoint and
// network set, the set of entities holding each endpoint address, and per
// endpoint and direction the tiers and policies that apply. Evaluating a
// packet then reads bitmaps and compares numbers; it never evaluates a
// selector.
type Evaluator struct {
	model *Model
	world *World
	// entities are the world's endpoints (indexes 0..nEP-1) then its
	// network sets.
	nEP int
	// sels are the distinct selectors by UniqueID; match[i] is the bitmap
	// of the entities selector i matches.
	selIndex map[string]int32
	match    [][]uint64
	// holders maps each endpoint address to the entities holding it
	// (endpoints with that address and network sets containing it).
	holders map[netip.Addr][]int32
	// workloadByIP maps an address to the first workload endpoint with it.
	workloadByIP map[netip.Addr]int32
	// apply[ep][dir] are the tiers that apply to the endpoint.
	apply [][2][]*tierProg
	// profiles[ep] are the endpoint's profiles, compiled.
	profiles [][]*profileProg
	// ids[ep] is the endpoint's ID.
	ids []string
}

type ruleProg struct {
	r                        *Rule
	srcSel, srcNot           int32
	dstSel, dstNot           int32
	srcServices, dstServices bool
}

type policyProg struct {
	p     *Policy
	rules [2][]ruleProg
}

type tierProg struct {
	t *Tier
	// pols are the tier's policies that select the endpoint for the
	// direction, in order; names their IDs.
	pols  []*policyProg
	names []string
}

type profileProg struct {
	name  string
	p     *Profile // nil when missing
	rules [2][]ruleProg
}

// NewEvaluator prepares m and w for evaluation.
func NewEvaluator(m *Model, w *World) *Evaluator {
	ev := &Evaluator{
		model: m, world: w, nEP: len(w.Endpoints),
		selIndex:     map[string]int32{},
		holders:      map[netip.Addr][]int32{},
		workloadByIP: map[netip.Addr]int32{},
	}
	for _, ep := range w.Endpoints {
		ev.ids = append(ev.ids, ep.ID())
	}
	// Effective labels.
	labels := make([]map[string]string, 0, len(w.Endpoints)+len(w.NetworkSets))
	for _, ep := range w.Endpoints {
		labels = append(labels, ev.effectiveLabels(ep.Labels, ep.Profiles))
	}
	for _, ns := range w.NetworkSets {
		labels = append(labels, ev.effectiveLabels(ns.Labels, ns.Profiles))
	}
	// Addresses.
	for i, ep := range w.Endpoints {
		for _, ip := range ep.IPs {
			if !slices.Contains(ev.holders[ip], int32(i)) {
				ev.holders[ip] = append(ev.holders[ip], int32(i))
			}
			if _, ok := ev.workloadByIP[ip]; !ok && ep.Kind == Workload {
				ev.workloadByIP[ip] = int32(i)
			}
		}
	}
	for ip := range ev.holders {
		ev.holders[ip] = append(ev.holders[ip], ev.netsetsHolding(ip)...)
	}
	index := func(s *selector.Selector) int32 {
		if s == nil {
			return -1
		}
		id := s.UniqueID()
		if i, ok := ev.selIndex[id]; ok {
			return i
		}
		bm := make([]uint64, (len(labels)+63)/64)
		for e, l := range labels {
			if s.Evaluate(l) {
				bm[e/64] |= 1 << (e % 64)
			}
		}
		i := int32(len(ev.match))
		ev.match = append(ev.match, bm)
		ev.selIndex[id] = i
		return i
	}
	compileRules := func(rs []*Rule) []ruleProg {
		out := make([]ruleProg, len(rs))
		for i, r := range rs {
			out[i] = ruleProg{r: r,
				srcSel: index(r.Source.Selector), srcNot: index(r.Source.NotSelector),
				dstSel: index(r.Destination.Selector), dstNot: index(r.Destination.NotSelector),
				srcServices: r.Source.Services != nil, dstServices: r.Destination.Services != nil}
		}
		return out
	}
	// Policies, and which endpoints they select.
	type polSel struct {
		pp  *policyProg
		sel int32
	}
	tierPols := make([][]polSel, len(m.Tiers))
	for ti, t := range m.Tiers {
		for _, p := range t.Policies {
			if p.PreDNAT || p.DoNotTrack {
				continue // host-endpoint only
			}
			pp := &policyProg{p: p}
			pp.rules[Ingress] = compileRules(p.Ingress)
			pp.rules[Egress] = compileRules(p.Egress)
			tierPols[ti] = append(tierPols[ti], polSel{pp, index(p.Selector)})
		}
	}
	ev.apply = make([][2][]*tierProg, len(w.Endpoints))
	for e := range w.Endpoints {
		for ti, t := range m.Tiers {
			for _, d := range [2]Direction{Ingress, Egress} {
				var tp *tierProg
				for _, ps := range tierPols[ti] {
					if !ps.pp.p.Applies(d) || !ev.bit(ps.sel, int32(e)) {
						continue
					}
					if tp == nil {
						tp = &tierProg{t: t}
					}
					tp.pols = append(tp.pols, ps.pp)
					tp.names = append(tp.names, ps.pp.p.Name)
				}
				if tp != nil {
					ev.apply[e][d] = append(ev.apply[e][d], tp)
				}
			}
		}
	}
	// Profiles.
	progs := map[string]*profileProg{}
	ev.profiles = make([][]*profileProg, len(w.Endpoints))
	for e, ep := range w.Endpoints {
		for _, name := range ep.Profiles {
			pp, ok := progs[name]
			if !ok {
				pp = &profileProg{name: name, p: m.Profiles[name]}
				if pp.p != nil {
					pp.rules[Ingress] = compileRules(pp.p.Ingress)
					pp.rules[Egress] = compileRules(pp.p.Egress)
				}
				progs[name] = pp
			}
			ev.profiles[e] = append(ev.profiles[e], pp)
		}
	}
	return ev
}

// effectiveLabels merges profiles' labelsToApply under an entity's own
// labels: the entity's value wins, then the earlier profile's.
func (ev *Evaluator) effectiveLabels(own map[string]string, profiles []string) map[string]string {
	out := make(map[string]string, len(own))
	for k, v := range own {
		out[k] = v
	}
	for _, name := range profiles {
		p := ev.model.Profiles[name]
		if p == nil {
			continue
		}
		for k, v := range p.LabelsToApply {
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}

func (ev *Evaluator) netsetsHolding(ip netip.Addr) []int32 {
	var out []int32
	for i, ns := range ev.world.NetworkSets {
		for _, n := range ns.Nets {
			if n.Contains(ip) {
				out = append(out, int32(ev.nEP+i))
				break
			}
		}
	}
	return out
}

// entitiesHolding returns the endpoints and network sets holding ip.
func (ev *Evaluator) entitiesHolding(ip netip.Addr) []int32 {
	if h, ok := ev.holders[ip]; ok {
		return h
	}
	return ev.netsetsHolding(ip)
}

func (ev *Evaluator) bit(sel, e int32) bool {
	return ev.match[sel][e/64]&(1<<(e%64)) != 0
}

func (ev *Evaluator) anyMatch(sel int32, ents []int32) bool {
	bm := ev.match[sel]
	for _, e := range ents {
		if bm[e/64]&(1<<(e%64)) != 0 {
			return true
		}
	}
	return false
}

// Evaluate returns the verdicts for p, with a walk-through of each side.
func (ev *Evaluator) Evaluate(p Packet) Result { return ev.evaluate(p, true) }

// Decide is Evaluate without the walk-through; it does not allocate.
func (ev *Evaluator) Decide(p Packet) Result { return ev.evaluate(p, false) }

func (ev *Evaluator) evaluate(p Packet, trace bool) Result {
	src := ev.entitiesHolding(p.Src)
	dst := ev.entitiesHolding(p.Dst)
	var r Result
	if e, ok := ev.workloadByIP[p.Src]; ok {
		r.Egress = ev.direction(e, Egress, &p, src, dst, trace)
	} else {
		r.Egress = Verdict{Allowed: true, Direction: Egress, Endpoint: p.Src.String(), Reason: NotOurs, RuleIndex: -1}
	}
	if e, ok := ev.workloadByIP[p.Dst]; ok {
		r.Ingress = ev.direction(e, Ingress, &p, src, dst, trace)
	} else {
		r.Ingress = Verdict{Allowed: true, Direction: Ingress, Endpoint: p.Dst.String(), Reason: NotOurs, RuleIndex: -1}
	}
	r.Allowed = r.Egress.Allowed && r.Ingress.Allowed
	return r
}

// EvaluateEndpoint returns the verdict of one endpoint (by index in the
// World) for one direction, whatever its addresses.
func (ev *Evaluator) EvaluateEndpoint(e int, d Direction, p Packet, trace bool) Verdict {
	return ev.direction(int32(e), d, &p, ev.entitiesHolding(p.Src), ev.entitiesHolding(p.Dst), trace)
}

func (ev *Evaluator) direction(e int32, d Direction, p *Packet, src, dst []int32, trace bool) Verdict {
	v := Verdict{Direction: d, Endpoint: ev.ids[e], RuleIndex: -1}
	tiers := ev.apply[e][d]
	v.AnyTierApplied = len(tiers) > 0
	if trace && len(tiers) == 0 {
		if trace {
			addStep(&v, Step{RuleIndex: -1, Event: "no policy selects the endpoint for " + d.String()})
		}
	}
tiers:
	for _, tp := range tiers {
		for _, pp := range tp.pols {
			for i := range pp.rules[d] {
				rp := &pp.rules[d][i]
				m := ev.mismatch(rp, p, src, dst)
				if m != matched {
					if trace {
						if trace {
							addStep(&v, Step{Tier: tp.t.Name, Policy: pp.p.ID(), RuleIndex: rp.r.Index, Event: fmt.Sprintf("%s: no match (%s)", rp.r.Action, m)})
						}
					}
					continue
				}
				switch rp.r.Action {
				case api.Allow, api.Deny:
					v.Allowed = rp.r.Action == api.Allow
					v.Reason = RuleDeny
					if v.Allowed {
						v.Reason = RuleAllow
					}
					v.Tier, v.Policy, v.PolicyNamespace, v.RuleIndex = tp.t.Name, pp.p.Name, pp.p.Namespace, rp.r.Index
					if trace {
						addStep(&v, Step{Tier: tp.t.Name, Policy: pp.p.ID(), RuleIndex: rp.r.Index, Event: string(rp.r.Action) + ": matched, decides"})
					}
					return v
				case api.Log:
					if trace {
						addStep(&v, Step{Tier: tp.t.Name, Policy: pp.p.ID(), RuleIndex: rp.r.Index, Event: "Log: matched, continue"})
					}
				case api.Pass:
					if trace {
						addStep(&v, Step{Tier: tp.t.Name, Policy: pp.p.ID(), RuleIndex: rp.r.Index, Event: "Pass: matched, leave the tier"})
					}
					continue tiers
				}
			}
			if trace && len(pp.rules[d]) == 0 {
				if trace {
					addStep(&v, Step{Tier: tp.t.Name, Policy: pp.p.ID(), RuleIndex: -1, Event: "selects the endpoint, has no " + d.String() + " rules"})
				}
			}
		}
		if tp.t.DefaultAction == api.Pass {
			if trace {
				addStep(&v, Step{Tier: tp.t.Name, RuleIndex: -1, Event: "end of tier: default action Pass, next tier"})
			}
			continue
		}
		v.Reason, v.Tier, v.Selecting = TierDefault, tp.t.Name, tp.names
		if trace {
			addStep(&v, Step{Tier: tp.t.Name, RuleIndex: -1, Event: "end of tier: default action Deny"})
		}
		return v
	}
	for _, pr := range ev.profiles[e] {
		if pr.p == nil {
			v.Reason, v.Profile = ProfileMissing, pr.name
			if trace {
				addStep(&v, Step{Profile: pr.name, RuleIndex: -1, Event: "profile does not exist: deny"})
			}
			return v
		}
	rules:
		for i := range pr.rules[d] {
			rp := &pr.rules[d][i]
			if m := ev.mismatch(rp, p, src, dst); m != matched {
				if trace {
					if trace {
						addStep(&v, Step{Profile: pr.name, RuleIndex: rp.r.Index, Event: fmt.Sprintf("%s: no match (%s)", rp.r.Action, m)})
					}
				}
				continue
			}
			switch rp.r.Action {
			case api.Allow, api.Deny:
				v.Allowed = rp.r.Action == api.Allow
				v.Reason = ProfileDeny
				if v.Allowed {
					v.Reason = ProfileAllow
				}
				v.Profile, v.RuleIndex = pr.name, rp.r.Index
				if trace {
					addStep(&v, Step{Profile: pr.name, RuleIndex: rp.r.Index, Event: string(rp.r.Action) + ": matched, decides"})
				}
				return v
			case api.Log:
				if trace {
					addStep(&v, Step{Profile: pr.name, RuleIndex: rp.r.Index, Event: "Log: matched, continue"})
				}
			case api.Pass:
				if trace {
					addStep(&v, Step{Profile: pr.name, RuleIndex: rp.r.Index, Event: "Pass: matched, next profile"})
				}
				break rules
			}
		}
	}
	v.Reason = NoProfileDrop
	if trace {
		addStep(&v, Step{RuleIndex: -1, Event: "no profile allowed: drop"})
	}
	return v
}

// miss names the first criterion of a rule that a packet failed; 0 is a
// match.
type miss uint8

const (
	matched miss = iota
	missIPVersion
	missProtocol
	missNotProtocol
	missICMP
	missNotICMP
	missServices
	missSelector
	missNotSelector
	missNets
	missNotNets
	missPorts
	missNotPorts
)

var missText = [...]string{"", "ipVersion", "protocol", "notProtocol", "icmp", "notICMP",
	"services (not modelled)", "selector", "notSelector", "nets", "notNets", "ports", "notPorts"}

// sideOffset is added to an entity miss of the destination side, so
// source and destination failures stay distinct without allocating.
const sideOffset = 16

func (m miss) String() string {
	if m >= sideOffset {
		return "destination " + missText[m-sideOffset]
	}
	if m >= missServices {
		return "source " + missText[m]
	}
	return missText[m]
}

// mismatch returns matched when the rule matches the packet, else the
// first criterion that failed.
func (ev *Evaluator) mismatch(rp *ruleProg, p *Packet, src, dst []int32) miss {
	r := rp.r
	if r.IPVersion != 0 {
		if (r.IPVersion == 4) != p.Src.Is4() {
			return missIPVersion
		}
	}
	if r.Protocol != nil && *r.Protocol != p.Protocol {
		return missProtocol
	}
	if r.NotProtocol != nil && *r.NotProtocol == p.Protocol {
		return missNotProtocol
	}
	isICMP := p.Protocol == 1 || p.Protocol == 58
	if r.ICMP != nil && (!isICMP || !icmpMatches(r.ICMP, p)) {
		return missICMP
	}
	if r.NotICMP != nil && isICMP && icmpMatches(r.NotICMP, p) {
		return missNotICMP
	}
	if m := ev.entityMismatch(&r.Source, rp.srcSel, rp.srcNot, rp.srcServices, p.Src, p.SrcPort, p.Protocol, src); m != matched {
		return m
	}
	if m := ev.entityMismatch(&r.Destination, rp.dstSel, rp.dstNot, rp.dstServices, p.Dst, p.DstPort, p.Protocol, dst); m != matched {
		return m + sideOffset
	}
	return matched
}

func icmpMatches(m *ICMPMatch, p *Packet) bool {
	return m.Type == p.ICMPType && (m.Code == nil || *m.Code == p.ICMPCode)
}

func (ev *Evaluator) entityMismatch(e *Entity, sel, not int32, services bool, ip netip.Addr, port uint16, proto uint8, ents []int32) miss {
	if services {
		return missServices
	}
	if sel >= 0 && !ev.anyMatch(sel, ents) {
		return missSelector
	}
	if not >= 0 && ev.anyMatch(not, ents) {
		return missNotSelector
	}
	if len(e.Nets) > 0 && !netsContain(e.Nets, ip) {
		return missNets
	}
	if len(e.NotNets) > 0 && netsContain(e.NotNets, ip) {
		return missNotNets
	}
	if e.HasPorts() && !portIn(e.Ports, port) && !ev.namedPortMatch(e.NamedPorts, sel, ents, proto, port) {
		return missPorts
	}
	if portIn(e.NotPorts, port) || ev.namedPortMatch(e.NotNamedPorts, sel, ents, proto, port) {
		return missNotPorts
	}
	return matched
}

func netsContain(nets []netip.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func portIn(rs []PortRange, port uint16) bool {
	for _, r := range rs {
		if port >= r.Min && port <= r.Max {
			return true
		}
	}
	return false
}

// namedPortMatch reports whether an endpoint holding the address (and
// matching the side's selector, if any) serves one of names on proto/port.
func (ev *Evaluator) namedPortMatch(names []string, sel int32, ents []int32, proto uint8, port uint16) bool {
	if len(names) == 0 {
		return false
	}
	for _, e := range ents {
		if int(e) >= ev.nEP || (sel >= 0 && !ev.bit(sel, e)) {
			continue
		}
		for _, np := range ev.world.Endpoints[e].Ports {
			if np.Protocol == proto && np.Port == port && slices.Contains(names, np.Name) {
				return true
			}
		}
	}
	return false
}

// EndpointIndex returns the index in the World of the endpoint with ID id
// ("ns/name" or a host endpoint's name), or -1.
func (ev *Evaluator) EndpointIndex(id string) int {
	for i, ep := range ev.world.Endpoints {
		if ep.ID() == id {
			return i
		}
	}
	return -1
}

func addStep(v *Verdict, s Step) { v.Trace = append(v.Trace, s) }
