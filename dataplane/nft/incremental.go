package nft

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/brindle-net/brindle/desired"
)

// builder keeps the model of the last desired state and updates it in
// place from the next one, rebuilding only the sets, policies, profiles
// and endpoints that changed, and recording what changed (the delta) so a
// transaction can be planned without walking the whole model. It is owned
// by the Dataplane and not safe for concurrent use.
//
// Neither a State's maps nor the values reachable from them may be
// modified after the State is passed to build: a caller with changes
// passes new maps (maps.Clone, then patch; calc.State does this).
// Unchanged objects are recognised by identity first, then by equality,
// and a collection whose map is the one the last build had is skipped
// without a look (a remote label change then costs the changed sets only,
// not a walk of 5,000 policies). A state whose Delta is relative to the
// last state built (calc.State gives one) has only the sets and policies
// it names looked at, unless a set changed kind or gained or lost its
// last member of a family: then every policy is checked.
type builder struct {
	cfg      Config
	m        *model
	sets     map[string]*setEntry
	policies map[desired.PolicyID]*rulesEntry
	profiles map[string]*rulesEntry
	eps      map[string]*epEntry
	indexes  map[string]*indexEntry // tier indexes by hash
	cls      classes
	statics  *staticEntry
	// refs counts the chains' uses of each kernel set; a set is in the
	// model while its count is positive.
	refs map[setUse]int
	gen  uint64
	// changed holds the IDs of the sets (re)built by the current build.
	changed map[string]bool
	// fpChanged holds the policies whose footprint (index.go) changed
	// in the current build: tier indexes over them are rebuilt.
	fpChanged map[desired.PolicyID]bool
	// dSets and dChains map each set and chain changed by the last build
	// to its value before that build (nil: it did not exist).
	dSets   map[string]*setSpec
	dChains map[string]*chainSpec
	// dElems journals the element changes of the sets changed in place
	// (the generic sets and verdict maps; setElemInPlace) by the last
	// build.
	dElems map[string]*elemJournal
	// scan is validate's pairing of a state's sets and policies with
	// their entries, reused by build for the same state so that each is
	// looked up once per Apply.
	scan scan
	// last holds the maps of the last state built (see collectionsOf),
	// lastGen its Gen: a state whose Delta is since lastGen names every
	// set and policy that can differ, and only those are looked at.
	last    collections
	lastGen uint64
	// lay is each direction's generic chain (generic.go; nil before the
	// first build); retained holds the policies gone from the state
	// that a generic chain still jumps to, orphanSets the sets kept only
	// for them.
	lay      [2]*genericLayout
	retained map[desired.PolicyID]*rulesEntry
	// oldestRetained caches when the first of them left (zero: recompute),
	// so that the agent's questions after every apply cost no walk.
	oldestRetained time.Time
	orphanSets     map[string]bool
	// unusedOrphans are orphan sets whose last use went (forgetOrphans).
	unusedOrphans []string
	// layDirty: a policy or profile is new to the table or a policy's
	// order changed (the generic chains are laid out anew);
	// layPending: the generic chains are empty until the first promote
	// (Settle).
	layDirty, layPending bool
	// forgot: a policy was dropped for good since the last trimClasses;
	// droppedTarget: a chain that a class's chain can jump to (any but
	// class and mark chains) was dropped since then.
	forgot, droppedTarget bool
	// setUsers indexes the policies by the sets their rules name, and
	// polIfaces the endpoints by the policies they list: validation
	// looks up the users of a removed set or policy instead of
	// checking every policy or endpoint.
	setUsers  map[string]map[desired.PolicyID]struct{}
	polIfaces map[desired.PolicyID]map[string]struct{}
}

// collections identifies a state's maps. Two states with the Same map
// for a collection have the same contents there (a desired.Map is never
// modified once built).
type collections struct {
	valid bool
	sets  desired.Map[string, desired.IPSet]
	pols  desired.Map[desired.PolicyID, desired.Policy]
	profs desired.Map[string, desired.Profile]
	eps   desired.Map[string, desired.Endpoint]
}

func collectionsOf(s *desired.State) collections {
	return collections{valid: true,
		sets:  s.IPSets,
		pols:  s.Policies,
		profs: s.Profiles,
		eps:   s.Endpoints,
	}
}

// same reports which collections of s are the last build's.
func (b *builder) same(s *desired.State) (sets, pols, profs, eps bool) {
	if !b.last.valid {
		return false, false, false, false
	}
	c := collectionsOf(s)
	return c.sets.Same(b.last.sets), c.pols.Same(b.last.pols), c.profs.Same(b.last.profs), c.eps.Same(b.last.eps)
}

type scan struct {
	state *desired.State
	sets  []setHit
	pols  []polHit
	// skipped: the sets or policies are the last build's and were not
	// paired.
	setsSkipped, polsSkipped bool
	// delta: only the sets or policies the state's Delta names were
	// paired (hits with gone set are the removed ones); every other one
	// is the last build's.
	setsDelta, polsDelta bool
}

type setHit struct {
	id   string
	set  desired.IPSet
	e    *setEntry
	gone bool // not in the state (delta scans only)
}

type polHit struct {
	id   desired.PolicyID
	p    desired.Policy
	e    *rulesEntry
	gone bool // not in the state (delta scans only)
}

// scanState pairs s's sets and policies with the builder's entries (nil
// for new ones). With reuse, it returns the pairing the validate just
// before made for the same s (Apply calls validate then build, with
// nothing in between); validate always pairs afresh, and build drops the
// pairing when done.
func (b *builder) scanState(s *desired.State, reuse bool) *scan {
	if reuse && b.scan.state == s {
		return &b.scan
	}
	sameSets, samePols, _, _ := b.same(s)
	d := b.deltaOf(s)
	b.scan.state = s
	b.scan.sets = b.scan.sets[:0]
	b.scan.setsSkipped, b.scan.setsDelta = sameSets, false
	switch {
	case sameSets:
	case d != nil:
		b.scan.setsDelta = true
		for _, id := range unique(d.IPSets) {
			set, ok := s.IPSets.Get(id)
			b.scan.sets = append(b.scan.sets, setHit{id, set, b.sets[id], !ok})
		}
	default:
		for id, set := range s.IPSets.All() {
			b.scan.sets = append(b.scan.sets, setHit{id, set, b.sets[id], false})
		}
	}
	b.scan.pols = b.scan.pols[:0]
	b.scan.polsSkipped, b.scan.polsDelta = false, false
	switch {
	case samePols:
		b.scan.polsSkipped = true
	case d != nil:
		b.scan.polsDelta = true
		for _, id := range unique(d.Policies) {
			p, ok := s.Policies.Get(id)
			b.scan.pols = append(b.scan.pols, polHit{id, p, b.policies[id], !ok})
		}
	default:
		b.scanPolicies(s)
	}
	return &b.scan
}

// unique returns ks without repeats (a Delta may name a key twice; each
// is paired once), ks itself when it has none.
func unique[K comparable](ks []K) []K {
	if len(ks) < 2 {
		return ks
	}
	seen := make(map[K]struct{}, len(ks))
	out := ks[:0:0]
	for _, k := range ks {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// deltaOf returns s's Delta when it is relative to the last state built,
// else nil.
func (b *builder) deltaOf(s *desired.State) *desired.Delta {
	if s.Delta == nil || b.lastGen == 0 || s.Delta.Since != b.lastGen || !b.last.valid {
		return nil
	}
	return s.Delta
}

// scanPolicies pairs every one of s's policies with the builder's
// entries.
func (b *builder) scanPolicies(s *desired.State) {
	b.scan.pols = b.scan.pols[:0]
	for id, p := range s.Policies.All() {
		b.scan.pols = append(b.scan.pols, polHit{id, p, b.policies[id], false})
	}
	b.scan.polsSkipped, b.scan.polsDelta = false, false
}

// Family bits: which address families a set has members of, and (for a
// Nets set) which have a member wider than one address, so that family's
// kernel set is an interval set (kernelType).
const (
	fam4 uint8 = 1 << iota
	fam6
	wide4
	wide6
)

type setEntry struct {
	set    desired.IPSet
	specs  [2]*setSpec // v4, v6
	counts famCounts   // fams() gives its family bits
	gen    uint64
}

// setRef is what a compiled rule depends on about a set: its type (set
// names depend on it) and which families it has members of (a rule
// variant for a family in which a set it requires is empty can never
// match and is left out).
type setRef struct {
	typ  desired.IPSetType
	fams uint8
}

// setUse names one kernel set a chain uses.
type setUse struct {
	id string
	v6 bool
}

// rulesEntry caches a policy's or profile's two chains.
type rulesEntry struct {
	in, out []desired.Rule
	refs    map[string]setRef
	uses    map[setUse]struct{}
	chains  [2]*chainSpec // inbound, outbound; a policy's is nil with no rules that way, or inline
	keys    [2]string     // the generic chains' items: the chain's name, with the verdict when inline
	inline  [2]inlineVerdict
	fp      [2]footprint // inbound, outbound
	order   *float64     // a policy's order in its tier
	gen     uint64
	left    time.Time // when a retained policy left the state
}

type epEntry struct {
	ep          desired.Endpoint
	haveProfile []bool
	classes     [2]*classEntry // ingress, egress
	vmap        [2]elem        // the classify table's to-wl, from-wl
	gen         uint64
}

type staticEntry struct {
	cfg    desired.Config
	chains []*chainSpec
}

func newBuilder(cfg Config) *builder {
	b := &builder{
		cfg:        cfg,
		m:          &model{sets: map[string]*setSpec{}, chains: map[string]*chainSpec{}},
		sets:       map[string]*setEntry{},
		policies:   map[desired.PolicyID]*rulesEntry{},
		profiles:   map[string]*rulesEntry{},
		eps:        map[string]*epEntry{},
		indexes:    map[string]*indexEntry{},
		refs:       map[setUse]int{},
		cls:        newClasses(),
		retained:   map[desired.PolicyID]*rulesEntry{},
		orphanSets: map[string]bool{},
		setUsers:   map[string]map[desired.PolicyID]struct{}{},
		polIfaces:  map[desired.PolicyID]map[string]struct{}{},
	}
	b.m.sets[mapToWL] = &setSpec{name: mapToWL, kind: kindVmap, comment: "ingress class by oifname", elems: map[string]elem{}}
	b.m.sets[mapFromWL] = &setSpec{name: mapFromWL, kind: kindVmap, comment: "egress class by iifname", elems: map[string]elem{}}
	b.m.sets[mapToClass] = &setSpec{name: mapToClass, kind: kindMarkVmap, comment: "ingress dispatch by class", elems: map[string]elem{}}
	b.m.sets[mapFromClass] = &setSpec{name: mapFromClass, kind: kindMarkVmap, comment: "egress dispatch by class", elems: map[string]elem{}}
	b.m.sets[setToGeneric] = &setSpec{name: setToGeneric, kind: kindMark, comment: "ingress generic classes: class | slot", elems: map[string]elem{}}
	b.m.sets[setFromGeneric] = &setSpec{name: setFromGeneric, kind: kindMark, comment: "egress generic classes: class | slot", elems: map[string]elem{}}
	return b
}

func noteSet(b *builder, name string) {
	if _, ok := b.dSets[name]; !ok {
		b.dSets[name] = b.m.sets[name]
	}
}

func (b *builder) putSet(s *setSpec) {
	if b.m.sets[s.name] == s {
		return
	}
	noteSet(b, s.name)
	b.m.sets[s.name] = s
}

func (b *builder) dropSet(name string) {
	if b.m.sets[name] == nil {
		return
	}
	noteSet(b, name)
	delete(b.m.sets, name)
}

func (b *builder) putChain(c *chainSpec) {
	old, ok := b.m.chains[c.name]
	if ok && old == c {
		return
	}
	if _, seen := b.dChains[c.name]; !seen {
		b.dChains[c.name] = old
	}
	b.m.chains[c.name] = c
}

func (b *builder) dropChain(name string) {
	old, ok := b.m.chains[name]
	if !ok {
		return
	}
	if _, seen := b.dChains[name]; !seen {
		b.dChains[name] = old
	}
	delete(b.m.chains, name)
	if !inA(name) && !isClassChain(name) {
		b.droppedTarget = true
	}
}

// patchSet changes e's kernel sets to hold set's members in place, by the
// members added and removed since e.set (Map.Diff: the member shards the
// two share are skipped), and reports whether it could: it
// cannot when set's type or family bits differ from e's (the rules using
// it may change; buildSets makes new kernel sets), or a family is an
// interval set (merged whole). A rebuild would allocate every element of
// the set again; a label change moves one member.
func (b *builder) patchSet(id string, e *setEntry, set desired.IPSet) bool {
	if set.Type != e.set.Type {
		return false
	}
	// The family bits after the change, from the counts and the changed
	// members alone.
	type change struct {
		m   desired.Member
		del bool
	}
	var changes []change
	counts := e.counts
	for m := range set.Members.Diff(e.set.Members, nil) {
		delta := 1
		if !set.Members.Has(m) {
			delta = -1
		}
		changes = append(changes, change{m, delta < 0})
		counts.add(set.Type, m, delta)
	}
	fams := counts.fams()
	if fams != e.counts.fams() || kernelType(set.Type, fams, 4) == desired.Nets || kernelType(set.Type, fams, 6) == desired.Nets {
		return false
	}
	for _, c := range changes {
		m, del := c.m, c.del
		spec := e.specs[0]
		if !m.Prefix.Addr().Is4() {
			spec = e.specs[1]
		}
		el := memberElem(set.Type, m)
		// In the table, or dropped from it in this build (it may come
		// back as the same object; planDelta then sends the journal):
		// journaled. Otherwise the kernel does not hold it.
		if b.m.sets[spec.name] == spec || b.dSets[spec.name] == spec {
			b.journalElem(spec, el, del)
		} else if del {
			delete(spec.elems, el.mapKey())
		} else {
			spec.elems[el.mapKey()] = el
		}
	}
	e.set, e.counts, e.gen = set, counts, b.gen
	return true
}

func (b *builder) spec(u setUse) *setSpec {
	e := b.sets[u.id]
	if u.v6 {
		return e.specs[1]
	}
	return e.specs[0]
}

func (b *builder) use(e *rulesEntry) {
	for _, c := range e.chains {
		if c != nil {
			b.putChain(c)
		}
	}
	for u := range e.uses {
		b.refs[u]++
		if b.refs[u] == 1 {
			b.putSet(b.spec(u))
		}
	}
}

func (b *builder) unuse(e *rulesEntry, keepChains bool) {
	for _, c := range e.chains {
		if c != nil && !keepChains {
			b.dropChain(c.name)
		}
	}
	for u := range e.uses {
		b.refs[u]--
		if b.refs[u] == 0 {
			delete(b.refs, u)
			b.dropSet(b.spec(u).name)
			if b.orphanSets[u.id] {
				b.unusedOrphans = append(b.unusedOrphans, u.id)
			}
		}
	}
}

// forgetOrphans forgets the sets kept only for retained policies
// (orphanSets) that none uses any more: their last user was released or
// came back with rules that no longer name them. Not during a build's
// steps: the build holds entries it scanned.
func (b *builder) forgetOrphans() {
	for _, id := range b.unusedOrphans {
		if b.orphanSets[id] && b.refs[setUse{id, false}] == 0 && b.refs[setUse{id, true}] == 0 {
			delete(b.sets, id)
			delete(b.orphanSets, id)
		}
	}
	b.unusedOrphans = b.unusedOrphans[:0]
}

// build updates the model to state s (which must be valid) and returns
// it; b.dSets and b.dChains then hold what changed. It fails only when the
// endpoints need more classes than Config.ClassMask can number; the
// builder is then unusable (start a new one).
func (b *builder) build(s *desired.State) (*model, error) {
	b.gen++
	b.dSets, b.dChains, b.dElems = map[string]*setSpec{}, map[string]*chainSpec{}, map[string]*elemJournal{}
	b.changed = map[string]bool{}
	b.fpChanged = map[desired.PolicyID]bool{}

	sameSets, samePols, sameProfs, sameEps := b.same(s)
	sc := b.scanState(s, true)
	// The pairing is for this build only (entries are replaced below).
	defer func() {
		b.scan.state = nil
		clear(b.scan.sets) // keep no values of s beyond this build
		clear(b.scan.pols)
		b.last, b.lastGen = collectionsOf(s), s.Gen
	}()

	// 1. New and changed sets. A referenced kernel set whose members
	// changed has its elements changed in place (patchSet), or is
	// replaced in the model when its kernel sets change kind. A set that
	// is new, changed type, or gained or lost its last member of a family
	// (or its first wide one) can change the rules
	// of the policies and profiles that use it (reshaped): those are then
	// checked even when their maps are the last build's.
	reshaped, reshapedOld := false, false
	for _, h := range sc.sets {
		id, set, e := h.id, h.set, h.e
		if h.gone {
			continue // step 3
		}
		delete(b.orphanSets, id) // in the state (again)
		if e != nil && sameIPSet(e.set, set) {
			e.set = set
			e.gen = b.gen
			continue
		}
		b.changed[id] = true
		if e != nil && b.patchSet(id, e, set) {
			continue
		}
		n := &setEntry{set: set, gen: b.gen}
		n.specs[0], n.specs[1], n.counts = buildSets(id, set)
		if e == nil || e.set.Type != n.set.Type || e.counts.fams() != n.counts.fams() {
			reshaped = true
			// A set that is new to the builder can only be used by
			// policies that are new or changed (the last state was
			// valid): those a Delta names.
			reshapedOld = reshapedOld || e != nil
			// A retained policy's rules would no longer match the
			// set (or name a kernel set that goes): it goes for good.
			if e != nil {
				b.releaseRetainedUsers(id)
			}
		}
		b.sets[id] = n
		for i, v6 := range []bool{false, true} {
			if b.refs[setUse{id, v6}] > 0 {
				// A kernel set that changed kind (a member wider than
				// one address came or went) has a new name: the rules
				// using it are rebuilt below, and the old one goes
				// after them (sets are removed last).
				if e != nil && e.specs[i].name != n.specs[i].name {
					b.dropSet(e.specs[i].name)
				}
				b.putSet(n.specs[i])
			}
		}
	}

	// 2. Policies and profiles.
	// A set the last build had that was reshaped can change policies the
	// Delta does not name: then every policy is looked at.
	walkPols := !samePols || reshaped
	if walkPols && (sc.polsSkipped || (sc.polsDelta && reshapedOld)) {
		b.scanPolicies(s)
	}
	for _, h := range sc.pols {
		id, p, e := h.id, h.p, h.e
		if h.gone {
			if e != nil {
				b.dropPolicy(id, e)
			}
			continue
		}
		back := false
		if r := b.retained[id]; e == nil && r != nil {
			// A retained policy is back (generic.go).
			e, back = r, true
			b.unretain(id)
			b.putPolicy(id, e)
		}
		if e != nil && desired.CompareOrder(e.order, p.Order) != 0 {
			b.layDirty = true
		}
		if e != nil && b.fresh(e, p.Inbound, p.Outbound, back) {
			e.in, e.out, e.order, e.gen = p.Inbound, p.Outbound, p.Order, b.gen
			continue
		}
		n := b.buildRules(s, p.Inbound, p.Outbound, policyChain(id, true), policyChain(id, false), "policy "+id.String(), 3, false)
		n.gen, n.order = b.gen, p.Order
		n.fp = [2]footprint{footprintOf(p.Inbound), footprintOf(p.Outbound)}
		b.use(n)
		if e != nil {
			b.unuse(e, true)
			for i := range e.chains {
				if e.sig(i) != n.sig(i) {
					b.fpChanged[id] = true
				}
				if e.chains[i] != nil && n.chains[i] == nil {
					// No rules this way any more, or inline:
					// keepChains kept the chain, which nothing
					// will jump to.
					b.dropChain(e.chains[i].name)
				}
				if (e.chains[i] == nil) != (n.chains[i] == nil) || e.inline[i] != n.inline[i] {
					b.layDirty = true // the generic chains' item for it changes
				}
			}
		} else if n.applies() {
			// A policy new to the table: its chains are rules, so the
			// transaction is validated anyway; the generic chains take
			// it in now (settleClasses). One with no rules either way
			// has nothing for them.
			b.layDirty = true
		}
		b.putPolicy(id, n)
	}
	for id, e := range b.policies {
		if !walkPols || sc.polsDelta {
			break // removed above (delta), or nothing changed
		}
		if e.gen != b.gen {
			b.dropPolicy(id, e)
		}
	}
	walkProfs := !sameProfs || reshaped
	for name, p := range s.Profiles.All() {
		if !walkProfs {
			break
		}
		e := b.profiles[name]
		if e != nil && b.fresh(e, p.Inbound, p.Outbound, false) {
			e.in, e.out, e.gen = p.Inbound, p.Outbound, b.gen
			continue
		}
		n := b.buildRules(s, p.Inbound, p.Outbound, profileChain(name, true), profileChain(name, false), "profile "+name, 4, true)
		n.gen = b.gen
		b.use(n)
		if e != nil {
			b.unuse(e, true)
		} else {
			b.layDirty = true // as for a new policy
		}
		b.profiles[name] = n
	}
	for name, e := range b.profiles {
		if !walkProfs {
			break
		}
		if e.gen != b.gen {
			b.unuse(e, false)
			delete(b.profiles, name)
		}
	}

	// 3. Sets gone from the state (no rule can use them: s is valid).
	for _, h := range sc.sets {
		if h.gone && h.e != nil {
			b.dropSetEntry(h.id)
		}
	}
	for id, e := range b.sets {
		if sameSets || sc.setsDelta {
			break
		}
		if e.gen != b.gen {
			b.dropSetEntry(id)
		}
	}

	// 4. Endpoints: each direction's chain becomes a class (class.go),
	// and the classify table's maps send the interface to it. An
	// endpoint's chains depend on it, on which of its profiles exist and
	// on its policies' footprints (tier indexes).
	walkEps := !sameEps || !sameProfs || len(b.fpChanged) > 0
	setElem := func(set string, old *elem, n elem) {
		if old != nil && old.mapKey() == n.mapKey() {
			return
		}
		if old != nil {
			b.setElemInPlace(set, *old, true)
		}
		b.setElemInPlace(set, n, false)
	}
	// Changed endpoints are handled in interface order, so that class ids
	// (allocated lowest first) do not depend on map order.
	type epChange struct {
		iface string
		have  []bool
	}
	var changed []epChange
	// With the profiles and footprints unchanged, only the endpoints the
	// Delta names can have changed (a local label change: one of 250).
	ifaces, gone, byDelta := s.Endpoints.Keys(), []string(nil), false
	if d := b.deltaOf(s); d != nil && sameProfs && len(b.fpChanged) == 0 {
		ifaces, byDelta = slices.Values(unique(d.Endpoints)), true
	}
	for iface := range ifaces {
		if !walkEps {
			break
		}
		ep, ok := s.Endpoints.Get(iface)
		if !ok { // a Delta's endpoint that went
			if b.eps[iface] != nil {
				gone = append(gone, iface)
			}
			continue
		}
		have := make([]bool, len(ep.ProfileIDs))
		for i, p := range ep.ProfileIDs {
			have[i] = s.Profiles.Has(p)
		}
		e := b.eps[iface]
		if e != nil && sameEndpoint(e.ep, ep) && slices.Equal(e.haveProfile, have) && !b.footprintChanged(ep) {
			e.ep, e.gen = ep, b.gen
			continue
		}
		changed = append(changed, epChange{iface, have})
	}
	slices.SortFunc(changed, func(x, y epChange) int { return strings.Compare(x.iface, y.iface) })
	for _, ch := range changed {
		iface, have, e := ch.iface, ch.have, b.eps[ch.iface]
		ep, _ := s.Endpoints.Get(iface)
		n := &epEntry{ep: ep, haveProfile: have, gen: b.gen}
		for i, ingress := range []bool{true, false} {
			cl, err := b.acquireClass(ep, have, ingress)
			if err != nil {
				return nil, fmt.Errorf("endpoint %s: %w", iface, err)
			}
			n.classes[i] = cl
			n.vmap[i] = elem{key: ifnameKey(iface), jump: objName(cl.setter.name)}
		}
		var old [2]*elem
		if e != nil {
			b.releaseClass(e.classes[0]) // after the new classes took their uses
			b.releaseClass(e.classes[1])
			old = [2]*elem{&e.vmap[0], &e.vmap[1]}
		}
		setElem(mapToWL, old[0], n.vmap[0])
		setElem(mapFromWL, old[1], n.vmap[1])
		if e != nil {
			b.indexEndpoint(iface, e.ep, false)
		}
		b.indexEndpoint(iface, n.ep, true)
		b.eps[iface] = n
	}
	if walkEps && !byDelta {
		for iface, e := range b.eps {
			if e.gen != b.gen {
				gone = append(gone, iface)
			}
		}
	}
	for _, iface := range gone {
		if e := b.eps[iface]; e != nil {
			b.releaseClass(e.classes[0])
			b.releaseClass(e.classes[1])
			b.setElemInPlace(mapToWL, e.vmap[0], true)
			b.setElemInPlace(mapFromWL, e.vmap[1], true)
			b.indexEndpoint(iface, e.ep, false)
			delete(b.eps, iface)
		}
	}
	b.trimClasses()

	// 5. Base and dispatch chains.
	if b.statics == nil || !b.statics.cfg.Equal(s.Config) {
		b.statics = &staticEntry{cfg: s.Config, chains: b.staticChains(s.Config)}
		for _, c := range b.statics.chains {
			b.putChain(c)
		}
	}

	// 6. New classes: generic, or every class gets its own chain.
	b.settleClasses()
	b.forgetOrphans()
	return b.m, nil
}

// dropPolicy removes a policy gone from the state, or retains it while a
// generic chain jumps to it (generic.go).
func (b *builder) dropPolicy(id desired.PolicyID, e *rulesEntry) {
	delete(b.policies, id)
	for i, in := range []bool{true, false} {
		// Retained unless a set it uses was reshaped in this build (its
		// kernel set may be renamed and the old one deleted: the chains
		// would block that). Still in setUsers: a set it uses reshaped
		// later releases it (releaseRetainedUsers).
		if t, ok := e.target(in); ok && b.lay[i].has(t.key) && b.fresh(e, e.in, e.out, false) {
			b.retained[id] = e
			e.left = b.cfg.Now()
			if len(b.retained) == 1 || e.left.Before(b.oldestRetained) {
				b.oldestRetained = e.left // else it stays, or is recomputed
			}
			return
		}
	}
	b.forget(id, e)
}

// forget drops a policy's chains and set uses for good. The generic
// chains are laid out again without it when they jump to a chain that
// goes (genericStale); an item of an inline verdict stays until the next
// layout (no class keeps its slot: trimClasses evicts the unused classes
// that list the policy).
func (b *builder) forget(id desired.PolicyID, e *rulesEntry) {
	b.forgot = true
	b.indexPolicy(id, e, false)
	b.unuse(e, false)
}

// releaseRetained drops a retained policy for good (forget).
func (b *builder) releaseRetained(id desired.PolicyID) {
	e := b.retained[id]
	b.unretain(id)
	b.forget(id, e)
}

// unretain takes id out of the retained policies' bookkeeping.
func (b *builder) unretain(id desired.PolicyID) {
	if e := b.retained[id]; e != nil && e.left.Equal(b.oldestRetained) {
		b.oldestRetained = time.Time{}
	}
	delete(b.retained, id)
}

// releaseRetainedUsers releases the retained policies that use set id.
func (b *builder) releaseRetainedUsers(id string) {
	for pid := range b.setUsers[id] {
		if b.retained[pid] != nil {
			b.releaseRetained(pid)
		}
	}
}

// putPolicy sets a policy's entry.
func (b *builder) putPolicy(id desired.PolicyID, e *rulesEntry) {
	b.indexPolicy(id, b.policies[id], false)
	b.policies[id] = e
	b.indexPolicy(id, e, true)
}

// indexPolicy adds (or removes) a policy's entry to (from) setUsers.
func (b *builder) indexPolicy(id desired.PolicyID, e *rulesEntry, add bool) {
	if e == nil {
		return
	}
	for set := range e.refs {
		indexPut(b.setUsers, set, id, add)
	}
}

// indexEndpoint adds (or removes) an endpoint's policies to (from)
// polIfaces.
func (b *builder) indexEndpoint(iface string, ep desired.Endpoint, add bool) {
	for _, t := range ep.Tiers {
		for _, pols := range [][]desired.PolicyID{t.IngressPolicies, t.EgressPolicies} {
			for _, id := range pols {
				indexPut(b.polIfaces, id, iface, add)
			}
		}
	}
}

// indexPut adds v to (or removes it from) idx[k], which exists while it
// is not empty.
func indexPut[K, V comparable](idx map[K]map[V]struct{}, k K, v V, add bool) {
	vs := idx[k]
	if !add {
		delete(vs, v)
		if len(vs) == 0 {
			delete(idx, k)
		}
		return
	}
	if vs == nil {
		vs = map[V]struct{}{}
		idx[k] = vs
	}
	vs[v] = struct{}{}
}

// dropSetEntry forgets a set gone from the state, unless a retained
// policy still uses it.
func (b *builder) dropSetEntry(id string) {
	if b.refs[setUse{id, false}] > 0 || b.refs[setUse{id, true}] > 0 {
		b.orphanSets[id] = true
		return
	}
	delete(b.sets, id)
}

// footprintChanged reports whether a policy of ep changed its footprint
// in this build: what it can match (tier indexes) or whether it can Pass
// (which later policies test the pass bit).
func (b *builder) footprintChanged(ep desired.Endpoint) bool {
	if len(b.fpChanged) == 0 {
		return false
	}
	for _, t := range ep.Tiers {
		for _, pols := range [][]desired.PolicyID{t.Policies(true), t.Policies(false)} {
			for _, id := range pols {
				if b.fpChanged[id] {
					return true
				}
			}
		}
	}
	return false
}

// fresh reports whether a cached entry still renders the given rules: the
// rules are the same, and no set they use changed type or gained or lost
// its last member of a family (only sets rebuilt by this build can have,
// unless all: a retained policy coming back is checked against every set).
func (b *builder) fresh(e *rulesEntry, in, out []desired.Rule, all bool) bool {
	if !sameRules(e.in, in) || !sameRules(e.out, out) {
		return false
	}
	stale := func(id string, r setRef) bool {
		n := b.sets[id]
		return n == nil || n.set.Type != r.typ || n.counts.fams() != r.fams
	}
	if all { // every set, not only this build's changes
		for id, r := range e.refs {
			if stale(id, r) {
				return false
			}
		}
		return true
	}
	if len(b.changed) < len(e.refs) {
		for id := range b.changed {
			if r, ok := e.refs[id]; ok && stale(id, r) {
				return false
			}
		}
		return true
	}
	for id, r := range e.refs {
		if b.changed[id] && stale(id, r) {
			return false
		}
	}
	return true
}

// sameRules reports whether two rule lists are the same: the same backing
// array, or equal.
func sameRules(a, b []desired.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.EqualFunc(a, b, desired.Rule.Equal)
}

// sameIPSet reports whether two sets are the same: the same members map,
// or equal.
func sameIPSet(a, b desired.IPSet) bool {
	if a.Type == b.Type && a.Members.Same(b.Members) {
		return true
	}
	return a.Equal(b)
}

// sameEndpoint reports whether two endpoints are the same: the same
// backing arrays, or equal.
func sameEndpoint(a, b desired.Endpoint) bool {
	if a.WorkloadID == b.WorkloadID && sameSlice(a.IPs, b.IPs) && sameSlice(a.Tiers, b.Tiers) && sameSlice(a.ProfileIDs, b.ProfileIDs) {
		return true
	}
	return a.Equal(b)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// validate checks s like desired.State.Validate, but only the objects that
// differ from the last state built (which was valid): changed sets (of a
// set whose type is unchanged, the members it gained),
// policies, profiles and endpoints; policies and profiles that use a set
// that was removed or changed type; and, when a policy was removed, every
// endpoint.
func (b *builder) validate(s *desired.State) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(s.ValidateConfig())
	_, _, sameProfs, sameEps := b.same(s)
	sc := b.scanState(s, false)
	bad := map[string]bool{} // sets removed or retyped since the last build
	hits := 0
	for _, h := range sc.sets {
		id, set, e := h.id, h.set, h.e
		if h.gone {
			if e != nil {
				bad[id] = true
			}
			continue
		}
		if e != nil {
			hits++
			if e.set.Type == set.Type {
				if !e.set.Members.Same(set.Members) {
					add(s.ValidateIPSetSince(id, e.set)) // the changed members only
				}
				continue
			}
			bad[id] = true
		}
		add(s.ValidateIPSet(id))
	}
	if !sc.setsSkipped && !sc.setsDelta && hits != len(b.sets) {
		for id := range b.sets {
			if !s.IPSets.Has(id) {
				bad[id] = true
			}
		}
	}
	usesBad := func(e *rulesEntry) bool {
		for id := range bad {
			if _, ok := e.refs[id]; ok {
				return true
			}
		}
		return false
	}
	var removed []desired.PolicyID
	named := map[desired.PolicyID]bool{}
	for _, h := range sc.pols {
		named[h.id] = true
		if h.gone && h.e != nil {
			removed = append(removed, h.id)
		}
	}
	if sc.polsSkipped || sc.polsDelta {
		// Unchanged policies that use a bad set: the index has them.
		for id := range bad {
			for pid := range b.setUsers[id] {
				if s.Policies.Has(pid) && !named[pid] {
					named[pid] = true
					add(s.ValidatePolicy(pid))
				}
			}
		}
	}
	hits = 0
	for _, h := range sc.pols {
		id, p, e := h.id, h.p, h.e
		if h.gone {
			continue
		}
		if e != nil {
			hits++
			if sameRules(e.in, p.Inbound) && sameRules(e.out, p.Outbound) && !usesBad(e) {
				continue
			}
		}
		add(s.ValidatePolicy(id))
	}
	if !sc.polsSkipped && !sc.polsDelta && hits != len(b.policies) {
		for id := range b.policies {
			if !s.Policies.Has(id) {
				removed = append(removed, id)
			}
		}
	}
	// An endpoint unchanged since the last build that lists a removed
	// policy is invalid now (changed endpoints are checked below).
	checked := map[string]bool{}
	for _, id := range removed {
		for iface := range b.polIfaces[id] {
			if ep, ok := s.Endpoints.Get(iface); ok && !checked[iface] && sameEndpoint(b.eps[iface].ep, ep) {
				checked[iface] = true
				add(s.ValidateEndpoint(iface))
			}
		}
	}
	for name, p := range s.Profiles.All() {
		if sameProfs && len(bad) == 0 {
			break
		}
		if e := b.profiles[name]; e != nil && sameRules(e.in, p.Inbound) && sameRules(e.out, p.Outbound) && !usesBad(e) {
			continue
		}
		add(s.ValidateProfile(name))
	}
	// The changed endpoints: those a Delta since the last build names
	// (one of 250 for a local label change), else every one that differs.
	ifaces := s.Endpoints.Keys()
	if d := b.deltaOf(s); d != nil {
		ifaces = slices.Values(unique(d.Endpoints))
	}
	for iface := range ifaces {
		if sameEps {
			break
		}
		ep, ok := s.Endpoints.Get(iface)
		if !ok { // a Delta's endpoint that went
			continue
		}
		if e := b.eps[iface]; checked[iface] || (e != nil && sameEndpoint(e.ep, ep)) {
			continue
		}
		add(s.ValidateEndpoint(iface))
	}
	if len(errs) > 0 {
		b.scan.state = nil // no build follows
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}
