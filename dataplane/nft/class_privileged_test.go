package nft

import (
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/desired"
)

// classState: "a" is a client with the allow profile; "b" and "c" are
// servers whose ingress is the default tier with the given policies
// (allow80 allows TCP 80, allow443 allows TCP 443; anything else is
// denied by the tier).
func classState(l *lab, bPols, cPols []desired.PolicyID) *desired.State {
	s := l.base()
	s.Policies.Set(allow80, desired.Policy{Inbound: []desired.Rule{allowTCP(80)}})
	s.Policies.Set(allow443, desired.Policy{Inbound: []desired.Rule{allowTCP(443)}})
	tier := func(pols []desired.PolicyID) []desired.TierPolicies {
		return []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: pols}}
	}
	s.Endpoints.Set(l.iface("b"), ep("b", l.wl["b"].IPs, tier(bPols), "allow"))
	s.Endpoints.Set(l.iface("c"), ep("c", l.wl["c"].IPs, tier(cPols), "allow"))
	return s
}

var (
	allow80  = desired.PolicyID{Tier: "default", Name: "allow80", Kind: "GlobalNetworkPolicy"}
	allow443 = desired.PolicyID{Tier: "default", Name: "allow443", Kind: "GlobalNetworkPolicy"}
)

// classLab is the lab of the class tests: workloads a, b and c; b and c
// serve TCP 80 and 443.
func classLab(t *testing.T) *lab { return classLabWith(t, Config{}) }

func classLabWith(t *testing.T, cfg Config) *lab {
	l := newLabWith(t, false, cfg, "a", "b", "c")
	for _, n := range []string{"b", "c"} {
		l.wl[n].ServeTCP(80)
		l.wl[n].ServeTCP(443)
	}
	return l
}

// TestPrivilegedClassDispatch: an endpoint that moves to a class another
// endpoint has (or a retained one) changes only the classify table, and
// its traffic follows the new class; a move to a new class writes the
// policy table; an interface with no endpoint drops; kube-proxy's mark
// bit 0x4000 survives our chains; nft lists the ruleset.
func TestPrivilegedClassDispatch(t *testing.T) {
	t.Parallel()
	l := classLab(t)
	// kube-proxy's style: set 0x4000 at dstnat (before our classify
	// chain) on packets from a, and count at postrouting the packets
	// that still carry it.
	l.nftStdin(`table inet kp {
	chain kpmark {
		type filter hook prerouting priority dstnat; policy accept;
		iifname "` + l.iface("a") + `" meta mark set meta mark | 0x4000
	}
	chain post {
		type filter hook postrouting priority srcnat; policy accept;
		meta mark & 0x4000 == 0x4000 counter
	}
	chain postclass {
		type filter hook postrouting priority srcnat; policy accept;
		meta mark & 0x01ff0000 != 0 counter
	}
}`)

	l.apply(classState(l, []desired.PolicyID{allow80}, []desired.PolicyID{allow443}))
	l.check(
		probe{"a", "b", "TCP", 80, true}, probe{"a", "b", "TCP", 443, false},
		probe{"a", "c", "TCP", 443, true}, probe{"a", "c", "TCP", 80, false},
	)
	if n := l.counter("kp", "post"); n == 0 {
		t.Error("no packet kept kube-proxy's mark 0x4000 to postrouting")
	}
	// The documented contract: the class bits stay set after our chains.
	if n := l.counter("kp", "postclass"); n == 0 {
		t.Error("no packet reached postrouting with class bits set")
	}

	// move applies s and checks which tables the transaction wrote.
	move := func(what string, s *desired.State, wantB bool) {
		t.Helper()
		before := l.nft("list", "table", "inet", "brindle")
		l.apply(s)
		ops := l.dp.lastOps
		if ops[tabA] == 0 {
			t.Errorf("%s: no operation on the classify table (ops %v)", what, ops)
		}
		if wantB != (ops[tabB] > 0) {
			t.Errorf("%s: %d operations on the policy table, want some: %v", what, ops[tabB], wantB)
		}
		if after := l.nft("list", "table", "inet", "brindle"); !wantB && after != before {
			t.Errorf("%s: the policy table changed:\n%s\nwas:\n%s", what, after, before)
		}
	}

	// b moves to c's class: the classify table only.
	move("b to c's class", classState(l, []desired.PolicyID{allow443}, []desired.PolicyID{allow443}), false)
	l.check(probe{"a", "b", "TCP", 443, true}, probe{"a", "b", "TCP", 80, false}, probe{"a", "c", "TCP", 443, true})

	// b back to its old class, which no endpoint used but was retained.
	move("b back to its retained class", classState(l, []desired.PolicyID{allow80}, []desired.PolicyID{allow443}), false)
	l.check(probe{"a", "b", "TCP", 80, true}, probe{"a", "b", "TCP", 443, false})

	// b to a class nobody has: a new class chain in the policy table.
	move("b to a new class", classState(l, []desired.PolicyID{allow80, allow443}, []desired.PolicyID{allow443}), true)
	l.check(probe{"a", "b", "TCP", 80, true}, probe{"a", "b", "TCP", 443, true}, probe{"a", "c", "TCP", 80, false})

	// c's endpoint goes while its interface stays: fail closed both ways.
	s := classState(l, []desired.PolicyID{allow80}, []desired.PolicyID{allow443})
	s.Endpoints.Delete(l.iface("c"))
	l.apply(s)
	l.check(probe{"a", "c", "TCP", 443, false}, probe{"c", "a", "TCP", 80, false}, probe{"a", "b", "TCP", 80, true})

	l.nft("list", "ruleset")
	l.nft("-j", "list", "ruleset")
}

// nftStdin runs nft -f - with script on its standard input.
func (l *lab) nftStdin(script string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.host.Name(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("nft -f -: %v\n%s\n%s", err, out, script)
	}
}

// counter returns the packets counted by the counter rules of a chain.
func (l *lab) counter(table, chain string) int {
	l.t.Helper()
	n := 0
	for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(l.nft("list", "chain", "inet", table, chain), -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// TestPrivilegedClassExhaustion: with room for three classes per
// direction, a state needing four is rejected with an error naming the
// limit, and the kernel keeps the last state; a state that fits applies.
func TestPrivilegedClassExhaustion(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, false, Config{ClassMask: 0x00030000, RetainClasses: -1}, "a", "b", "c")
	for _, n := range []string{"b", "c"} {
		l.wl[n].ServeTCP(80)
		l.wl[n].ServeTCP(443)
	}
	l.apply(classState(l, []desired.PolicyID{allow80}, []desired.PolicyID{allow80}))
	before := l.tables()
	// a (the allow profile only), b, c and a fourth endpoint: four
	// distinct ingress classes.
	s := classState(l, []desired.PolicyID{allow80}, []desired.PolicyID{allow443})
	s.Endpoints.Set("calizz", ep("zz", nil, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny,
		IngressPolicies: []desired.PolicyID{allow80, allow443}}}, "allow"))
	err := l.dp.Apply(s)
	if err == nil || !strings.Contains(err.Error(), "more than 3 distinct ingress classes") || !strings.Contains(err.Error(), "ClassMask") {
		t.Fatalf("Apply of 4 ingress classes with room for 3: err = %v, want the class limit", err)
	}
	if got := l.tables(); got != before {
		t.Fatalf("a rejected state changed the kernel:\n%s\nwas:\n%s", got, before)
	}
	l.check(probe{"a", "b", "TCP", 80, true}, probe{"a", "c", "TCP", 443, false})
	// Within the limit again: the next Apply starts over from the kernel.
	l.apply(classState(l, []desired.PolicyID{allow443}, []desired.PolicyID{allow80}))
	l.check(probe{"a", "b", "TCP", 80, false}, probe{"a", "b", "TCP", 443, true}, probe{"a", "c", "TCP", 80, true})
}

// TestPrivilegedUpgradeFromEndpointChains: a host whose table holds the
// layout before class dispatch (per-endpoint chains reached through an
// interface map in the policy table; testdata/endpoint-chains-layout.nft
// is that version's pci.golden) converges on the first Apply.
func TestPrivilegedUpgradeFromEndpointChains(t *testing.T) {
	t.Parallel()
	l := newLab(t, "front", "other", "db")
	l.wl["db"].ServeTCP(6379)
	old, err := os.ReadFile("testdata/endpoint-chains-layout.nft")
	if err != nil {
		t.Fatal(err)
	}
	l.nftStdin(string(old))
	l.apply(pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db")))
	l.check(probe{"front", "db", "TCP", 6379, true}, probe{"other", "db", "TCP", 6379, false})
	got := l.tables()
	for _, stale := range []string{"brindle-fw-", "brindle-tw-", "ifname : verdict"} {
		if strings.Contains(l.nft("list", "table", "inet", "brindle"), stale) {
			t.Errorf("the policy table still holds %q after the first Apply:\n%s", stale, got)
		}
	}
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil || l.dp.Writes() != before {
		t.Errorf("Resync after the upgrade: err=%v, %d operations, want none", err, l.dp.Writes()-before)
	}
}

// TestPrivilegedGenericClass: in the default ClassAuto mode, an endpoint
// moving to a new class in a transaction that adds no other rule runs
// through the generic chain: no chain of the policy table changes (only
// set elements), and its traffic follows the new class. A policy leaving
// the state while the generic chain jumps to it stays (retained) with no
// rule change, and comes back the same way. Settle gives the class its
// own chain; the retained policy stays through it until
// RetainPoliciesFor has passed, and the next Settle drops it; the
// ruleset is then a fresh build's and verdicts are unchanged.
func TestPrivilegedGenericClass(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := classLabWith(t, Config{Now: clock.now})
	// chains is the policy table's chains and rules without set elements.
	chains := func() string {
		var keep []string
		skip := false
		for _, line := range strings.Split(l.nft("list", "table", "inet", "brindle"), "\n") {
			if strings.Contains(line, "elements = {") {
				skip = !strings.HasSuffix(strings.TrimSpace(line), "}")
				continue
			}
			if skip {
				skip = !strings.HasSuffix(strings.TrimSpace(line), "}")
				continue
			}
			keep = append(keep, line)
		}
		return strings.Join(keep, "\n")
	}
	noRuleChange := func(what string, s *desired.State) {
		t.Helper()
		before := chains()
		l.apply(s)
		if after := chains(); after != before {
			t.Errorf("%s: the policy table's chains changed (-before +after):\n%s", what, cmp.Diff(before, after))
		}
	}
	// Policy lists are in calc's order (no order: by name), which the
	// generic chain follows; a class in another order gets a chain.
	allow22 := desired.PolicyID{Tier: "default", Name: "allow22", Kind: "GlobalNetworkPolicy"}
	withAllow22 := func(s *desired.State) *desired.State {
		s.Policies.Set(allow22, desired.Policy{Inbound: []desired.Rule{allowTCP(22)}})
		return s
	}
	l.apply(withAllow22(classState(l, []desired.PolicyID{allow80}, []desired.PolicyID{allow22, allow443})))
	// The first Apply leaves the generic chains empty; the first Settle
	// lays them out (the agent calls it once idle).
	if !strings.Contains(l.nft("list", "chain", "inet", "brindle", chainToGeneric), "no generic classes") {
		t.Error("the first Apply laid the generic chains out")
	}
	if did, err := l.dp.Settle(); err != nil || !did {
		t.Fatalf("the first Settle = %v, %v; want true, nil (the generic chains' layout)", did, err)
	}
	l.check(probe{"a", "b", "TCP", 80, true}, probe{"a", "b", "TCP", 443, false})

	// b to a combination nobody has: generic.
	noRuleChange("b to a new class", withAllow22(classState(l, []desired.PolicyID{allow443, allow80}, []desired.PolicyID{allow22, allow443})))
	if n := l.dp.GenericClasses(); n != 1 {
		t.Fatalf("%d generic classes, want 1 (b's ingress)", n)
	}
	l.check(probe{"a", "b", "TCP", 80, true}, probe{"a", "b", "TCP", 443, true}, probe{"a", "c", "TCP", 80, false})

	// c drops allow22, which leaves the state: retained, no rule change.
	noRuleChange("allow22 leaves", classState(l, []desired.PolicyID{allow443, allow80}, []desired.PolicyID{allow443}))
	if l.dp.b.retained[allow22] == nil {
		t.Fatal("allow22 is not retained")
	}
	l.check(probe{"a", "c", "TCP", 443, true}, probe{"a", "c", "TCP", 80, false}, probe{"a", "b", "TCP", 443, true})
	// ... and back.
	noRuleChange("allow22 back", withAllow22(classState(l, []desired.PolicyID{allow443, allow80}, []desired.PolicyID{allow22, allow443})))
	if l.dp.b.retained[allow22] != nil || l.dp.b.policies[allow22] == nil {
		t.Fatal("allow22 is back in the state but still retained")
	}
	// Gone again, then settled: b gets a class chain of its own; the
	// retained policy stays until RetainPoliciesFor has passed.
	final := classState(l, []desired.PolicyID{allow443, allow80}, []desired.PolicyID{allow443})
	l.apply(final)
	left := clock.now()
	if did, err := l.dp.Settle(); err != nil || !did {
		t.Fatalf("Settle = %v, %v; want true, nil", did, err)
	}
	if n := l.dp.GenericClasses(); n != 0 {
		t.Errorf("%d generic classes after Settle", n)
	}
	if !strings.Contains(l.nft("list", "table", "inet", "brindle"), policyChain(allow22, true)) {
		t.Error("the retained policy's chain left the kernel before RetainPoliciesFor")
	}
	if got, want := l.dp.RetainedUntil(), left.Add(DefaultRetainPoliciesFor); !got.Equal(want) {
		t.Errorf("RetainedUntil = %v, want %v", got, want)
	}
	if l.dp.Unsettled() {
		t.Error("Unsettled with only a retained policy not yet due")
	}
	clock.advance(DefaultRetainPoliciesFor)
	if !l.dp.Unsettled() {
		t.Fatal("not Unsettled once the retained policy is due")
	}
	if did, err := l.dp.Settle(); err != nil || !did {
		t.Fatalf("Settle once due = %v, %v; want true, nil", did, err)
	}
	if strings.Contains(l.nft("list", "table", "inet", "brindle"), policyChain(allow22, true)) {
		t.Error("the retained policy's chain is still in the kernel after RetainPoliciesFor and a Settle")
	}
	if !l.dp.RetainedUntil().IsZero() {
		t.Error("RetainedUntil is set with nothing retained")
	}
	if did, err := l.dp.Settle(); err != nil || did {
		t.Errorf("a second Settle = %v, %v; want false, nil", did, err)
	}
	l.check(probe{"a", "b", "TCP", 80, true}, probe{"a", "b", "TCP", 443, true}, probe{"a", "c", "TCP", 80, false}, probe{"a", "c", "TCP", 443, true})
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil || l.dp.Writes() != before {
		t.Errorf("Resync after Settle: err=%v, %d operations, want none", err, l.dp.Writes()-before)
	}
	fb := newBuilder(l.dp.cfg)
	fresh, err := fb.build(final)
	if err != nil {
		t.Fatal(err)
	}
	fb.promote() // settled, as the other side
	if diff := cmp.Diff(classView(fb, fresh), classView(l.dp.b, l.dp.want)); diff != "" {
		t.Errorf("after Settle the model differs from a fresh build (-fresh +settled):\n%s", diff)
	}
	// A list the generic chain cannot follow (not in its order) gets a
	// chain of its own at once.
	l.apply(classState(l, []desired.PolicyID{allow443}, []desired.PolicyID{allow80, allow443}))
	if n := l.dp.GenericClasses(); n != 0 {
		t.Errorf("a class out of the generic chain's order is generic (%d generic classes)", n)
	}
	l.check(probe{"a", "c", "TCP", 80, true}, probe{"a", "c", "TCP", 443, true}, probe{"a", "b", "TCP", 80, false})
	l.nft("-j", "list", "ruleset")
}

// TestPrivilegedRetainedPolicySetKindChange: a set a retained policy uses
// changes kind (its kernel set is renamed) while the policy is retained:
// the Apply succeeds (the retained policy goes, with its chain and the
// generic chains' rule for it), the kernel is what the model says, and
// traffic follows the active policy.
func TestPrivilegedRetainedPolicySetKindChange(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b")
	l.wl["b"].ServeTCP(80)
	p1, p2 := gpol("p1"), gpol("p2")
	state := func(set desired.IPSet, pols ...desired.PolicyID) *desired.State {
		s := l.base()
		s.IPSets.Set("s:a", set)
		for _, p := range pols {
			s.Policies.Set(p, fromSet(desired.Allow, "s:a"))
		}
		e, _ := s.Endpoints.Get(l.iface("b"))
		e.Tiers = []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: pols}}
		s.Endpoints.Set(l.iface("b"), e)
		return s
	}
	single := netSet(netip.PrefixFrom(l.ip("a"), 32).String())
	l.apply(state(single, p1, p2))
	if _, err := l.dp.Settle(); err != nil {
		t.Fatal(err)
	}
	l.apply(state(single, p1))
	if l.dp.b.retained[p2] == nil {
		t.Fatal("p2 is not retained")
	}
	l.apply(state(netSet(netip.PrefixFrom(l.ip("a"), 32).String(), "10.99.0.0/24"), p1))
	if l.dp.b.retained[p2] != nil {
		t.Error("p2 is still retained after its set changed kind")
	}
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil || l.dp.Writes() != before {
		t.Errorf("Resync: err=%v, %d operations, want none", err, l.dp.Writes()-before)
	}
	if strings.Contains(l.nft("list", "table", "inet", "brindle"), policyChain(p2, true)) {
		t.Error("the released policy's chain is still in the kernel")
	}
	l.check(probe{"a", "b", "TCP", 80, true})
}
