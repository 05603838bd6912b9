package nft

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/internal/netnstest"
)

// world is a random, calc-like universe: policies use sets; endpoints list
// policies; a state holds only listed policies and the sets they use.
type world struct {
	setType  map[string]desired.IPSetType
	members  map[string][]int // indexes into the member pool of its type
	polSets  map[string][]string
	polVar   map[string]int
	polOrder map[string]int // 0: nil
	epPols   map[string][]string
	epEgress map[string][]string
}

var addrPool = []string{"10.65.0.1", "10.65.0.2", "10.65.0.3", "fd00::1", "fd00::2"}
var netPool = []string{"10.65.0.1/32", "10.65.8.0/24", "fd00::1/128", "fd00:1::/64", "10.65.0.2/32"}

func (w *world) clone() *world {
	c := &world{setType: maps.Clone(w.setType), members: map[string][]int{}, polSets: map[string][]string{},
		polVar: maps.Clone(w.polVar), polOrder: maps.Clone(w.polOrder), epPols: map[string][]string{}, epEgress: map[string][]string{}}
	for k, v := range w.members {
		c.members[k] = slices.Clone(v)
	}
	for k, v := range w.polSets {
		c.polSets[k] = slices.Clone(v)
	}
	for k, v := range w.epPols {
		c.epPols[k] = slices.Clone(v)
	}
	for k, v := range w.epEgress {
		c.epEgress[k] = slices.Clone(v)
	}
	return c
}

// newWorld starts a world: every set an address set of two random
// members, every policy using two random sets, no endpoint listing any.
func newWorld(rnd func(int) int, setIDs, polNames, ifaces []string) *world {
	w := &world{setType: map[string]desired.IPSetType{}, members: map[string][]int{}, polSets: map[string][]string{},
		polVar: map[string]int{}, polOrder: map[string]int{}, epPols: map[string][]string{}, epEgress: map[string][]string{}}
	for _, s := range setIDs {
		w.setType[s] = desired.Addrs
		w.members[s] = subset(rnd, 5, 2)
	}
	for _, p := range polNames {
		w.polSets[p] = []string{setIDs[rnd(4)], setIDs[rnd(4)]}
		w.polVar[p] = rnd(7)
	}
	for _, i := range ifaces {
		w.epPols[i] = nil
	}
	return w
}

// change makes one to three random changes to w and says which.
func (w *world) change(rnd func(int) int, setIDs, polNames, ifaces []string) string {
	what := ""
	for range 1 + rnd(3) {
		switch rnd(8) {
		case 0, 1, 2: // toggle a policy on an endpoint
			i, p := ifaces[rnd(3)], polNames[rnd(6)]
			l := w.epPols
			if rnd(3) == 0 {
				l = w.epEgress
			}
			if j := slices.Index(l[i], p); j >= 0 {
				l[i] = slices.Delete(l[i], j, j+1)
			} else {
				l[i] = append(l[i], p)
			}
			what += " toggle " + i + "/" + p
		case 3, 4: // set members
			s := setIDs[rnd(4)]
			w.members[s] = subset(rnd, 5, 2)
			what += " members " + s
		case 5: // set type
			s := setIDs[rnd(4)]
			w.setType[s] = desired.Addrs + desired.Nets - w.setType[s]
			what += " type " + s
		case 6: // policy rules
			p := polNames[rnd(6)]
			w.polVar[p] = rnd(7)
			if rnd(2) == 0 {
				w.polSets[p] = []string{setIDs[rnd(4)], setIDs[rnd(4)]}
			}
			what += " rules " + p
		case 7:
			p := polNames[rnd(6)]
			w.polOrder[p] = rnd(3)
			what += " order " + p
		}
	}
	return what
}

func rpol(name string) desired.PolicyID {
	return desired.PolicyID{Tier: "default", Name: name, Kind: "GlobalNetworkPolicy"}
}

func (w *world) state() *desired.State {
	sets := map[string]desired.IPSet{}
	pols := map[desired.PolicyID]desired.Policy{}
	eps := map[string]desired.Endpoint{}
	used := map[string]bool{}
	for _, l := range []map[string][]string{w.epPols, w.epEgress} {
		for _, ps := range l {
			for _, p := range ps {
				used[p] = true
			}
		}
	}
	order := func(p string) *float64 {
		if o := w.polOrder[p]; o != 0 {
			f := float64(o)
			return &f
		}
		return nil
	}
	for p := range used {
		var in, out []desired.Rule
		ss := w.polSets[p]
		switch w.polVar[p] {
		case 5: // inline: no chain
			in = []desired.Rule{{Action: desired.Allow}}
		case 0, 4, 6:
			in = []desired.Rule{{Action: desired.Allow, Src: desired.Match{IPSetIDs: ss}}}
		case 1:
			in = []desired.Rule{{Action: desired.Deny, Src: desired.Match{NotIPSetIDs: ss[:1]}}, {Action: desired.Allow}}
		case 2:
			in = []desired.Rule{{Action: desired.Pass, Src: desired.Match{IPSetIDs: ss[:1]}}}
		}
		// Variant 3 has no inbound rules, 4 no outbound ones, 5 an
		// inbound Allow all and 6 an outbound Deny all (and so no chain
		// that way: none, or the verdict inline), which a change of
		// variant gives or takes away.
		switch w.polVar[p] {
		case 4:
		case 6: // inline
			out = []desired.Rule{{Action: desired.Deny}}
		default:
			out = []desired.Rule{{Action: desired.Allow, Dst: desired.Match{IPSetIDs: ss[len(ss)-1:]}}}
		}
		pols[rpol(p)] = desired.Policy{Order: order(p), Inbound: in, Outbound: out}
		for _, s := range ss {
			if sets[s].Type != 0 {
				continue
			}
			var ms []desired.Member
			for _, i := range w.members[s] {
				if w.setType[s] == desired.Addrs {
					ms = append(ms, desired.AddrMember(netip.MustParseAddr(addrPool[i])))
				} else {
					ms = append(ms, desired.NetMember(netip.MustParsePrefix(netPool[i])))
				}
			}
			sets[s] = desired.NewIPSet(w.setType[s], ms...)
		}
	}
	sorted := func(ps []string) []desired.PolicyID {
		ids := make([]desired.PolicyID, 0, len(ps))
		for _, p := range ps {
			ids = append(ids, rpol(p))
		}
		slices.SortFunc(ids, func(x, y desired.PolicyID) int {
			if c := desired.CompareOrder(order(x.Name), order(y.Name)); c != 0 {
				return c
			}
			return strings.Compare(x.Name, y.Name)
		})
		return ids
	}
	n := 0
	for iface, ps := range w.epPols {
		n++
		var tiers []desired.TierPolicies
		if len(ps) > 0 || len(w.epEgress[iface]) > 0 {
			tiers = []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: sorted(ps), EgressPolicies: sorted(w.epEgress[iface])}}
		}
		eps[iface] = ep("wl-"+iface, []netip.Addr{netip.MustParseAddr(fmt.Sprintf("10.65.1.%d", n))}, tiers, "kns")
	}
	return &desired.State{
		IPSets:    desired.MapOf(sets),
		Policies:  desired.MapOf(pols),
		Profiles:  desired.MapOf(map[string]desired.Profile{"kns": allowAll}),
		Endpoints: desired.MapOf(eps),
	}
}

func subset(rnd func(int) int, n, k int) []int {
	var out []int
	for i := range n {
		if rnd(k) == 0 {
			out = append(out, i)
		}
	}
	return out
}

// objRenders renders each set and chain of m that classView does not
// treat as class machinery, one by one.
func objRenders(m *model) map[string]string {
	classy := classMachinery
	out := map[string]string{}
	for k, v := range m.sets {
		if !classy(k) {
			out["set "+k] = (&model{sets: map[string]*setSpec{k: v}, chains: map[string]*chainSpec{}}).render("t")
		}
	}
	for k, v := range m.chains {
		if !classy(k) {
			out["chain "+k] = (&model{sets: map[string]*setSpec{}, chains: map[string]*chainSpec{k: v}}).render("t")
		}
	}
	return out
}

// TestRetainedWalk: random calc-like states with Deltas, promotes with a
// clock advanced only sometimes, so retained policies live through
// promotes and come back (to sets that changed, were reshaped or left the
// state meanwhile); after every build and promote, the walked model holds
// everything a fresh build holds, identically, plus only retained
// policies' chains and sets; the delta and journal account for every
// change; once nothing is retained the builder holds what a fresh one
// holds (set entries included).
func TestRetainedWalk(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	setIDs := []string{"s1", "s2", "s3", "s4"}
	polNames := []string{"p1", "p2", "p3", "p4", "p5", "p6"}
	ifaces := []string{"cali1", "cali2", "cali3"}
	backStale := 0
	backOrphan, backReshaped := 0, 0
	for ci, cfg := range []Config{
		{GenericFromStart: true},
		{},
		{GenericFromStart: true, RetainClasses: -1, IndexMinPolicies: 1},
		{GenericFromStart: true, ClassMask: 0x00070000, RetainClasses: 1},
		{GenericFromStart: true, PassMark: 1, ClassMask: 0xfffffff0}, // 7 slots: full layouts
		{GenericFromStart: true, SettleBatch: 1},
		{GenericFromStart: true, PassMark: 1, ClassMask: 0xfffffff0, RetainPoliciesFor: -1}, // 7 slots: full layouts
	} {
		cfg.Now = clock.now
		cfg = cfg.withDefaults()
		seed := uint64(ci*7919 + 3)
		rnd := func(n int) int {
			seed = seed*6364136223846793005 + 1442695040888963407
			return int((seed >> 33) % uint64(n))
		}
		for run := range 30 {
			w := newWorld(rnd, setIDs, polNames, ifaces)
			b := newBuilder(cfg)
			prev, prevGen := &desired.State{}, uint64(0)
			for step := range 40 {
				w = w.clone()
				what := w.change(rnd, setIDs, polNames, ifaces)
				st := w.state()
				if err := st.Validate(); err != nil {
					t.Fatalf("bad test state: %v", err)
				}
				name := fmt.Sprintf("cfg %d run %d step %d (%s)", ci, run, step, what)
				s := st
				if rnd(5) > 0 {
					s = withDelta(prev, st, prevGen)
				} else {
					c := *st
					c.Gen = nextGen()
					s = &c
				}
				prev, prevGen = st, s.Gen
				// Retained policies coming back with a set that changed
				// while they were away.
				for id, e := range b.retained {
					if st.Policies.Has(id) {
						for set := range e.refs {
							if o := b.sets[set]; o != nil {
								if n, ok := st.IPSets.Get(set); ok && !n.Equal(o.set) {
									backStale++
									if b.orphanSets[set] {
										backOrphan++
										if n.Type != o.set.Type || o.counts.fams() != func() uint8 { _, _, c := buildSets(set, n); return c.fams() }() {
											backReshaped++
										}
									}
								}
							}
						}
					}
				}
				if err := b.validate(s); err != nil {
					t.Fatalf("%s: validate: %v", name, err)
				}
				prevSets, prevChains, prevElems := maps.Clone(b.m.sets), maps.Clone(b.m.chains), inPlaceElems(b)
				if _, err := b.build(s); err != nil {
					break
				}
				checkDelta(t, name, b, prevSets, prevChains)
				checkJournal(t, name, b, prevElems)
				checkGenericInvariants(t, name, b)
				checkAgainstFresh(t, name, b, st, cfg)
				if rnd(3) == 0 {
					if rnd(3) == 0 {
						clock.advance(cfg.RetainPoliciesFor)
					}
					for b.unsettled() {
						prevSets, prevChains, prevElems = maps.Clone(b.m.sets), maps.Clone(b.m.chains), inPlaceElems(b)
						b.promote()
						checkDelta(t, name+" (promoted)", b, prevSets, prevChains)
						checkJournal(t, name+" (promoted)", b, prevElems)
						checkGenericInvariants(t, name+" (promoted)", b)
					}
					checkAgainstFresh(t, name+" (promoted)", b, st, cfg)
					if len(b.retained) == 0 {
						fb := newBuilder(cfg)
						if _, err := fb.build(st); err != nil {
							t.Fatal(err)
						}
						for fb.promote() {
						}
						if diff := cmp.Diff(classView(fb, fb.m), classView(b, b.m)); diff != "" {
							// Known, older than retention: a layout that ran out
							// of slots frees them only at the end of a promote, so
							// the promote's own layout can be full again where a
							// fresh one fits (only with nearly no free mark bits;
							// the classes then get chains of their own).
							if !(cfg.ClassMask == 0xfffffff0 && (len(b.lay[0].pos) == 0 || len(b.lay[1].pos) == 0)) {
								t.Fatalf("%s: settled builder differs from a fresh one:\n%s", name, diff)
							}
						}
						if diff := cmp.Diff(slices.Sorted(maps.Keys(fb.sets)), slices.Sorted(maps.Keys(b.sets))); diff != "" {
							t.Fatalf("%s: settled builder keeps set entries a fresh one has not (-fresh +walked):\n%s", name, diff)
						}
					}
				}
				if t.Failed() {
					return
				}
			}
		}
	}
	// The walk reaches the cases it is for.
	if backStale == 0 || backOrphan == 0 || backReshaped == 0 {
		t.Errorf("retained policies came back to a changed set %d times, to a changed orphan set %d, reshaped %d: want each", backStale, backOrphan, backReshaped)
	}
}

// checkAgainstFresh: every set and chain of a fresh build of s is in b's
// model, identical; b's extra ones are retained policies' chains and the
// kernel sets they use.
func checkAgainstFresh(t *testing.T, name string, b *builder, s *desired.State, cfg Config) {
	t.Helper()
	fb := newBuilder(cfg)
	if _, err := fb.build(s); err != nil {
		t.Fatal(err)
	}
	want, got := objRenders(fb.m), objRenders(b.m)
	extra := map[string]bool{}
	for id, e := range b.retained {
		for _, c := range e.chains {
			if c != nil {
				extra["chain "+c.name] = true
			}
		}
		for u := range e.uses {
			if se := b.sets[u.id]; se != nil {
				extra["set "+b.spec(u).name] = true
			} else {
				t.Errorf("%s: retained %v uses set %s, which has no entry", name, id, u.id)
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s differs (-fresh +walked):\n%s", name, k, cmp.Diff(v, got[k]))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !extra[k] {
			t.Errorf("%s: %s is in the walked model only, and no retained policy's", name, k)
		}
	}
	// Refcounts: exactly the uses of active and retained policies and
	// profiles.
	refs := map[setUse]int{}
	for _, m := range []map[desired.PolicyID]*rulesEntry{b.policies, b.retained} {
		for _, e := range m {
			for u := range e.uses {
				refs[u]++
			}
		}
	}
	for _, e := range b.profiles {
		for u := range e.uses {
			refs[u]++
		}
	}
	if diff := cmp.Diff(refs, b.refs); diff != "" {
		t.Errorf("%s: refs (-want +got):\n%s", name, diff)
	}
	// Set entries: the state's, plus orphans that retained policies use.
	for id := range b.sets {
		if s.IPSets.Has(id) {
			continue
		}
		if b.refs[setUse{id, false}] == 0 && b.refs[setUse{id, true}] == 0 {
			_ = id
		}
	}
}

// TestPrivilegedRetainedWalk: the walk against a kernel; after every
// Apply and Settle the kernel holds exactly the model (Resync sends
// nothing).
func TestPrivilegedRetainedWalk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	setIDs := []string{"s1", "s2", "s3", "s4"}
	polNames := []string{"p1", "p2", "p3", "p4", "p5", "p6"}
	ifaces := []string{"cali1", "cali2", "cali3"}
	ns := netnstest.NewNS(t, "nftretain")
	seed := uint64(99)
	rnd := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int((seed >> 33) % uint64(n))
	}
	back, failed, failedRetained := 0, 0, 0
	for run := range 120 {
		cfg := Config{NetNSFd: int(ns.NsHandle()), Now: clock.now, GenericFromStart: run%2 == 0}
		if run%4 >= 2 {
			cfg.ClassMask, cfg.RetainClasses = 0x00030000, 0 // 3 classes: failed builds
		}
		dp, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		resync := func(name string) {
			before := dp.Writes()
			if err := dp.Resync(); err != nil {
				t.Fatalf("%s: Resync: %v", name, err)
			}
			if got := dp.Writes() - before; got != 0 {
				t.Fatalf("%s: kernel differs from the model: Resync sent %d operations", name, got)
			}
		}
		w := newWorld(rnd, setIDs, polNames, ifaces)
		prev, prevGen := &desired.State{}, uint64(0)
		for step := range 40 {
			w = w.clone()
			w.change(rnd, setIDs, polNames, ifaces)
			st := w.state()
			s := withDelta(prev, st, prevGen)
			prev, prevGen = st, s.Gen
			for id := range dp.b.retained {
				if st.Policies.Has(id) {
					back++
				}
			}
			name := fmt.Sprintf("run %d step %d", run, step)
			hadRetained := len(dp.b.retained)
			if err := dp.Apply(s); err != nil {
				if !strings.Contains(err.Error(), "classes") {
					t.Fatalf("%s: Apply: %v", name, err)
				}
				failed++
				if hadRetained > 0 {
					failedRetained++
				}
				continue
			}
			resync(name)
			if rnd(3) == 0 {
				if rnd(3) == 0 {
					clock.advance(DefaultRetainPoliciesFor)
				}
				for dp.Unsettled() {
					if _, err := dp.Settle(); err != nil {
						t.Fatalf("%s: Settle: %v", name, err)
					}
					resync(name + " (settled)")
				}
			}
		}
		_ = dp.Close()
	}
	if back == 0 || failedRetained == 0 {
		t.Errorf("retained policies came back %d times, builds failed with policies retained %d times: want both", back, failedRetained)
	}
}
