package nft

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/internal/netnstest"
)

// base returns a state in which every lab workload is an endpoint with the
// allow-all profile "allow" and nothing else.
func (l *lab) base() *desired.State {
	s := &desired.State{
		IPSets:    desired.MapOf(map[string]desired.IPSet{}),
		Policies:  desired.MapOf(map[desired.PolicyID]desired.Policy{}),
		Profiles:  desired.MapOf(map[string]desired.Profile{"allow": allowAll}),
		Endpoints: desired.MapOf(map[string]desired.Endpoint{}),
	}
	for name, w := range l.wl {
		s.Endpoints.Set(w.IfName, ep(name, w.IPs, nil, "allow"))
	}
	return s
}

func tcp(ports ...uint16) (*uint8, desired.Match) {
	var m desired.Match
	for _, p := range ports {
		m.Ports = append(m.Ports, desired.PortRange{Min: p, Max: p})
	}
	return u8(desired.ProtoTCP), m
}

func allowTCP(port uint16) desired.Rule {
	p, m := tcp(port)
	return desired.Rule{Action: desired.Allow, Protocol: p, Dst: m}
}

func ruleTCP(a desired.Action, port uint16) desired.Rule {
	r := allowTCP(port)
	r.Action = a
	return r
}

func TestPrivilegedProfileAllowAndPCI(t *testing.T) {
	t.Parallel()
	l := newLab(t, "front", "other", "db")
	for _, w := range l.wl {
		w.ServeTCP(6379)
		w.ServeTCP(80)
	}
	l.apply(pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db")))
	l.check(
		// Default allow via the kns profile for endpoints no policy selects.
		probe{"db", "front", "TCP", 80, true},
		probe{"other", "front", "TCP", 6379, true},
		// The PCI database: only PCI frontends, only 6379; default deny
		// for everything else although its profile allows all.
		probe{"front", "db", "TCP", 6379, true},
		probe{"other", "db", "TCP", 6379, false},
		probe{"front", "db", "TCP", 80, false},
	)
}

// TestPrivilegedTiersOrderDenyPassLog checks Calico's evaluation order:
// tiers in order, policies and rules in order, first Allow/Deny decides,
// Log continues, Pass leaves the tier, default actions, profiles in order,
// a missing profile denies.
//
// It runs with tiers walked linearly and with tiers reached through a
// tier index (index.go).
func TestPrivilegedTiersOrderDenyPassLog(t *testing.T) {
	t.Parallel()
	eachIndexMode(t, testTiersOrderDenyPassLog)
}

// eachIndexMode runs test in parallel with tiers walked linearly, with
// every tier indexed, and with every class run through the generic
// chains (generic.go).
func eachIndexMode(t *testing.T, test func(*testing.T, Config)) {
	for _, mode := range []struct {
		name string
		cfg  Config
	}{{"linear", Config{IndexMinPolicies: -1, ClassMode: ClassDirect}}, {"indexed", Config{IndexMinPolicies: 1, ClassMode: ClassDirect}},
		{"generic", Config{GenericFromStart: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			test(t, mode.cfg)
		})
	}
}

func testTiersOrderDenyPassLog(t *testing.T, cfg Config) {
	l := newLabWith(t, false, cfg, "client", "tiered", "passing", "profiles", "missing")
	for _, port := range []uint16{80, 81, 82, 83, 84, 85} {
		l.wl["tiered"].ServeTCP(port)
	}
	l.wl["passing"].ServeTCP(80)
	l.wl["profiles"].ServeTCP(80)
	l.wl["profiles"].ServeTCP(81)
	l.wl["missing"].ServeTCP(80)

	s := l.base()
	p1 := desired.PolicyID{Tier: "admin", Name: "p1", Kind: "GlobalNetworkPolicy"}
	p2 := desired.PolicyID{Tier: "admin", Name: "p2", Kind: "GlobalNetworkPolicy"}
	p3 := desired.PolicyID{Tier: "default", Name: "p3", Kind: "GlobalNetworkPolicy"}
	p4 := desired.PolicyID{Tier: "default", Name: "p4", Kind: "GlobalNetworkPolicy"}
	logTCP := desired.Rule{Action: desired.Log, Protocol: u8(desired.ProtoTCP)}
	s.Policies.Set(p1, desired.Policy{Inbound: []desired.Rule{logTCP, ruleTCP(desired.Deny, 81), ruleTCP(desired.Pass, 82)}})
	s.Policies.Set(p2, desired.Policy{Inbound: []desired.Rule{ruleTCP(desired.Deny, 82), allowTCP(83)}})
	s.Policies.Set(p3, desired.Policy{Inbound: []desired.Rule{allowTCP(82), allowTCP(84), ruleTCP(desired.Deny, 85), allowTCP(85)}})
	s.Policies.Set(p4, desired.Policy{Inbound: []desired.Rule{allowTCP(85)}})
	admin := desired.TierPolicies{Name: "admin", DefaultAction: desired.Pass, IngressPolicies: []desired.PolicyID{p1, p2}}
	def := desired.TierPolicies{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{p3, p4}}
	s.Endpoints.Set(l.iface("tiered"), ep("tiered", l.wl["tiered"].IPs, []desired.TierPolicies{admin, def}, "allow"))
	s.Endpoints.Set(l.iface("passing"), ep("passing", l.wl["passing"].IPs, []desired.TierPolicies{admin}, "allow"))
	s.Profiles.Set("deny-80", desired.Profile{Inbound: []desired.Rule{ruleTCP(desired.Deny, 80)}})
	s.Endpoints.Set(l.iface("profiles"), ep("profiles", l.wl["profiles"].IPs, nil, "deny-80", "allow"))
	s.Endpoints.Set(l.iface("missing"), ep("missing", l.wl["missing"].IPs, nil, "no-such-profile", "allow"))
	l.apply(s)
	l.check(
		probe{"client", "tiered", "TCP", 80, false}, // admin passes by default, default tier denies by default
		probe{"client", "tiered", "TCP", 81, false}, // Deny in admin, after a Log that continued
		probe{"client", "tiered", "TCP", 82, true},  // Pass skips p2's Deny; p3 allows
		probe{"client", "tiered", "TCP", 83, true},  // Allow in admin ends evaluation
		probe{"client", "tiered", "TCP", 84, true},  // allowed in the second tier
		probe{"client", "tiered", "TCP", 85, false}, // first matching rule (Deny) wins over later Allows
		probe{"client", "passing", "TCP", 80, true}, // only a Pass-default tier: on to the profiles
		probe{"client", "profiles", "TCP", 80, false},
		probe{"client", "profiles", "TCP", 81, true},
		probe{"client", "missing", "TCP", 80, false}, // a missing profile is deny-all
		probe{"tiered", "client", "TCP", 80, false},  // client serves nothing: sanity of the probe
	)
}

func TestPrivilegedNamedPortsNetsICMPUDP(t *testing.T) {
	t.Parallel()
	eachIndexMode(t, testNamedPortsNetsICMPUDP)
}

func testNamedPortsNetsICMPUDP(t *testing.T, cfg Config) {
	l := newLabWith(t, false, cfg, "a", "b", "c")
	c := l.wl["c"]
	for _, p := range []uint16{80, 81, 8080} {
		c.ServeTCP(p)
	}
	c.ServeUDP(53)
	s := l.base()
	pol := desired.PolicyID{Tier: "default", Name: "c", Namespace: "ns", Kind: "NetworkPolicy"}
	fromA := desired.CIDRSetID([]netip.Prefix{netip.PrefixFrom(l.ip("a"), 32)})
	notB := desired.CIDRSetID([]netip.Prefix{netip.PrefixFrom(l.ip("b"), 32)})
	s.IPSets.Set(fromA, netSet(netip.PrefixFrom(l.ip("a"), 32).String()))
	s.IPSets.Set(notB, netSet(netip.PrefixFrom(l.ip("b"), 32).String()))
	s.IPSets.Set("n:http", desired.NewIPSet(desired.NamedPorts, desired.NamedPortMember(l.ip("c"), desired.ProtoTCP, 8080)))
	s.Policies.Set(pol, desired.Policy{Inbound: []desired.Rule{
		{Action: desired.Allow, Protocol: u8(desired.ProtoTCP),
			Dst: desired.Match{Ports: []desired.PortRange{{Min: 80, Max: 80}}, NamedPortIPSetIDs: []string{"n:http"}}},
		{Action: desired.Allow, Protocol: u8(desired.ProtoUDP), Src: desired.Match{NetsIPSetID: fromA},
			Dst: desired.Match{Ports: []desired.PortRange{{Min: 53, Max: 53}}}},
		{Action: desired.Allow, Protocol: u8(desired.ProtoICMP), ICMP: &desired.ICMPMatch{Type: 8},
			Src: desired.Match{NotNetsIPSetID: notB}},
	}})
	s.Endpoints.Set(l.iface("c"), ep("c", c.IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pol}}}, "allow"))
	l.apply(s)
	l.check(
		probe{"a", "c", "TCP", 80, true},   // numeric port
		probe{"a", "c", "TCP", 8080, true}, // named port, ORed with the numeric one
		probe{"a", "c", "TCP", 81, false},
		probe{"a", "c", "UDP", 53, true}, // nets
		probe{"b", "c", "UDP", 53, false},
		probe{"a", "c", "ICMP", 0, true}, // notNets
		probe{"b", "c", "ICMP", 0, false},
		probe{"c", "a", "ICMP", 0, true}, // a is open via its profile
	)
}

func TestPrivilegedSCTP(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b")
	if err := netnstest.SCTPAvailable(l.wl["b"].NS); err != nil {
		t.Skip(err)
	}
	if err := l.wl["b"].ServeSCTP(9000); err != nil {
		t.Fatal(err)
	}
	s := l.base()
	pol := desired.PolicyID{Tier: "default", Name: "sctp", Kind: "GlobalNetworkPolicy"}
	s.Policies.Set(pol, desired.Policy{Inbound: []desired.Rule{{Action: desired.Allow, Protocol: u8(desired.ProtoSCTP),
		Dst: desired.Match{Ports: []desired.PortRange{{Min: 9000, Max: 9000}}}}}})
	s.Endpoints.Set(l.iface("b"), ep("b", l.wl["b"].IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pol}}}))
	l.apply(s)
	ok, err := netnstest.Probe(l.wl["a"].NS, l.ip("b"), 9000, "SCTP", 0)
	if err != nil || !ok {
		t.Fatalf("SCTP a->b:9000 = %v, %v; want allowed", ok, err)
	}
}

// TestPrivilegedSetChangeIdempotencyAndRemoval: a label change that adds
// one IP to one set is one element add; re-applying is free; removing an
// endpoint fails closed.
func TestPrivilegedSetChangeIdempotencyAndRemoval(t *testing.T) {
	t.Parallel()
	l := newLab(t, "front", "other", "db")
	for _, w := range l.wl {
		w.ServeTCP(6379)
	}
	s := pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db"))
	l.apply(s)
	l.check(probe{"other", "db", "TCP", 6379, false})

	before := l.dp.Writes()
	l.apply(s)
	if err := l.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if got := l.dp.Writes() - before; got != 0 {
		t.Fatalf("re-Apply and Resync of an unchanged state sent %d operations, want 0", got)
	}

	// "other" gets compliance=PCI: calc adds its IP to the selector's set.
	s2 := pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db"))
	s2.IPSets.Set(selPCIFrontend, addrSet(l.ip("front").String(), l.ip("other").String()))
	before = l.dp.Writes()
	l.apply(s2)
	if got := l.dp.Writes() - before; got != 1 {
		t.Fatalf("adding one set member sent %d operations, want 1 (one element add)", got)
	}
	l.check(probe{"other", "db", "TCP", 6379, true})

	// The db endpoint goes away while its interface stays: fail closed.
	s3 := pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db"))
	s3.Endpoints.Delete(l.iface("db"))
	l.apply(s3)
	l.check(
		probe{"front", "db", "TCP", 6379, false},
		probe{"db", "front", "TCP", 6379, false},
		probe{"front", "other", "TCP", 6379, true},
	)
	if strings.Contains(l.nft("list", "table", "inet", "brindle-classify"), `"`+l.iface("db")+`"`) {
		t.Error("the removed endpoint's interface is still classified in the kernel")
	}
}

// TestPrivilegedSetKindChange: a Nets set (what calc gives a rule
// selector) of single addresses is a plain address set in the kernel; a
// member wider than one address (a network set's CIDR) makes it an
// interval set under another name, and back. Verdicts follow, the old
// kernel set goes in the same transaction, and re-Apply and Resync then
// find nothing to do.
func TestPrivilegedSetKindChange(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b", "c")
	l.wl["c"].ServeTCP(5432)
	const sel = "s:role == 'client'"
	pol := desired.PolicyID{Tier: "default", Name: "db", Kind: "GlobalNetworkPolicy"}
	state := func(set desired.IPSet) *desired.State {
		s := l.base()
		s.IPSets.Set(sel, set)
		p, m := tcp(5432)
		s.Policies.Set(pol, desired.Policy{Inbound: []desired.Rule{{Action: desired.Allow, Protocol: p, Src: desired.Match{IPSetIDs: []string{sel}}, Dst: m}}})
		s.Endpoints.Set(l.iface("c"), ep("c", l.wl["c"].IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pol}}}))
		return s
	}
	hostsOnly := netSet(netip.PrefixFrom(l.ip("a"), 32).String())
	withNet := netSet(netip.PrefixFrom(l.ip("a"), 32).String(), netip.PrefixFrom(l.ip("b"), 30).Masked().String())
	a4, c4 := setName(sel, desired.Addrs, 4), setName(sel, desired.Nets, 4)
	for _, step := range []struct {
		name       string
		set        desired.IPSet
		want, gone string
		bReachesDB bool
	}{
		{"addresses", hostsOnly, a4, c4, false},
		{"a network joins", withNet, c4, a4, true},
		{"the network leaves", hostsOnly, a4, c4, false},
	} {
		s := state(step.set)
		l.apply(s)
		l.check(probe{"a", "c", "TCP", 5432, true}, probe{"b", "c", "TCP", 5432, step.bReachesDB})
		out := l.nft("list", "table", "inet", "brindle")
		if !strings.Contains(out, "set "+step.want+" {") || strings.Contains(out, step.gone) {
			t.Fatalf("%s: want set %s and no %s in the kernel:\n%s", step.name, step.want, step.gone, out)
		}
		before := l.dp.Writes()
		l.apply(s)
		if err := l.dp.Resync(); err != nil {
			t.Fatal(err)
		}
		if got := l.dp.Writes() - before; got != 0 {
			t.Fatalf("%s: re-Apply and Resync sent %d operations, want 0", step.name, got)
		}
	}
}

// TestPrivilegedLargeAddressSet: an all() selector in a 100,000-endpoint
// cluster is a 100,000-address set; the kernel's hash set takes it whole,
// reads back whole, and then changes by one element.
func TestPrivilegedLargeAddressSet(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b")
	const sel, n = "s:all()", 100000
	ms := make([]desired.Member, 0, n+1)
	for i := range n {
		ms = append(ms, desired.NetMember(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)}), 32)))
	}
	ms = append(ms, desired.NetMember(netip.PrefixFrom(l.ip("a"), 32)))
	pol := desired.PolicyID{Tier: "default", Name: "all", Kind: "GlobalNetworkPolicy"}
	s := l.base()
	s.IPSets.Set(sel, desired.NewIPSet(desired.Nets, ms...))
	p, m := tcp(8080)
	s.Policies.Set(pol, desired.Policy{Inbound: []desired.Rule{{Action: desired.Allow, Protocol: p, Src: desired.Match{IPSetIDs: []string{sel}}, Dst: m}}})
	s.Endpoints.Set(l.iface("b"), ep("b", l.wl["b"].IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pol}}}))
	l.wl["b"].ServeTCP(8080)
	l.apply(s)
	l.check(probe{"a", "b", "TCP", 8080, true})
	// Right after a big insert the kernel grows the hash table in the
	// background, and a dump taken across that resize can miss elements
	// (it resumes by position): a Resync then re-adds what it did not
	// see, which is harmless (nothing is ever deleted for it). Within a
	// few passes nothing is left to do.
	for pass := 1; ; pass++ {
		before := l.dp.Writes()
		if err := l.dp.Resync(); err != nil {
			t.Fatal(err)
		}
		if l.dp.Writes() == before {
			break
		}
		if pass == 5 {
			t.Fatalf("Resync of a %d-element set still sends operations after %d passes", n+1, pass)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := l.nft("list", "set", "inet", "brindle", setName(sel, desired.Addrs, 4))
	if got := strings.Count(out, ","); got != n { // n+1 elements, n separators
		t.Fatalf("the kernel set lists %d separators, want %d", got, n)
	}
	s2 := *s
	s2.IPSets.Set(sel, desired.NewIPSet(desired.Nets, ms[:n]...)) // a leaves
	before := l.dp.Writes()
	l.apply(&s2)
	if got := l.dp.Writes() - before; got != 1 {
		t.Fatalf("removing one of %d members sent %d operations, want 1", n+1, got)
	}
	l.check(probe{"a", "b", "TCP", 8080, false})
}

// TestPrivilegedDriftRepair deletes our table, a rule and a set element
// behind the dataplane's back, and adds foreign objects to our table;
// Resync restores the ruleset and the verdicts.
func TestPrivilegedDriftRepair(t *testing.T) {
	t.Parallel()
	l := newLab(t, "front", "other", "db")
	for _, w := range l.wl {
		w.ServeTCP(6379)
	}
	s := pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db"))
	l.apply(s)
	want := []probe{{"front", "db", "TCP", 6379, true}, {"other", "db", "TCP", 6379, false}}
	l.check(want...)
	golden := l.tables()

	resync := func(what string) {
		t.Helper()
		before := l.dp.Writes()
		if err := l.dp.Resync(); err != nil {
			t.Fatalf("Resync after %s: %v", what, err)
		}
		if l.dp.Writes() == before {
			t.Errorf("Resync after %s sent nothing", what)
		}
		if got := l.tables(); got != golden {
			t.Errorf("after %s and Resync the tables differ:\n%s\nwant:\n%s", what, got, golden)
		}
		l.check(want...)
		before = l.dp.Writes()
		if err := l.dp.Resync(); err != nil || l.dp.Writes() != before {
			t.Errorf("second Resync after %s: err=%v, sent %d operations", what, err, l.dp.Writes()-before)
		}
	}

	l.nft("delete", "table", "inet", "brindle")
	l.check(probe{"other", "db", "TCP", 6379, true}) // no table: no policy
	resync("deleting the table")

	// The classify table goes: every workload interface is unclassified,
	// so the dispatch drops (fail closed) until Resync.
	l.nft("delete", "table", "inet", "brindle-classify")
	l.check(probe{"front", "db", "TCP", 6379, false})
	resync("deleting the classify table")

	// An interface's classify element goes: that workload fails closed.
	l.nft("delete", "element", "inet", "brindle-classify", "brindle-to-wl", `{ "`+l.iface("db")+`" }`)
	l.check(probe{"front", "db", "TCP", 6379, false})
	resync("deleting a classify element")

	// Delete the PCI allow rule.
	pchain := policyChain(pciPolicy, true)
	listing := l.nft("-a", "list", "chain", "inet", "brindle", pchain)
	m := regexp.MustCompile(`(?m)ip saddr .*# handle (\d+)$`).FindStringSubmatch(listing)
	if m == nil {
		t.Fatalf("no rule handle in:\n%s", listing)
	}
	l.nft("delete", "rule", "inet", "brindle", pchain, "handle", m[1])
	l.check(probe{"front", "db", "TCP", 6379, false})
	resync("deleting a rule")

	// Delete the one member of the frontend set.
	l.nft("delete", "element", "inet", "brindle", setName(selPCIFrontend, desired.Addrs, 4), "{ "+l.ip("front").String()+" }")
	l.check(probe{"front", "db", "TCP", 6379, false})
	resync("deleting a set element")

	// Foreign objects in our table are removed.
	l.nft("add", "chain", "inet", "brindle", "intruder")
	l.nft("add", "set", "inet", "brindle", "brindle-a4-stale", "{ type ipv4_addr; }")
	l.nft("add", "rule", "inet", "brindle", "brindle-forward-ingress", "accept")
	l.nft("add", "chain", "inet", "brindle-classify", "intruder")
	l.nft("add", "rule", "inet", "brindle-classify", "brindle-prerouting-classify", "meta mark set 0x00010000")
	resync("adding foreign objects")
}

// TestPrivilegedFirstApplySweepsAndNothingBefore: nothing is touched
// before the first Apply; the first Apply removes stale objects of ours.
func TestPrivilegedFirstApplySweepsAndNothingBefore(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b")
	l.wl["b"].ServeTCP(80)
	l.nft("add", "table", "inet", "brindle")
	l.nft("add", "chain", "inet", "brindle", "brindle-tw-stale")
	l.nft("add", "set", "inet", "brindle", "brindle-c4-stale", "{ type ipv4_addr; flags interval; }")
	// One of our base chains exists with the wrong shape (no hook): it
	// cannot be altered in place, so the first Apply recreates the table.
	l.nft("add", "chain", "inet", "brindle", chainPreEgress)
	// A base chain of the earlier layout (egress at input): swept.
	l.nft("add", "chain", "inet", "brindle", "brindle-input-egress", "{ type filter hook input priority filter; policy accept; }")
	// The layout before class dispatch: an interface map in the policy
	// table going to a per-endpoint chain.
	l.nft("add", "map", "inet", "brindle", "brindle-from-wl", `{ type ifname : verdict; elements = { "cali0" : goto brindle-tw-stale } }`)
	// A stale class in the classify table.
	l.nft("add", "table", "inet", "brindle-classify")
	l.nft("add", "chain", "inet", "brindle-classify", "brindle-mark-from-99")
	if err := l.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if got := l.nft("list", "table", "inet", "brindle"); !strings.Contains(got, "brindle-tw-stale") || l.dp.Writes() != 0 {
		t.Fatalf("Resync before the first Apply touched the kernel (writes %d):\n%s", l.dp.Writes(), got)
	}
	l.apply(l.base())
	got := l.tables()
	if strings.Contains(got, "stale") || strings.Contains(got, "input-egress") || strings.Contains(got, "mark-from-99") ||
		strings.Contains(got, "ifname : verdict; elements = { \"cali0\"") {
		t.Fatalf("first Apply left stale objects:\n%s", got)
	}
	if !strings.Contains(got, "chain "+chainPreEgress+" {\n\t\ttype filter hook prerouting priority filter; policy accept;") {
		t.Fatalf("first Apply did not repair the base chain:\n%s", got)
	}
	l.check(probe{"a", "b", "TCP", 80, true})
}

// TestPrivilegedWorkloadToHost checks DefaultEndpointToHostAction after
// the workload's egress policy.
func TestPrivilegedWorkloadToHost(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a")
	hostIP := netip.MustParseAddr("10.99.0.1")
	if err := l.host.Do(func() error {
		lo, err := l.host.Handle().LinkByName("lo")
		if err != nil {
			return err
		}
		return l.host.Handle().AddrAdd(lo, mustNLAddr(hostIP))
	}); err != nil {
		t.Fatal(err)
	}
	serveHostTCP(t, l.host, netip.AddrPortFrom(hostIP, 7000))
	hostProbe := func(want bool) {
		t.Helper()
		ok, err := netnstest.Probe(l.wl["a"].NS, hostIP, 7000, "TCP", 0)
		if err != nil || ok != want {
			t.Errorf("a->host:7000 = %v, %v; want %v", ok, err, want)
		}
	}
	s := l.base()
	s.Config.DefaultEndpointToHostAction = desired.EndpointToHostDrop
	l.apply(s)
	hostProbe(false)
	s = l.base()
	s.Config.DefaultEndpointToHostAction = desired.EndpointToHostAccept
	l.apply(s)
	hostProbe(true)
	// Egress policy still applies before the host action.
	s = l.base()
	s.Config.DefaultEndpointToHostAction = desired.EndpointToHostAccept
	s.Profiles.Set("allow", desired.Profile{Inbound: allowAll.Inbound, Outbound: []desired.Rule{ruleTCP(desired.Deny, 7000), {Action: desired.Allow}}})
	l.apply(s)
	hostProbe(false)
}

func serveHostTCP(t *testing.T, ns *netnstest.NS, ap netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ap.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := c.Read(b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
}

// TestPrivilegedKitchenSinkRoundTrip programs every rule feature (IPv6
// sets, interval sets up to 0.0.0.0/0, named-port concatenations,
// anonymous port sets, several interface prefixes) and checks that the
// kernel reads back as exactly what was written: Resync sends nothing.
// Then it moves to another state and back.
func TestPrivilegedKitchenSinkRoundTrip(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	ks := kitchenSink()
	l.apply(ks)
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if got := l.dp.Writes() - before; got != 0 {
		t.Fatalf("Resync right after Apply sent %d operations, want 0", got)
	}
	// Shrink and grow an interval set (merged neighbours), drop a policy.
	ks2 := kitchenSink()
	for id, set := range ks2.IPSets.All() {
		if set.Type == desired.Nets && id != "c:all" {
			ks2.IPSets.Set(id, netSet("10.0.0.0/8", "192.168.0.0/24", "172.16.0.0/12"))
		}
	}
	l.apply(ks2)
	l.apply(kitchenSink())
	before = l.dp.Writes()
	if err := l.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if got := l.dp.Writes() - before; got != 0 {
		t.Fatalf("Resync after a round trip sent %d operations, want 0", got)
	}
	// Policies gone from the state stay for the generic chains until
	// Settle.
	l.apply(&desired.State{})
	if _, err := l.dp.Settle(); err != nil {
		t.Fatal(err)
	}
	if got := l.nft("list", "table", "inet", "brindle"); strings.Contains(got, "brindle-pi-") || strings.Contains(got, "set a4-") {
		t.Fatalf("empty state left policy chains or sets:\n%s", got)
	}
}

// TestPrivilegedIPv6 checks the IPv6 path: v6 set members, the ip6 rule
// variants, and router/neighbour discovery with the host while
// DefaultEndpointToHostAction drops.
func TestPrivilegedIPv6(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, true, Config{}, "a", "b", "c")
	l.wl["b"].ServeTCP(80)
	l.wl["a"].ServeTCP(80)
	s := l.base()
	pol := desired.PolicyID{Tier: "default", Name: "v6", Kind: "GlobalNetworkPolicy"}
	// Only a's IPv6 address is in the set: a reaches b over IPv6 only.
	s.IPSets.Set("s:a6", addrSet(l.wl["a"].IPs[1].String()))
	s.Policies.Set(pol, desired.Policy{Inbound: []desired.Rule{{Action: desired.Allow, Protocol: u8(desired.ProtoTCP),
		Src: desired.Match{IPSetIDs: []string{"s:a6"}}, Dst: desired.Match{Ports: []desired.PortRange{{Min: 80, Max: 80}}}}}})
	s.Endpoints.Set(l.iface("b"), ep("b", l.wl["b"].IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pol}}}, "allow"))
	l.apply(s)
	l.check(
		probe{"a", "b", "TCP6", 80, true},
		probe{"a", "b", "TCP", 80, false},
		probe{"c", "b", "TCP6", 80, false},
		probe{"b", "a", "TCP6", 80, true},
	)
}

// TestPrivilegedKernelErrorReported: a transaction the kernel rejects
// (planned against a table someone deleted) returns an error naming the
// rejected message, and the next Apply reads the kernel back and
// programs the whole state. Messages are sent without acks, so this
// checks that errors still come back.
func TestPrivilegedKernelErrorReported(t *testing.T) {
	t.Parallel()
	l := newLab(t, "front", "other", "db")
	l.wl["db"].ServeTCP(6379)
	mk := func() *desired.State {
		return pciState(l.ip("front"), l.ip("other"), l.ip("db"), l.iface("front"), l.iface("other"), l.iface("db"))
	}
	l.apply(mk())
	l.nft("delete", "table", "inet", "brindle")
	s2 := mk()
	s2.IPSets.Set(selPCIFrontend, addrSet(l.ip("front").String(), l.ip("other").String()))
	err := l.dp.Apply(s2)
	if err == nil || !strings.Contains(err.Error(), "kernel rejected new set elements") {
		t.Fatalf("Apply against a deleted table: err = %v, want the kernel's rejection of the element add", err)
	}
	if out := l.nft("list", "tables"); out != "table inet brindle-classify\n" {
		t.Fatalf("a rejected transaction changed the kernel:\n%s", out)
	}
	l.apply(s2)
	l.check(probe{"other", "db", "TCP", 6379, true}, probe{"front", "db", "TCP", 6379, true})
	if !strings.Contains(l.nft("list", "table", "inet", "brindle"), "brindle-tc-") {
		t.Error("the table was not restored after the failed transaction")
	}
}

// TestPrivilegedDeltaSteps applies the incremental test's state sequence
// to a real kernel with calc-style Deltas: after each step the kernel holds
// exactly the model (a Resync finds nothing to repair) and the model is a
// fresh build's.
func TestPrivilegedDeltaSteps(t *testing.T) {
	t.Parallel()
	ns := netnstest.NewNS(t, "nftdelta")
	// Each step's model is compared with a fresh build's after a
	// Settle, which then drops the policies the step removed.
	dp, err := New(Config{NetNSFd: int(ns.NsHandle()), RetainPoliciesFor: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	prev, prevGen := &desired.State{}, uint64(0)
	deltas := 0
	for _, st := range incrementalStepList() {
		s := withDelta(prev, st.s, prevGen)
		prev, prevGen = st.s, s.Gen
		if dp.b != nil && dp.b.deltaOf(s) != nil {
			deltas++
		}
		if err := dp.Apply(s); err != nil {
			t.Fatalf("%s: Apply: %v", st.name, err)
		}
		before := dp.Writes()
		if err := dp.Resync(); err != nil {
			t.Fatalf("%s: Resync: %v", st.name, err)
		}
		if got := dp.Writes() - before; got != 0 {
			t.Fatalf("%s: the kernel differs from the model: Resync sent %d operations", st.name, got)
		}
		if _, err := dp.Settle(); err != nil {
			t.Fatalf("%s: Settle: %v", st.name, err)
		}
		before = dp.Writes()
		if err := dp.Resync(); err != nil {
			t.Fatalf("%s: Resync after Settle: %v", st.name, err)
		}
		if got := dp.Writes() - before; got != 0 {
			t.Fatalf("%s: after Settle the kernel differs from the model: Resync sent %d operations", st.name, got)
		}
		fb := newBuilder(dp.cfg)
		fresh, err := fb.build(st.s)
		if err != nil {
			t.Fatal(err)
		}
		fb.promote() // settled, as the other side
		if diff := cmp.Diff(classView(fb, fresh), classView(dp.b, dp.want)); diff != "" {
			t.Fatalf("%s: model differs from a fresh build (-fresh +applied):\n%s", st.name, diff)
		}
	}
	if steps := len(incrementalStepList()); deltas < steps/2 {
		t.Errorf("the Delta was taken in %d of %d steps; want most", deltas, steps)
	}
}

// TestPrivilegedSetDroppedAndReusedInOneBuild: in one Apply a selector
// set's members change (its elements are changed in place), its only
// policy goes, and a new profile uses it: the set leaves the table's model
// and comes back as the same object in the same build. The kernel must get
// the member change (it once kept the old members: the journal was skipped
// for a set recorded as replaced), so the moved address is allowed, the
// old one denied, and a Resync finds nothing to repair.
func TestPrivilegedSetDroppedAndReusedInOneBuild(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b", "c")
	port := l.wl["a"].ServeTCP(8080)
	const set = "s:x"
	pol := gpol("only-user")
	s1 := l.base()
	s1.IPSets.Set(set, addrSet(l.ip("b").String()))
	s1.Policies.Set(pol, fromSet(desired.Allow, set))
	e, _ := s1.Endpoints.Get(l.iface("a"))
	e.Tiers = []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: []desired.PolicyID{pol}}}
	e.ProfileIDs = nil
	s1.Endpoints.Set(l.iface("a"), e)
	l.apply(s1)
	l.check(probe{"b", "a", "TCP", port, true}, probe{"c", "a", "TCP", port, false})

	s2 := l.base()
	s2.IPSets.Set(set, addrSet(l.ip("c").String()))
	s2.Profiles.Set("uses-x", desired.Profile{Inbound: []desired.Rule{{Action: desired.Allow, Src: desired.Match{IPSetIDs: []string{set}}}}})
	e2, _ := s2.Endpoints.Get(l.iface("a"))
	e2.Tiers, e2.ProfileIDs = nil, []string{"uses-x"}
	s2.Endpoints.Set(l.iface("a"), e2)
	l.apply(s2)
	l.check(probe{"c", "a", "TCP", port, true}, probe{"b", "a", "TCP", port, false})
	l.inSync()
}

// inSync checks that a Resync finds nothing to repair: the kernel holds
// what the last Apply meant.
func (l *lab) inSync() {
	l.t.Helper()
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil {
		l.t.Fatal(err)
	}
	if got := l.dp.Writes() - before; got != 0 {
		l.t.Errorf("Resync after the last Apply sent %d operations, want 0 (the kernel missed part of it)", got)
	}
}

// retainedState is the lab's base state with endpoint a having only the
// given default-tier ingress policies (no profile: default deny), for the
// retained-policy cases below; it has a Gen, so that Deltas can be given.
func retainedState(l *lab, sets map[string]desired.IPSet, pols map[desired.PolicyID]desired.Policy, tier []desired.PolicyID) *desired.State {
	s := l.base()
	s.IPSets, s.Policies = desired.MapOf(sets), desired.MapOf(pols)
	e, _ := s.Endpoints.Get(l.iface("a"))
	e.ProfileIDs, e.Tiers = nil, nil
	if len(tier) > 0 {
		e.Tiers = []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: tier}}
	}
	s.Endpoints.Set(l.iface("a"), e)
	s.Gen = nextGen()
	return s
}

// TestPrivilegedRetainedReleaseDropsPatchedSet: policy P (retained after
// it left, the generic chains being laid out) is the only user of set B.
// In one Apply, set A that P also uses gains its first IPv6 member
// (reshaped: P is released and B's kernel set dropped), B gains a member
// (patched while dropped) and a new policy Q takes B back. The kernel must
// hold B's new member (it once kept the old ones: the change went to the
// dropped set without a journal).
func TestPrivilegedRetainedReleaseDropsPatchedSet(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b", "c")
	port := l.wl["a"].ServeTCP(8080)
	const A, B = "s:A", "s:B"
	P, Q := gpol("P"), gpol("Q")
	fromAorB := desired.Policy{Inbound: []desired.Rule{
		{Action: desired.Allow, Src: desired.Match{IPSetIDs: []string{A}}},
		{Action: desired.Allow, Src: desired.Match{IPSetIDs: []string{B}}}}}
	s1 := retainedState(l, map[string]desired.IPSet{A: netSet("10.255.0.1/32"), B: addrSet(l.ip("b").String())},
		map[desired.PolicyID]desired.Policy{P: fromAorB}, []desired.PolicyID{P})
	l.apply(s1)
	if _, err := l.dp.Settle(); err != nil { // lays the generic chains out: P is jumped to
		t.Fatal(err)
	}
	s2 := retainedState(l, map[string]desired.IPSet{A: netSet("10.255.0.1/32"), B: addrSet(l.ip("b").String())}, nil, nil)
	s2.Delta = &desired.Delta{Since: s1.Gen, Policies: []desired.PolicyID{P}, Endpoints: []string{l.iface("a")}}
	l.apply(s2) // P is retained
	s3 := retainedState(l, map[string]desired.IPSet{A: netSet("10.255.0.1/32", "fd00::1/128"), B: addrSet(l.ip("b").String(), l.ip("c").String())},
		map[desired.PolicyID]desired.Policy{Q: fromSet(desired.Allow, B)}, []desired.PolicyID{Q})
	s3.Delta = &desired.Delta{Since: s2.Gen, IPSets: []string{A, B}, Policies: []desired.PolicyID{Q}, Endpoints: []string{l.iface("a")}}
	l.apply(s3)
	l.check(probe{"c", "a", "TCP", port, true}, probe{"b", "a", "TCP", port, true})
	l.inSync()
}

// TestPrivilegedRetainedPolicySetRenamedSameApply: in one Apply, set A
// gains a member wider than one address (its kernel set is renamed: the
// old one goes) and its only policy P leaves while the generic chains
// jump to it. P must not be retained with chains using the old kernel set
// (its deletion then failed with "device or resource busy" on every
// retry).
func TestPrivilegedRetainedPolicySetRenamedSameApply(t *testing.T) {
	t.Parallel()
	l := newLab(t, "a", "b")
	port := l.wl["a"].ServeTCP(8080)
	const A = "s:A"
	P := gpol("P")
	s1 := retainedState(l, map[string]desired.IPSet{A: netSet(l.ip("b").String() + "/32")},
		map[desired.PolicyID]desired.Policy{P: fromSet(desired.Allow, A)}, []desired.PolicyID{P})
	l.apply(s1)
	l.check(probe{"b", "a", "TCP", port, true})
	if _, err := l.dp.Settle(); err != nil {
		t.Fatal(err)
	}
	s2 := retainedState(l, map[string]desired.IPSet{A: netSet(l.ip("b").String()+"/32", "10.66.0.0/24")}, nil, nil)
	s2.Delta = &desired.Delta{Since: s1.Gen, IPSets: []string{A}, Policies: []desired.PolicyID{P}, Endpoints: []string{l.iface("a")}}
	l.apply(s2)
	l.check(probe{"b", "a", "TCP", port, false})
	l.inSync()
}

// TestPrivilegedInlineVerdicts: a policy whose rules one way are a single
// Allow or Deny of everything has no chain that way (the chains that
// apply it hold the verdict), and one with no rules that way has none
// either; packets get the same verdicts as through chains, in order, in
// every index mode. A policy that gains a condition gets its chain, and
// loses it again.
func TestPrivilegedInlineVerdicts(t *testing.T) {
	t.Parallel()
	eachIndexMode(t, testInlineVerdicts)
}

func testInlineVerdicts(t *testing.T, cfg Config) {
	l := newLabWith(t, false, cfg, "client", "open", "closed", "none")
	for _, w := range []string{"open", "closed", "none"} {
		l.wl[w].ServeTCP(80)
		l.wl[w].ServeTCP(81)
	}
	allow := desired.PolicyID{Tier: "default", Name: "allow-all", Kind: "GlobalNetworkPolicy"}
	deny := desired.PolicyID{Tier: "default", Name: "deny-all", Kind: "GlobalNetworkPolicy"}
	empty := desired.PolicyID{Tier: "default", Name: "no-rules", Kind: "GlobalNetworkPolicy"}
	s := l.base()
	s.Policies.Set(allow, desired.Policy{Inbound: []desired.Rule{{Action: desired.Allow}}, Outbound: []desired.Rule{{Action: desired.Allow}}})
	s.Policies.Set(deny, desired.Policy{Inbound: []desired.Rule{{Action: desired.Deny}}})
	s.Policies.Set(empty, desired.Policy{})
	tier := func(in, out []desired.PolicyID) []desired.TierPolicies {
		return []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: in, EgressPolicies: out}}
	}
	s.Endpoints.Set(l.iface("client"), ep("client", l.wl["client"].IPs, tier(nil, []desired.PolicyID{empty, allow}), "allow"))
	s.Endpoints.Set(l.iface("open"), ep("open", l.wl["open"].IPs, tier([]desired.PolicyID{empty, allow, deny}, nil), "allow"))
	s.Endpoints.Set(l.iface("closed"), ep("closed", l.wl["closed"].IPs, tier([]desired.PolicyID{deny, allow}, nil), "allow"))
	s.Endpoints.Set(l.iface("none"), ep("none", l.wl["none"].IPs, tier([]desired.PolicyID{empty}, nil), "allow"))
	l.apply(s)
	dump := l.dp.Dump()
	for _, c := range []string{policyChain(allow, true), policyChain(allow, false), policyChain(deny, true), policyChain(deny, false),
		policyChain(empty, true), policyChain(empty, false)} {
		if strings.Contains(dump, c) {
			t.Errorf("the ruleset has %s, a chain of a policy whose rules are inline or none", c)
		}
	}
	l.check(
		probe{"client", "open", "TCP", 80, true},    // allow-all after one without rules
		probe{"client", "closed", "TCP", 80, false}, // deny-all before allow-all
		probe{"client", "none", "TCP", 80, false},   // only a policy without rules: the tier's default deny
	)
	// deny-all gains a condition: a chain of its own, and port 81 falls
	// through to allow-all.
	s.Policies.Set(deny, desired.Policy{Inbound: []desired.Rule{ruleTCP(desired.Deny, 80)}})
	l.apply(s)
	if !strings.Contains(l.dp.Dump(), policyChain(deny, true)) {
		t.Errorf("deny-all with a condition has no chain %s", policyChain(deny, true))
	}
	l.check(probe{"client", "closed", "TCP", 80, false}, probe{"client", "closed", "TCP", 81, true})
	// And loses it again.
	s.Policies.Set(deny, desired.Policy{Inbound: []desired.Rule{{Action: desired.Deny}}})
	l.apply(s)
	if strings.Contains(l.dp.Dump(), policyChain(deny, true)) {
		t.Errorf("deny-all inline again still has its chain %s", policyChain(deny, true))
	}
	l.check(probe{"client", "closed", "TCP", 81, false}, probe{"client", "open", "TCP", 81, true})
}
