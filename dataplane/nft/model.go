package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

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
// chain's return ends the dispatch chain too), or "" for a return.
type elem struct {
	key, end []byte
	jump     string
}

func (e elem) mapKey() string { return string(e.key) + "\x00" + string(e.end) + "\x00" + e.jump }

// verdict is a verdict-map element's verdict as nft writes it: a goto,
// or a return when jump is empty.
func (e elem) verdict() string {
	if e.jump == "" {
		return "return"
	}
	return "goto " + e.jump
}

// hook is where a base chain attaches. Egress (from-workload) policy runs
// in one base chain at prerouting, which every packet from a workload
// passes whether it is forwarded or for the host; ingress and host
// processing are base chains at forward and input, after routing. An
// Allow is a plain accept, which ends only the base chain it is in, so a
// packet allowed out of one workload still meets the next base chain (the
// destination's ingress policy, or the workload-to-host action). One
// egress base chain (not one at forward and one at input) also halves the
// kernel's validation walk of the egress endpoint and policy chains, which
// it repeats from every base chain on each transaction that adds rules.
type hook uint8

const (
	hookNone             hook = iota
	hookPreroutingEgress      // prerouting, priority filter
	hookForwardIngress        // forward, priority filter + 1
	hookInputHost             // input, priority filter + 1
	// The classify table's base chains.
	hookPreroutingClassify // prerouting, priority filter - 1
	hookForwardClassify    // forward, priority filter
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

func buildSets(id string, set desired.IPSet) (v4, v6 *setSpec, counts famCounts) {
	for m := range set.Members.Keys() {
		counts.add(set.Type, m, 1)
	}
	fams, n4 := counts.fams(), counts.n4
	// A family of a Nets set whose members are all single addresses (a
	// selector's endpoints, nearly always) is a plain hash set
	// (kernelType): an interval set must be sorted and merged whole when a
	// member changes, and the kernel walks its whole tree at every commit
	// that touches it. An interval family is merged from its prefixes;
	// every other family has one key per member, each a slice of one
	// buffer per family.
	t4, t6 := kernelType(set.Type, fams, 4), kernelType(set.Type, fams, 6)
	keyLen := func(t desired.IPSetType, alen int) int {
		switch t {
		case desired.Nets:
			return 0 // intervals
		case desired.NamedPorts:
			return alen + 8
		}
		return alen
	}
	var p4, p6 []netip.Prefix
	e4, e6 := make([]elem, 0, n4), make([]elem, 0, set.Members.Len()-n4)
	b4 := make([]byte, 0, n4*keyLen(t4, 4))
	b6 := make([]byte, 0, (set.Members.Len()-n4)*keyLen(t6, 16))
	for m := range set.Members.Keys() {
		buf, es, ps, t := &b6, &e6, &p6, t6
		if m.Prefix.Addr().Is4() {
			buf, es, ps, t = &b4, &e4, &p4, t4
		}
		if t == desired.Nets {
			*ps = append(*ps, m.Prefix)
			continue
		}
		n := len(*buf)
		*buf = appendMemberKey(*buf, t, m)
		*es = append(*es, elem{key: (*buf)[n:len(*buf):len(*buf)]})
	}
	if t4 == desired.Nets {
		e4 = intervals(p4)
	}
	if t6 == desired.Nets {
		e6 = intervals(p6)
	}
	v4 = &setSpec{name: setName(id, t4, 4), kind: setKindFor(t4, 4), comment: id, elems: elemMap(e4)}
	v6 = &setSpec{name: setName(id, t6, 6), kind: setKindFor(t6, 6), comment: id, elems: elemMap(e6)}
	return v4, v6, counts
}

// famCounts counts a set's members per family, and those wider than one
// address of a Nets set, from which its family bits follow.
type famCounts struct{ n4, n6, wide4, wide6 int }

// add counts member m of a set of type t delta (1 or -1) times.
func (c *famCounts) add(t desired.IPSetType, m desired.Member, delta int) {
	is4 := m.Prefix.Addr().Is4()
	wide := t == desired.Nets && !m.Prefix.IsSingleIP()
	switch {
	case is4:
		c.n4 += delta
		if wide {
			c.wide4 += delta
		}
	default:
		c.n6 += delta
		if wide {
			c.wide6 += delta
		}
	}
}

// fams returns the family bits: fam4 and fam6 for a family with members,
// wide4 and wide6 for a Nets family with a member wider than one address.
func (c famCounts) fams() uint8 {
	var f uint8
	if c.n4 > 0 {
		f |= fam4
	}
	if c.n6 > 0 {
		f |= fam6
	}
	if c.wide4 > 0 {
		f |= wide4
	}
	if c.wide6 > 0 {
		f |= wide6
	}
	return f
}

// memberElem returns the kernel element of a member of a set of type t
// held in a kernel set of one address per element (not intervals: a Nets
// family with a wide member).
func memberElem(t desired.IPSetType, m desired.Member) elem {
	return elem{key: appendMemberKey(make([]byte, 0, 16+8), t, m)}
}

// appendMemberKey appends the key of member m of a set of type t (an
// address, and for a named-port set its protocol and port) to k.
func appendMemberKey(k []byte, t desired.IPSetType, m desired.Member) []byte {
	k = appendAddr(k, m.Prefix.Addr())
	if t == desired.NamedPorts {
		k = appendPortKey(k, m)
	}
	return k
}

// kernelType is the type of the kernel set that holds one family of a
// desired set of type t with family bits fams: a Nets set whose members
// of the family are all single addresses is held as an Addrs set.
func kernelType(t desired.IPSetType, fams uint8, family int) desired.IPSetType {
	wide := wide4
	if family == 6 {
		wide = wide6
	}
	if t == desired.Nets && fams&wide == 0 {
		return desired.Addrs
	}
	return t
}

// elemMap indexes elements by mapKey. A changed set is rebuilt whole, so
// this is sized up front and every key is a substring of one string: a
// few allocations per set, not several per element.
func elemMap(es []elem) map[string]elem {
	n := 0
	for _, e := range es {
		n += len(e.key) + len(e.end) + len(e.jump) + 2
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, e := range es {
		sb.Write(e.key)
		sb.WriteByte(0)
		sb.Write(e.end)
		sb.WriteByte(0)
		sb.WriteString(e.jump)
	}
	all := sb.String()
	m := make(map[string]elem, len(es))
	off := 0
	for _, e := range es {
		l := len(e.key) + len(e.end) + len(e.jump) + 2
		m[all[off:off+l]] = e
		off += l
	}
	return m
}

// appendPortKey appends the protocol and port fields of a named-port
// set's concatenated key (addr . proto . port, each field padded to a
// 32-bit register boundary) to the address k.
func appendPortKey(k []byte, m desired.Member) []byte {
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
	// Merge overlapping and adjacent intervals in place.
	merged := ivs[:1]
	for _, x := range ivs[1:] {
		cur := &merged[len(merged)-1]
		if next := cur.hi.Next(); !next.IsValid() || x.lo.Compare(next) <= 0 {
			if x.hi.Compare(cur.hi) > 0 {
				cur.hi = x.hi
			}
			continue
		}
		merged = append(merged, x)
	}
	// Every key and end is a slice of one buffer sized for the merged
	// intervals (one allocation, not two per interval).
	out := make([]elem, 0, len(merged))
	buf := make([]byte, 0, 2*merged[0].lo.BitLen()/8*len(merged))
	bytesOf := func(a netip.Addr) []byte {
		n := len(buf)
		buf = appendAddr(buf, a)
		return buf[n:len(buf):len(buf)]
	}
	for _, x := range merged {
		e := elem{key: bytesOf(x.lo)}
		if next := x.hi.Next(); next.IsValid() {
			e.end = bytesOf(next)
		}
		out = append(out, e)
	}
	return out
}

// appendAddr appends a's bytes as AsSlice has them: 4 for IPv4, 16
// otherwise.
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (b *builder) buildRules(s *desired.State, in, out []desired.Rule, inName, outName, what string, rank int, profile bool) *rulesEntry {
	e := &rulesEntry{
		in:   in,
		out:  out,
		refs: map[string]setRef{},
		uses: map[setUse]struct{}{},
	}
	c := compiler{b: b, s: s, e: e, profile: profile}
	for i, d := range []struct {
		rules      []desired.Rule
		name, what string
	}{{in, inName, what + " inbound"}, {out, outName, what + " outbound"}} {
		rs := c.rules(d.rules, d.what)
		// A policy's direction with no rules has no chain (a jump to an
		// empty chain would only return), and one whose rules come to a
		// single unconditional accept or drop ("egress: allow all") has
		// none either: the chains that would jump to it have the verdict
		// in their own rule (policyTarget). Every chain costs every
		// transaction, as the kernel walks all of a table's chains at
		// each commit, and most policies have rules one way only.
		switch {
		case profile:
		case len(d.rules) == 0:
			continue
		case len(rs) == 1 && len(rs[0].anon) == 0 && len(rs[0].exprs) == 1:
			if v, ok := rs[0].exprs[0].(*expr.Verdict); ok && (v.Kind == expr.VerdictAccept || v.Kind == expr.VerdictDrop) {
				e.inline[i] = inlineOf(v.Kind)
				e.keys[i] = d.name + e.inline[i].suffix()
				continue
			}
		}
		e.chains[i] = &chainSpec{name: d.name, rank: rank, rules: rs}
		e.keys[i] = d.name
	}
	return e
}

// inlineVerdict is the verdict of a policy's direction that has it in
// place of a chain.
type inlineVerdict uint8

const (
	notInline inlineVerdict = iota
	inlineAccept
	inlineDrop
)

// suffix marks a key or signature with the verdict ("" when not inline).
func (v inlineVerdict) suffix() string {
	if v == notInline {
		return ""
	}
	return "\x00inline" + strconv.Itoa(int(v))
}

func inlineOf(k expr.VerdictKind) inlineVerdict {
	if k == expr.VerdictAccept {
		return inlineAccept
	}
	return inlineDrop
}

// policyTarget is where a chain applying a policy in one direction sends
// the packet: a jump to the policy's chain, or its inline verdict.
type policyTarget struct {
	// key is the generic chains' item for it: the chain's name, with
	// the verdict when inline (so that a change between them is a new
	// item).
	key     string
	verdict expr.VerdictKind
	chain   string // "" when inline
}

// target returns e's target in one direction; false when it has no
// rules that way, so nothing to apply.
func (e *rulesEntry) target(ingress bool) (policyTarget, bool) {
	d := dirIndex(ingress)
	switch {
	case e.chains[d] != nil:
		return policyTarget{key: e.keys[d], verdict: expr.VerdictJump, chain: e.chains[d].name}, true
	case e.inline[d] == inlineAccept:
		return policyTarget{key: e.keys[d], verdict: expr.VerdictAccept}, true
	case e.inline[d] == inlineDrop:
		return policyTarget{key: e.keys[d], verdict: expr.VerdictDrop}, true
	}
	return policyTarget{}, false
}

// applies reports whether e has rules either way (a target).
func (e *rulesEntry) applies() bool {
	_, in := e.target(true)
	_, out := e.target(false)
	return in || out
}

// sig is what of the policy's direction decides the chains that apply
// it (class keys, tier index keys): its footprint, and its verdict when
// inline.
func (e *rulesEntry) sig(d int) string {
	return e.fp[d].sig + e.inline[d].suffix()
}

// compiler renders one policy's or profile's rules.
type compiler struct {
	b       *builder
	s       *desired.State
	e       *rulesEntry
	profile bool
}

// rules renders desired rules. One desired rule becomes one nft rule per
// address family it needs and per port alternative: a rule that names IP
// sets and has no IPVersion gets a v4 and a v6 variant, except that a
// variant is left out when a set the rule requires has no members of that
// family (it could never match); numeric ports and each named-port set
// are ORed, so each is its own rule.
func (c *compiler) rules(rules []desired.Rule, what string) []*ruleSpec {
	var out []*ruleSpec
	for i, r := range rules {
		comment := fmt.Sprintf("%s #%d", what, i)
		for _, fam := range families(r) {
			if !c.possible(fam, r.Src) || !c.possible(fam, r.Dst) {
				continue
			}
			for _, sa := range c.portAlts(fam, r.Src) {
				for _, da := range c.portAlts(fam, r.Dst) {
					out = append(out, c.rule(r, fam, sa, da, comment))
				}
			}
		}
	}
	return out
}

// famBit returns the family bit of fam (0 for family-agnostic).
func famBit(fam int) uint8 {
	switch fam {
	case 4:
		return fam4
	case 6:
		return fam6
	}
	return 0
}

// ref records a dependency on set id and reports whether it has members
// of the family.
func (c *compiler) ref(id string, fam int) bool {
	e := c.b.sets[id]
	fams := e.counts.fams()
	c.e.refs[id] = setRef{typ: e.set.Type, fams: fams}
	bit := famBit(fam)
	return bit == 0 || fams&bit != 0
}

// possible reports whether a side's required sets all have members of the
// family.
func (c *compiler) possible(fam int, m desired.Match) bool {
	ok := true
	for _, id := range m.IPSetIDs {
		ok = c.ref(id, fam) && ok
	}
	if m.NetsIPSetID != "" {
		ok = c.ref(m.NetsIPSetID, fam) && ok
	}
	return ok
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
// or one named-port set; the zero portAlt means "no port constraint".
type portAlt struct {
	numeric  bool
	namedSet string
}

func (c *compiler) portAlts(fam int, m desired.Match) []portAlt {
	if len(m.Ports) == 0 && len(m.NamedPortIPSetIDs) == 0 {
		return []portAlt{{}}
	}
	var alts []portAlt
	if len(m.Ports) > 0 {
		alts = append(alts, portAlt{numeric: true})
	}
	for _, id := range m.NamedPortIPSetIDs {
		if c.ref(id, fam) {
			alts = append(alts, portAlt{namedSet: id})
		}
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

func (c *compiler) rule(r desired.Rule, fam int, sa, da portAlt, comment string) *ruleSpec {
	var x rb
	x.nfproto(fam)
	if r.Protocol != nil {
		x.l4proto(*r.Protocol, false)
	}
	if r.NotProtocol != nil {
		x.l4proto(*r.NotProtocol, true)
	}
	name := func(id string) string {
		c.ref(id, fam)
		c.e.uses[setUse{id: id, v6: fam == 6}] = struct{}{}
		e := c.b.sets[id]
		return setName(id, kernelType(e.set.Type, e.counts.fams(), fam), fam)
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
		x.verdict(expr.VerdictAccept, "")
	case desired.Deny:
		x.verdict(expr.VerdictDrop, "")
	case desired.Log:
		x.log(c.b.cfg.LogPrefix)
	case desired.Pass:
		if !c.profile {
			x.markSet(c.b.cfg.PassMark)
		}
		x.verdict(expr.VerdictReturn, "")
	}
	return x.done(comment)
}

// endpointChain renders one endpoint's chain for one direction: the
// Calico evaluation order (compat §2.5). Allow is an accept inside the
// policy chain; Pass sets the pass mark and returns, and the mark makes
// the rest of the tier's policies and its default deny be skipped.
//
// The chain names no interface (its comments are generic), so every
// endpoint with the same tiers, policies and profiles renders the same
// rules: the chain is named by the class it becomes (class.go), and
// shared. A tier with enough policies is reached through a tier index
// (index.go); the index entries used are appended to *used.
func (b *builder) endpointChain(ep desired.Endpoint, have []bool, ingress bool, used *[]*indexEntry) *chainSpec {
	P := b.cfg.PassMark
	dir := "egress"
	if ingress {
		dir = "ingress"
	}
	c := &chainSpec{rank: 2}
	add := func(x *rb, comment string) { c.rules = append(c.rules, x.done(comment)) }
	var x rb
	first := true
	for _, t := range ep.Tiers {
		pols := t.Policies(ingress)
		if len(pols) == 0 {
			continue
		}
		if first {
			x = rb{}
			x.markClear(P)
			add(&x, dir+" policy")
			first = false
		}
		// The pass bit is clear at the start of the tier; only a policy
		// with a Pass rule can set it, so only the policies after one
		// (and the end of the tier) test it.
		tierPass := slices.ContainsFunc(pols, func(id desired.PolicyID) bool { return b.policies[id].fp[dirIndex(ingress)].pass })
		var ruleless []string // the tier's policies with no rules this way
		for _, pid := range pols {
			if _, ok := b.policies[pid].target(ingress); !ok {
				ruleless = append(ruleless, pid.String())
			}
		}
		if idx := b.tierIndex(pols, ingress, used); idx != "" {
			x = rb{}
			x.verdict(expr.VerdictJump, idx)
			add(&x, fmt.Sprintf("tier %s: %s, indexed by protocol and port", t.Name, policies(len(pols))))
		} else {
			passBefore := false
			for _, pid := range pols {
				x = rb{}
				if passBefore {
					x.markTest(P, true)
				}
				e := b.policies[pid]
				pt, ok := e.target(ingress)
				if !ok {
					continue // no rules this way
				}
				passBefore = passBefore || e.fp[dirIndex(ingress)].pass
				x.verdict(pt.verdict, pt.chain)
				add(&x, "policy "+pid.String())
			}
		}
		if t.DefaultAction == desired.Deny {
			x = rb{}
			if tierPass {
				x.markTest(P, true)
			}
			x.verdict(expr.VerdictDrop, "")
			comment := "end of tier " + t.Name + ": default deny"
			if len(ruleless) > 0 {
				// They have no chain; name them where they act.
				comment += "; no " + dir + " rules: " + strings.Join(ruleless, ", ")
			}
			add(&x, comment)
		}
		if tierPass {
			x = rb{}
			x.markClear(P)
			add(&x, "")
		}
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
	}
	x = rb{}
	x.verdict(expr.VerdictDrop, "")
	add(&x, dir+": no profile allowed")
	return c
}

// staticChains are the base chains and the dispatch chains.
func (b *builder) staticChains(cfg desired.Config) []*chainSpec {
	rule := func(c *chainSpec, comment string, f func(x *rb)) {
		var x rb
		f(&x)
		c.rules = append(c.rules, x.done(comment))
	}
	base := func(name string, h hook, in bool, target string) *chainSpec {
		c := &chainSpec{name: name, hook: h, rank: 0}
		for _, p := range cfg.Prefixes() {
			rule(c, "", func(x *rb) { x.ifname(in, p, true); x.verdict(expr.VerdictJump, target) })
		}
		return c
	}
	// IPv6 router and neighbour discovery (and MLD) between a workload
	// and its host is always allowed, before egress policy and the
	// workload-to-host action, as Felix does: without it a workload has no
	// IPv6 gateway.
	ndp := func(c *chainSpec) {
		for _, p := range cfg.Prefixes() {
			rule(c, "IPv6 router and neighbour discovery", func(x *rb) {
				x.ifname(true, p, true)
				x.l4proto(desired.ProtoICMPv6, false)
				x.icmpv6Types(130, 131, 132, 133, 135, 136)
				x.verdict(expr.VerdictAccept, "")
			})
		}
	}
	preEgress := &chainSpec{name: chainPreEgress, hook: hookPreroutingEgress, rank: 0}
	ndp(preEgress)
	for _, p := range cfg.Prefixes() {
		rule(preEgress, "", func(x *rb) { x.ifname(true, p, true); x.verdict(expr.VerdictJump, chainFromWLDisp) })
	}
	fwdIngress := base(chainFwdIngress, hookForwardIngress, false, chainToWLDisp)
	inHost := &chainSpec{name: chainInHost, hook: hookInputHost, rank: 0}
	ndp(inHost)
	for _, p := range cfg.Prefixes() {
		rule(inHost, "DefaultEndpointToHostAction", func(x *rb) {
			x.ifname(true, p, true)
			switch cfg.DefaultEndpointToHostAction {
			case desired.EndpointToHostAccept:
				x.verdict(expr.VerdictAccept, "")
			case desired.EndpointToHostReturn:
				x.verdict(expr.VerdictReturn, "")
			default:
				x.verdict(expr.VerdictDrop, "")
			}
		})
	}
	dispatch := func(name string, in bool, vmap string) *chainSpec {
		c := &chainSpec{name: name, rank: 1}
		rule(c, "", func(x *rb) {
			x.ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")
			x.verdict(expr.VerdictAccept, "")
		})
		rule(c, "", func(x *rb) {
			x.ctState(expr.CtStateBitINVALID, "invalid")
			x.verdict(expr.VerdictDrop, "")
		})
		rule(c, "", func(x *rb) { x.markVmap(b.cfg.ClassMask, vmap) })
		rule(c, "generic class", func(x *rb) {
			x.markInSet(b.cfg.ClassMask, 0, genericSet(!in))
			x.verdict(expr.VerdictGoto, genericChain(!in))
		})
		for _, p := range cfg.Prefixes() {
			rule(c, "unknown workload interface", func(x *rb) { x.ifname(in, p, true); x.verdict(expr.VerdictDrop, "") })
		}
		return c
	}
	// The classify table: before the policy table's base chains, write
	// the class of the packet's workload interface into the class bits
	// (clear them for an interface with our prefix and no endpoint, which
	// the dispatch then drops). Established and related packets skip it:
	// the dispatch accepts them before reading the class.
	classify := func(name string, h hook, in bool, vmap string) *chainSpec {
		c := &chainSpec{name: name, hook: h, rank: 0}
		rule(c, "", func(x *rb) {
			x.ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")
			x.verdict(expr.VerdictAccept, "")
		})
		rule(c, "", func(x *rb) { x.vmap(in, objName(vmap)) })
		for _, p := range cfg.Prefixes() {
			rule(c, "unknown workload interface: no class", func(x *rb) { x.ifname(in, p, true); x.markClear(b.cfg.ClassMask) })
		}
		return c
	}
	return []*chainSpec{preEgress, fwdIngress, inHost,
		dispatch(chainFromWLDisp, true, mapFromClass), dispatch(chainToWLDisp, false, mapToClass),
		classify(chainPreClassify, hookPreroutingClassify, true, mapFromWL),
		classify(chainFwdClassify, hookForwardClassify, false, mapToWL)}
}
