package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/nftables/expr"
)

// model is the shape of our table: what we want in the kernel, or what we
// read back from it.
type model struct {
	sets   map[string]*setSpec
	chains map[string]*chainSpec
}

// setSpec is one named set or verdict map.
type setSpec struct {
	name    string
	kind    setKind
	comment string
	// elems are keyed by elemKey.
	elems map[string]elem
}

// elem is a set element: a key, for interval sets the end of the interval
// (exclusive; nil when the interval runs to the top of the address space),
// and for verdict maps the chain it goes to (goto, so that the endpoint
// chain's return ends the dispatch chain too).
type elem struct {
	key, end []byte
	jump     string
}

func (e elem) mapKey() string { return string(e.key) + "\x00" + string(e.end) + "\x00" + e.jump }

// hook is where a base chain attaches.
type hook uint8

const (
	hookNone hook = iota
	hookForward
	hookInput
)

// chainSpec is one chain and its rules in order.
type chainSpec struct {
	name  string
	hook  hook
	rank  int // rendering order: base, dispatch, endpoint, policy, profile
	rules []*ruleSpec
}

func (c *chainSpec) sameRules(o *chainSpec) bool {
	return slices.EqualFunc(c.rules, o.rules, func(a, b *ruleSpec) bool { return a.id == b.id })
}

func (s *setSpec) sameElems(o *setSpec) bool {
	if len(s.elems) != len(o.elems) {
		return false
	}
	for k := range s.elems {
		if _, ok := o.elems[k]; !ok {
			return false
		}
	}
	return true
}

// builder turns desired states into models, reusing the chains and sets it
// built for objects that did not change since the previous state. It is
// owned by the Dataplane and not safe for concurrent use.
type builder struct {
	cfg      Config
	sets     map[string]*setEntry
	policies map[desired.PolicyID]*rulesEntry
	profiles map[string]*rulesEntry
	eps      map[string]*epEntry
	statics  *staticEntry
}

type setEntry struct {
	set   desired.IPSet
	specs [2]*setSpec // v4, v6
}

// rulesEntry caches a policy's or profile's two chains; refs records the
// types of the sets its rules name, since set names depend on them.
type rulesEntry struct {
	in, out []desired.Rule
	refs    map[string]desired.IPSetType
	chains  [2]*chainSpec // inbound, outbound
}

type epEntry struct {
	ep          desired.Endpoint
	haveProfile []bool
	chains      [2]*chainSpec // tw (ingress), fw (egress)
	vmap        [2]elem       // to-wl, from-wl
}

type staticEntry struct {
	cfg    desired.Config
	chains []*chainSpec
}

func newBuilder(cfg Config) *builder {
	return &builder{cfg: cfg}
}

// build returns the model for s. s must be valid (State.Validate).
func (b *builder) build(s *desired.State) *model {
	m := &model{sets: map[string]*setSpec{}, chains: map[string]*chainSpec{}}

	// IP sets.
	sets := make(map[string]*setEntry, len(s.IPSets))
	for id, set := range s.IPSets {
		e := b.sets[id]
		if e == nil || !e.set.Equal(set) {
			e = &setEntry{set: set.Clone()}
			e.specs[0], e.specs[1] = buildSets(id, set)
		}
		sets[id] = e
		m.sets[e.specs[0].name] = e.specs[0]
		m.sets[e.specs[1].name] = e.specs[1]
	}
	b.sets = sets

	// Policies and profiles.
	pols := make(map[desired.PolicyID]*rulesEntry, len(s.Policies))
	for id, p := range s.Policies {
		e := b.policies[id]
		if e == nil || !e.fresh(p.Inbound, p.Outbound, s) {
			what := "policy " + id.String()
			e = b.buildRules(s, p.Inbound, p.Outbound, policyChain(id, true), policyChain(id, false), what, 3)
		}
		pols[id] = e
		m.chains[e.chains[0].name] = e.chains[0]
		m.chains[e.chains[1].name] = e.chains[1]
	}
	b.policies = pols
	profs := make(map[string]*rulesEntry, len(s.Profiles))
	for name, p := range s.Profiles {
		e := b.profiles[name]
		if e == nil || !e.fresh(p.Inbound, p.Outbound, s) {
			e = b.buildRules(s, p.Inbound, p.Outbound, profileChain(name, true), profileChain(name, false), "profile "+name, 4)
		}
		profs[name] = e
		m.chains[e.chains[0].name] = e.chains[0]
		m.chains[e.chains[1].name] = e.chains[1]
	}
	b.profiles = profs

	// Endpoints and the verdict maps that dispatch to them.
	toWL := &setSpec{name: mapToWL, kind: kindVmap, comment: "ingress dispatch by oifname", elems: map[string]elem{}}
	fromWL := &setSpec{name: mapFromWL, kind: kindVmap, comment: "egress dispatch by iifname", elems: map[string]elem{}}
	m.sets[toWL.name], m.sets[fromWL.name] = toWL, fromWL
	eps := make(map[string]*epEntry, len(s.Endpoints))
	for iface, ep := range s.Endpoints {
		have := make([]bool, len(ep.ProfileIDs))
		for i, p := range ep.ProfileIDs {
			_, have[i] = s.Profiles[p]
		}
		e := b.eps[iface]
		if e == nil || !e.ep.Equal(ep) || !slices.Equal(e.haveProfile, have) {
			e = &epEntry{ep: ep.Clone(), haveProfile: have}
			e.chains[0] = b.endpointChain(iface, ep, have, true)
			e.chains[1] = b.endpointChain(iface, ep, have, false)
			e.vmap[0] = elem{key: ifnameKey(iface), jump: e.chains[0].name}
			e.vmap[1] = elem{key: ifnameKey(iface), jump: e.chains[1].name}
		}
		eps[iface] = e
		m.chains[e.chains[0].name] = e.chains[0]
		m.chains[e.chains[1].name] = e.chains[1]
		toWL.elems[e.vmap[0].mapKey()] = e.vmap[0]
		fromWL.elems[e.vmap[1].mapKey()] = e.vmap[1]
	}
	b.eps = eps

	// Base and dispatch chains.
	if b.statics == nil || !b.statics.cfg.Equal(s.Config) {
		b.statics = &staticEntry{cfg: s.Config, chains: b.staticChains(s.Config)}
	}
	for _, c := range b.statics.chains {
		m.chains[c.name] = c
	}
	return m
}

// fresh reports whether a cached entry still renders the given rules in
// state s.
func (e *rulesEntry) fresh(in, out []desired.Rule, s *desired.State) bool {
	if !slices.EqualFunc(e.in, in, desired.Rule.Equal) || !slices.EqualFunc(e.out, out, desired.Rule.Equal) {
		return false
	}
	for id, t := range e.refs {
		if s.IPSets[id].Type != t {
			return false
		}
	}
	return true
}

func buildSets(id string, set desired.IPSet) (v4, v6 *setSpec) {
	v4 = &setSpec{name: setName(id, set.Type, 4), kind: setKindFor(set.Type, 4), comment: id, elems: map[string]elem{}}
	v6 = &setSpec{name: setName(id, set.Type, 6), kind: setKindFor(set.Type, 6), comment: id, elems: map[string]elem{}}
	pick := func(m desired.Member) *setSpec {
		if m.Prefix.Addr().Is4() {
			return v4
		}
		return v6
	}
	switch set.Type {
	case desired.Nets:
		var p4, p6 []netip.Prefix
		for m := range set.Members {
			if m.Prefix.Addr().Is4() {
				p4 = append(p4, m.Prefix)
			} else {
				p6 = append(p6, m.Prefix)
			}
		}
		for _, e := range intervals(p4) {
			v4.elems[e.mapKey()] = e
		}
		for _, e := range intervals(p6) {
			v6.elems[e.mapKey()] = e
		}
	case desired.Addrs:
		for m := range set.Members {
			e := elem{key: m.Prefix.Addr().AsSlice()}
			pick(m).elems[e.mapKey()] = e
		}
	case desired.NamedPorts:
		for m := range set.Members {
			e := elem{key: namedPortKey(m)}
			pick(m).elems[e.mapKey()] = e
		}
	}
	return v4, v6
}

// namedPortKey is the concatenated key addr . proto . port, each field
// padded to a 32-bit register boundary.
func namedPortKey(m desired.Member) []byte {
	k := m.Prefix.Addr().AsSlice()
	k = append(k, m.Protocol, 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, m.Port)
	return append(k, 0, 0)
}

// intervals merges prefixes of one family into disjoint, non-adjacent
// intervals [start, end) as interval-set elements.
func intervals(ps []netip.Prefix) []elem {
	if len(ps) == 0 {
		return nil
	}
	type iv struct{ lo, hi netip.Addr } // inclusive
	ivs := make([]iv, len(ps))
	for i, p := range ps {
		p = p.Masked()
		ivs[i] = iv{p.Addr(), lastAddr(p)}
	}
	slices.SortFunc(ivs, func(a, b iv) int { return a.lo.Compare(b.lo) })
	var out []elem
	cur := ivs[0]
	flush := func() {
		e := elem{key: cur.lo.AsSlice()}
		if next := cur.hi.Next(); next.IsValid() {
			e.end = next.AsSlice()
		}
		out = append(out, e)
	}
	for _, x := range ivs[1:] {
		next := cur.hi.Next()
		if !next.IsValid() || x.lo.Compare(next) <= 0 {
			if x.hi.Compare(cur.hi) > 0 {
				cur.hi = x.hi
			}
			continue
		}
		flush()
		cur = x
	}
	flush()
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (b *builder) buildRules(s *desired.State, in, out []desired.Rule, inName, outName, what string, rank int) *rulesEntry {
	e := &rulesEntry{
		in:   desired.Policy{Inbound: in}.Clone().Inbound,
		out:  desired.Policy{Outbound: out}.Clone().Outbound,
		refs: map[string]desired.IPSetType{},
	}
	e.chains[0] = &chainSpec{name: inName, rank: rank, rules: b.compileRules(s, in, what+" inbound", e.refs)}
	e.chains[1] = &chainSpec{name: outName, rank: rank, rules: b.compileRules(s, out, what+" outbound", e.refs)}
	return e
}

// compileRules renders desired rules; one desired rule becomes one nft
// rule per address family it needs (when it names IP sets and has no
// IPVersion, a v4 and a v6 rule) and per port alternative (numeric ports
// and each named-port set are ORed, so each is its own rule).
func (b *builder) compileRules(s *desired.State, rules []desired.Rule, what string, refs map[string]desired.IPSetType) []*ruleSpec {
	var out []*ruleSpec
	for i, r := range rules {
		comment := fmt.Sprintf("%s #%d", what, i)
		for _, fam := range families(r) {
			for _, sa := range portAlts(r.Src) {
				for _, da := range portAlts(r.Dst) {
					out = append(out, b.compileRule(s, r, fam, sa, da, comment, refs))
				}
			}
		}
	}
	return out
}

func families(r desired.Rule) []int {
	if r.IPVersion != 0 {
		return []int{int(r.IPVersion)}
	}
	for _, m := range []desired.Match{r.Src, r.Dst} {
		if len(m.IPSetIDs)+len(m.NotIPSetIDs)+len(m.NamedPortIPSetIDs)+len(m.NotNamedPortIPSetIDs) > 0 ||
			m.NetsIPSetID != "" || m.NotNetsIPSetID != "" {
			return []int{4, 6}
		}
	}
	return []int{0}
}

// portAlt is one alternative of a side's ORed ports: the numeric ranges
// (namedSet == "") or one named-port set; the zero portAlt with numeric
// false means "no port constraint".
type portAlt struct {
	numeric  bool
	namedSet string
}

func portAlts(m desired.Match) []portAlt {
	var alts []portAlt
	if len(m.Ports) > 0 {
		alts = append(alts, portAlt{numeric: true})
	}
	for _, id := range m.NamedPortIPSetIDs {
		alts = append(alts, portAlt{namedSet: id})
	}
	if len(alts) == 0 {
		alts = []portAlt{{}}
	}
	return alts
}

func ranges(ps []desired.PortRange) []portRange {
	out := make([]portRange, len(ps))
	for i, p := range ps {
		out[i] = portRange{p.Min, p.Max}
	}
	return out
}

func (b *builder) compileRule(s *desired.State, r desired.Rule, fam int, sa, da portAlt, comment string, refs map[string]desired.IPSetType) *ruleSpec {
	var x rb
	x.nfproto(fam)
	if r.Protocol != nil {
		x.l4proto(*r.Protocol, false)
	}
	if r.NotProtocol != nil {
		x.l4proto(*r.NotProtocol, true)
	}
	name := func(id string) string {
		t := s.IPSets[id].Type
		refs[id] = t
		return setName(id, t, fam)
	}
	for _, side := range []struct {
		src bool
		m   desired.Match
		alt portAlt
	}{{true, r.Src, sa}, {false, r.Dst, da}} {
		m := side.m
		for _, id := range m.IPSetIDs {
			x.addrInSet(fam, side.src, name(id), false)
		}
		for _, id := range m.NotIPSetIDs {
			x.addrInSet(fam, side.src, name(id), true)
		}
		if m.NetsIPSetID != "" {
			x.addrInSet(fam, side.src, name(m.NetsIPSetID), false)
		}
		if m.NotNetsIPSetID != "" {
			x.addrInSet(fam, side.src, name(m.NotNetsIPSetID), true)
		}
		switch {
		case side.alt.numeric:
			x.ports(side.src, ranges(m.Ports), false)
		case side.alt.namedSet != "":
			x.namedPortInSet(fam, side.src, name(side.alt.namedSet), false)
		}
		if len(m.NotPorts) > 0 {
			x.ports(side.src, ranges(m.NotPorts), true)
		}
		for _, id := range m.NotNamedPortIPSetIDs {
			x.namedPortInSet(fam, side.src, name(id), true)
		}
	}
	v6 := r.Protocol != nil && *r.Protocol == desired.ProtoICMPv6
	if r.ICMP != nil {
		x.icmp(v6, r.ICMP.Type, r.ICMP.Code, false)
	}
	if r.NotICMP != nil {
		x.icmp(v6, r.NotICMP.Type, r.NotICMP.Code, true)
	}
	switch r.Action {
	case desired.Allow:
		x.markSet(b.cfg.AcceptMark)
		x.verdict(expr.VerdictReturn, "")
	case desired.Deny:
		x.verdict(expr.VerdictDrop, "")
	case desired.Log:
		x.log(b.cfg.LogPrefix)
	case desired.Pass:
		x.markSet(b.cfg.PassMark)
		x.verdict(expr.VerdictReturn, "")
	}
	return x.done(comment)
}

// endpointChain renders one endpoint's chain for one direction: the
// Calico evaluation order (compat §2.5) with the accept and pass marks.
func (b *builder) endpointChain(iface string, ep desired.Endpoint, have []bool, ingress bool) *chainSpec {
	A, P := b.cfg.AcceptMark, b.cfg.PassMark
	dir := "egress"
	if ingress {
		dir = "ingress"
	}
	c := &chainSpec{name: endpointChain(iface, ingress), rank: 2}
	add := func(x *rb, comment string) { c.rules = append(c.rules, x.done(comment)) }
	var x rb
	x.markClear(A | P)
	add(&x, fmt.Sprintf("%s %s of %s", dir, iface, ep.WorkloadID))
	for _, t := range ep.Tiers {
		pols := t.Policies(ingress)
		if len(pols) == 0 {
			continue
		}
		for j, pid := range pols {
			x = rb{}
			if j > 0 {
				x.markTest(P, true)
			}
			x.verdict(expr.VerdictJump, policyChain(pid, ingress))
			add(&x, "policy "+pid.String())
			x = rb{}
			x.markTest(A, false)
			x.verdict(expr.VerdictReturn, "")
			add(&x, "")
		}
		if t.DefaultAction == desired.Deny {
			x = rb{}
			x.markTest(P, true)
			x.verdict(expr.VerdictDrop, "")
			add(&x, "end of tier "+t.Name+": default deny")
		}
		x = rb{}
		x.markClear(P)
		add(&x, "")
	}
	for i, prof := range ep.ProfileIDs {
		x = rb{}
		if !have[i] {
			x.verdict(expr.VerdictDrop, "")
			add(&x, "profile "+prof+" missing: deny")
			return c
		}
		x.verdict(expr.VerdictJump, profileChain(prof, ingress))
		add(&x, "profile "+prof)
		x = rb{}
		x.markTest(A, false)
		x.verdict(expr.VerdictReturn, "")
		add(&x, "")
	}
	x = rb{}
	x.verdict(expr.VerdictDrop, "")
	add(&x, "no profile allowed")
	return c
}

// staticChains are the base chains, dispatch chains and workload-to-host
// chain.
func (b *builder) staticChains(cfg desired.Config) []*chainSpec {
	A, P := b.cfg.AcceptMark, b.cfg.PassMark
	established := func(c *chainSpec) {
		var x rb
		x.ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")
		x.verdict(expr.VerdictAccept, "")
		c.rules = append(c.rules, x.done(""))
		x = rb{}
		x.ctState(expr.CtStateBitINVALID, "invalid")
		x.verdict(expr.VerdictDrop, "")
		c.rules = append(c.rules, x.done(""))
	}
	rule := func(c *chainSpec, comment string, f func(x *rb)) {
		var x rb
		f(&x)
		c.rules = append(c.rules, x.done(comment))
	}
	fwd := &chainSpec{name: chainForward, hook: hookForward, rank: 0}
	for _, p := range cfg.Prefixes() {
		rule(fwd, "", func(x *rb) { x.ifname(true, p, true); x.verdict(expr.VerdictJump, chainFromWLDisp) })
	}
	for _, p := range cfg.Prefixes() {
		rule(fwd, "", func(x *rb) { x.ifname(false, p, true); x.verdict(expr.VerdictJump, chainToWLDisp) })
	}
	rule(fwd, "", func(x *rb) { x.markClear(A | P) })

	in := &chainSpec{name: chainInput, hook: hookInput, rank: 0}
	for _, p := range cfg.Prefixes() {
		rule(in, "", func(x *rb) { x.ifname(true, p, true); x.verdict(expr.VerdictGoto, chainWLToHost) })
	}

	from := &chainSpec{name: chainFromWLDisp, rank: 1}
	established(from)
	rule(from, "", func(x *rb) { x.vmap(true, mapFromWL) })
	for _, p := range cfg.Prefixes() {
		rule(from, "unknown workload interface", func(x *rb) { x.ifname(true, p, true); x.verdict(expr.VerdictDrop, "") })
	}
	to := &chainSpec{name: chainToWLDisp, rank: 1}
	established(to)
	rule(to, "", func(x *rb) { x.vmap(false, mapToWL) })
	for _, p := range cfg.Prefixes() {
		rule(to, "unknown workload interface", func(x *rb) { x.ifname(false, p, true); x.verdict(expr.VerdictDrop, "") })
	}

	wlHost := &chainSpec{name: chainWLToHost, rank: 1}
	rule(wlHost, "", func(x *rb) { x.verdict(expr.VerdictJump, chainFromWLDisp) })
	rule(wlHost, "", func(x *rb) { x.markClear(A | P) })
	rule(wlHost, "DefaultEndpointToHostAction", func(x *rb) {
		switch cfg.DefaultEndpointToHostAction {
		case desired.EndpointToHostAccept:
			x.verdict(expr.VerdictAccept, "")
		case desired.EndpointToHostReturn:
			x.verdict(expr.VerdictReturn, "")
		default:
			x.verdict(expr.VerdictDrop, "")
		}
	})
	return []*chainSpec{fwd, in, from, to, wlHost}
}
