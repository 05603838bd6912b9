package nft

import (
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/internal/netnstest"
	"golang.org/x/sys/unix"
)

// bigState is a synthetic host: nPol policies in the default tier, using
// nSets distinct selector sets of 4 addresses each (policy i uses set
// i%nSets); each policy has two inbound rules (TCP to a port from its set;
// UDP from the next set, to a port range) and one outbound rule (to its
// set); nEp endpoints, each selected by nPol/nEp policies in both
// directions.
func bigState(nPol, nSets, nEp int) *desired.State {
	s := &desired.State{
		Profiles: desired.MapOf(map[string]desired.Profile{"kns.bench": allowAll}),
	}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	ids := make([]desired.PolicyID, nPol)
	for i := range nSets {
		var ms []desired.Member
		for j := range 4 {
			ms = append(ms, desired.AddrMember(addr(i*4+j+1)))
		}
		s.IPSets.Set(fmt.Sprintf("s:bench-selector-%d", i), desired.NewIPSet(desired.Addrs, ms...))
	}
	var pols desired.MapEdit[desired.PolicyID, desired.Policy]
	for i := range nPol {
		set := fmt.Sprintf("s:bench-selector-%d", i%nSets)
		next := fmt.Sprintf("s:bench-selector-%d", (i+1)%nSets)
		ids[i] = desired.PolicyID{Tier: "default", Name: fmt.Sprintf("pol-%d", i), Namespace: "bench", Kind: "NetworkPolicy"}
		pols.Set(ids[i], desired.Policy{
			Inbound: []desired.Rule{
				{Action: desired.Allow, IPVersion: 4, Protocol: u8(desired.ProtoTCP), Src: desired.Match{IPSetIDs: []string{set}},
					Dst: desired.Match{Ports: []desired.PortRange{{Min: uint16(1000 + i%5000), Max: uint16(1000 + i%5000)}}}},
				{Action: desired.Allow, IPVersion: 4, Protocol: u8(desired.ProtoUDP), Src: desired.Match{IPSetIDs: []string{next}},
					Dst: desired.Match{Ports: []desired.PortRange{{Min: 2000, Max: 2999}}}},
			},
			Outbound: []desired.Rule{{Action: desired.Allow, IPVersion: 4, Dst: desired.Match{IPSetIDs: []string{set}}}},
		})
	}
	s.Policies = pols.Map()
	per := nPol / nEp
	for e := range nEp {
		pols := ids[e*per : (e+1)*per]
		iface := fmt.Sprintf("cali%011x", e)
		s.Endpoints.Set(iface, desired.Endpoint{
			WorkloadID: fmt.Sprintf("bench/pod-%d", e),
			IPs:        []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200, byte(e >> 8), byte(e)}), 32)},
			Tiers:      []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: pols, EgressPolicies: pols}},
			ProfileIDs: []string{"kns.bench"},
		})
	}
	return s
}

// toggleMember returns s with one address added to (i even) or removed
// from (i odd) bigState's selector set 42: a new sets map and set, the
// other collections shared, as calc hands out a change.
func toggleMember(s *desired.State, i int) *desired.State {
	const id = "s:bench-selector-42"
	extra := desired.AddrMember(netip.AddrFrom4([4]byte{10, 250, 0, 1}))
	set, _ := s.IPSets.Get(id)
	set = set.Clone()
	if i%2 == 0 {
		set.Members.Set(extra, struct{}{})
	} else {
		set.Members.Delete(extra)
	}
	n := *s
	n.IPSets.Set(id, set)
	return &n
}

// cpuTime returns this process's user+system CPU time. The benchmarks
// report it per operation next to wall time: the machine they run on is
// shared, and wall time there includes waiting for a CPU.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuClock accumulates CPU time over the timed parts of a benchmark.
type cpuClock struct {
	start, total time.Duration
}

func (c *cpuClock) resume() { c.start = cpuTime() }
func (c *cpuClock) pause()  { c.total += cpuTime() - c.start }
func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(c.total.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

func BenchmarkRender5000Policies(b *testing.B) {
	s := bigState(5000, 5000, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(Config{}, s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrivilegedFullRuleset programs the whole ruleset for 5,000
// policies into an empty namespace: one transaction per iteration (a fresh
// Dataplane each time, the table deleted in between, outside the timer).
// Sets500 shares 500 selectors among the policies; Sets5000 gives each
// policy its own.
func BenchmarkPrivilegedFullRuleset5000PoliciesSets500(b *testing.B) {
	benchFull(b, bigState(5000, 500, 200))
}

func BenchmarkPrivilegedFullRuleset5000PoliciesSets5000(b *testing.B) {
	benchFull(b, bigState(5000, 5000, 200))
}

func benchFull(b *testing.B, s *desired.State) {
	ns := netnstest.NewNS(b, "nftbench")
	b.ReportAllocs()
	var ops uint64
	var cpu cpuClock
	for b.Loop() {
		b.StopTimer()
		for _, t := range []string{"brindle", "brindle" + classifySuffix} {
			_ = exec.Command("ip", "netns", "exec", ns.Name(), "nft", "delete", "table", "inet", t).Run()
		}
		dp, err := New(Config{NetNSFd: int(ns.NsHandle())}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu.resume()
		if err := dp.Apply(s); err != nil {
			b.Fatal(err)
		}
		cpu.pause()
		b.StopTimer()
		ops = dp.Writes()
		if dp.Transactions() != 1 {
			b.Fatalf("%d transactions, want 1", dp.Transactions())
		}
		_ = dp.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(ops), "nft-ops/txn")
	cpu.report(b)
}

// BenchmarkPrivilegedOneElementChange5000Policies: with the 5,000-policy
// ruleset programmed, each iteration adds or removes one address in one
// selector set and Applies the whole state: one one-operation
// transaction.
func BenchmarkPrivilegedOneElementChange5000Policies(b *testing.B) {
	benchOneElement(b, bigState(5000, 5000, 200))
}

// BenchmarkPrivilegedOneElementChange5000PoliciesAllowEgress is
// BenchmarkPrivilegedOneElementChange5000Policies with every policy's
// egress an Allow of everything, which has no chain (the verdict is in the
// endpoint chains): 6,611 chains instead of 11,611, each of which the
// kernel walks at every commit.
func BenchmarkPrivilegedOneElementChange5000PoliciesAllowEgress(b *testing.B) {
	benchOneElement(b, allowAllEgress(bigState(5000, 5000, 200)))
}

// allowAllEgress makes every policy of s allow all egress.
func allowAllEgress(s *desired.State) *desired.State {
	e := s.Policies.Edit()
	for id, p := range s.Policies.All() {
		p.Outbound = []desired.Rule{{Action: desired.Allow}}
		e.Set(id, p)
	}
	n := *s
	n.Policies = e.Map()
	return &n
}

func benchOneElement(b *testing.B, s *desired.State) {
	ns := netnstest.NewNS(b, "nftbench")
	dp, err := New(Config{NetNSFd: int(ns.NsHandle())}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dp.Close() })
	if err := dp.Apply(s); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	var cpu cpuClock
	cpu.resume()
	for b.Loop() {
		s = toggleMember(s, i)
		i++
		before := dp.Writes()
		if err := dp.Apply(s); err != nil {
			b.Fatal(err)
		}
		if got := dp.Writes() - before; got != 1 {
			b.Fatalf("one-element change sent %d operations, want 1", got)
		}
	}
	cpu.pause()
	cpu.report(b)
	b.ReportMetric(float64(len(dp.want.chains)), "chains")
}

// BenchmarkPrivilegedResync5000Policies reads the 5,000-policy table back
// and finds nothing to repair.
func BenchmarkPrivilegedResync5000Policies(b *testing.B) {
	ns := netnstest.NewNS(b, "nftbench")
	dp, err := New(Config{NetNSFd: int(ns.NsHandle())}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dp.Close() })
	if err := dp.Apply(bigState(5000, 5000, 200)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var cpu cpuClock
	cpu.resume()
	defer func() { cpu.pause(); cpu.report(b) }()
	for b.Loop() {
		before := dp.Writes()
		if err := dp.Resync(); err != nil {
			b.Fatal(err)
		}
		if dp.Writes() != before {
			b.Fatal("Resync of an unchanged table wrote")
		}
	}
}

// BenchmarkPrivilegedEndpointPolicyChange5000Policies: with the
// 5,000-policy ruleset programmed, each iteration takes one policy out of
// (or puts it back into) one endpoint's policy list in both directions,
// as a label change does, and Applies the whole state. Both policy lists
// are classes that exist (the one not in use is retained, see class.go):
// each transaction changes only the classify table.
func BenchmarkPrivilegedEndpointPolicyChange5000Policies(b *testing.B) {
	benchEndpointMove(b, Config{}, false, nil)
}

// BenchmarkPrivilegedEndpointNewClass5000Policies is the same label
// change with no class retained: each move creates the endpoint's new
// class, generic (elements of the generic sets, generic.go), and deletes
// the old one.
func BenchmarkPrivilegedEndpointNewClass5000Policies(b *testing.B) {
	benchEndpointMove(b, Config{RetainClasses: -1}, true, nil)
}

// BenchmarkPrivilegedEndpointNewClassChain5000Policies is
// BenchmarkPrivilegedEndpointNewClass5000Policies with ClassDirect: each
// new class is two chains in the policy table, which the kernel then
// validates whole (what Settle pays for each generic class).
func BenchmarkPrivilegedEndpointNewClassChain5000Policies(b *testing.B) {
	benchEndpointMove(b, Config{RetainClasses: -1, ClassMode: ClassDirect}, true, nil)
}

// BenchmarkPrivilegedEndpointNewClassChain5000PoliciesAllowEgress is
// BenchmarkPrivilegedEndpointNewClassChain5000Policies with every
// policy's egress an Allow of everything (no chain): fewer chains to
// validate.
func BenchmarkPrivilegedEndpointNewClassChain5000PoliciesAllowEgress(b *testing.B) {
	benchEndpointMove(b, Config{RetainClasses: -1, ClassMode: ClassDirect}, true, allowAllEgress)
}

// benchEndpointMove times a local endpoint's moves between two classes of
// bigState (with tweak, when not nil, applied to it).
func benchEndpointMove(b *testing.B, cfg Config, newClass bool, tweak func(*desired.State) *desired.State) {
	ns := netnstest.NewNS(b, "nftbench")
	cfg.NetNSFd = int(ns.NsHandle())
	dp, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = dp.Close() })
	s := bigState(5000, 500, 200)
	if tweak != nil {
		s = tweak(s)
	}
	if err := dp.Apply(s); err != nil {
		b.Fatal(err)
	}
	// As the agent does once idle after the start of day: lay out the
	// generic chains.
	if _, err := dp.Settle(); err != nil {
		b.Fatal(err)
	}
	iface := fmt.Sprintf("cali%011x", 42)
	full, _ := s.Endpoints.Get(iface)
	less := full
	less.Tiers = []desired.TierPolicies{full.Tiers[0]}
	less.Tiers[0].IngressPolicies = full.Tiers[0].IngressPolicies[1:]
	less.Tiers[0].EgressPolicies = full.Tiers[0].EgressPolicies[1:]
	// A changed collection is a new map (Apply skips a map it has seen).
	put := func(e desired.Endpoint) {
		n := *s
		n.Endpoints.Set(iface, e)
		s = &n
		if err := dp.Apply(s); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	step := func() {
		if i%2 == 0 {
			put(less)
		} else {
			put(full)
		}
		i++
		if wrote := dp.lastOps[tabB] > 0; wrote != newClass {
			b.Fatalf("move %d: %d operations on the policy table, %d on the classify table", i, dp.lastOps[tabB], dp.lastOps[tabA])
		}
	}
	if !newClass {
		// Both classes exist before timing starts.
		put(less)
		put(full)
	}
	b.ReportAllocs()
	var cpu cpuClock
	cpu.resume()
	for b.Loop() {
		step()
	}
	cpu.pause()
	cpu.report(b)
	b.ReportMetric(float64(dp.lastOps[tabA]+dp.lastOps[tabB]), "nft-ops/txn")
}

// BenchmarkBuildSets600 rebuilds a 600-member selector set (CIDRs, as
// calc gives a rule selector's addresses): what a remote label change
// costs the builder for each of the two sets it moves an address between.
func BenchmarkBuildSets600(b *testing.B) {
	ms := make([]desired.Member, 600)
	for i := range ms {
		ms[i] = desired.NetMember(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i * 7), 1}), 32))
	}
	set := desired.NewIPSet(desired.Nets, ms...)
	b.ReportAllocs()
	for b.Loop() {
		if v4, _, _ := buildSets("s:bench", set); len(v4.elems) != 600 {
			b.Fatalf("%d elements", len(v4.elems))
		}
	}
}

// BenchmarkPrivilegedNewConnectionGeneric1000Policies measures what a
// generic class costs the packet path (generic.go): new TCP connections
// (connect, one-byte echo, close) from workload a to workload b, whose
// ingress lists 10 of a tier's 1,000 policies (c lists all of them, so
// all are in the table), the last of b's allowing the port. "generic":
// b's class runs through the generic chains, which look up a slot for
// each of the 1,000 policies; "settled": after Settle, b's class chain
// reaches its policies through the tier index. Each connection also
// pays entering a's network namespace; compare the two.
func BenchmarkPrivilegedNewConnectionGeneric1000Policies(b *testing.B) {
	l := newLab(b, "a", "b", "c")
	port := l.wl["b"].ServeTCP(80)
	const n = 1000
	ids := make([]desired.PolicyID, n)
	state := func(bPols []desired.PolicyID) *desired.State {
		s := l.base()
		for i := range n {
			ids[i] = desired.PolicyID{Tier: "default", Name: fmt.Sprintf("p%04d", i), Kind: "GlobalNetworkPolicy"}
			s.Policies.Set(ids[i], desired.Policy{Inbound: []desired.Rule{allowTCP(uint16(9000 + i))}})
		}
		s.Policies.Set(ids[n-1], desired.Policy{Inbound: []desired.Rule{allowTCP(port)}})
		tier := func(pols []desired.PolicyID) []desired.TierPolicies {
			return []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: pols}}
		}
		for name, pols := range map[string][]desired.PolicyID{"b": bPols, "c": ids} {
			e, _ := s.Endpoints.Get(l.iface(name))
			e.Tiers = tier(pols)
			s.Endpoints.Set(l.iface(name), e)
		}
		return s
	}
	l.apply(state(ids[n-10:]))
	if _, err := l.dp.Settle(); err != nil { // the generic chains' layout
		b.Fatal(err)
	}
	l.apply(state(ids[n-9:])) // a combination nobody has: generic
	if l.dp.GenericClasses() == 0 {
		b.Fatal("b's new class is not generic")
	}
	connect := func(b *testing.B) {
		for b.Loop() {
			ok, err := netnstest.Probe(l.wl["a"].NS, l.ip("b"), port, "TCP", time.Second)
			if err != nil || !ok {
				b.Fatalf("connection a → b:%d: %v, %v", port, ok, err)
			}
		}
	}
	b.Run("generic", connect)
	if did, err := l.dp.Settle(); err != nil || !did || l.dp.GenericClasses() != 0 {
		b.Fatalf("Settle: %v, %v; %d generic classes left", did, err, l.dp.GenericClasses())
	}
	b.Run("settled", connect)
}
