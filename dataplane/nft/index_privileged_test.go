package nft

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/desired"
)

// TestPrivilegedTierIndex programs a tier big enough to be indexed with
// the default configuration (port ranges, a Deny before an Allow, UDP,
// a protocol no policy names) and checks real packets, that nft 1.0.6
// lists the index (text and JSON), that Resync repairs a flushed index
// map, that a policy's port change builds a new index and removes the
// old one, and that nothing of the index is left once no endpoint uses
// it (with no unused class retained: a retained class keeps its index).
func TestPrivilegedTierIndex(t *testing.T) {
	t.Parallel()
	l := newLabWith(t, false, Config{RetainClasses: -1}, "client", "srv")
	srv := l.wl["srv"]
	for _, p := range []uint16{80, 81, 8080, 9000} {
		srv.ServeTCP(p)
	}
	srv.ServeUDP(53)

	state := func(p10 desired.PortRange) *desired.State {
		s := l.base()
		var ids []desired.PolicyID
		add := func(name string, rules ...desired.Rule) {
			id := desired.PolicyID{Tier: "default", Name: name, Kind: "GlobalNetworkPolicy"}
			s.Policies.Set(id, desired.Policy{Inbound: rules})
			ids = append(ids, id)
		}
		for i := range 10 {
			add(fmt.Sprintf("p%d", i), allowTCP(uint16(1000+i)))
		}
		add("p10", desired.Rule{Action: desired.Allow, Protocol: u8(desired.ProtoTCP), Dst: desired.Match{Ports: []desired.PortRange{p10}}})
		add("p11", ruleTCP(desired.Deny, 81),
			desired.Rule{Action: desired.Allow, Protocol: u8(desired.ProtoTCP), Dst: desired.Match{Ports: []desired.PortRange{{Min: 80, Max: 90}}}})
		add("p12", desired.Rule{Action: desired.Allow, Protocol: u8(desired.ProtoUDP), Dst: desired.Match{Ports: []desired.PortRange{{Min: 53, Max: 53}}}})
		s.Endpoints.Set(l.iface("srv"), ep("srv", srv.IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: ids}}, "allow"))
		return s
	}
	l.apply(state(desired.PortRange{Min: 8000, Max: 8100}))
	want := []probe{
		{"client", "srv", "TCP", 80, true},    // p11's Allow
		{"client", "srv", "TCP", 81, false},   // p11's Deny comes first
		{"client", "srv", "TCP", 8080, true},  // p10
		{"client", "srv", "TCP", 9000, false}, // no policy: end of tier
		{"client", "srv", "UDP", 53, true},    // p12
		{"client", "srv", "ICMP", 0, false},   // a protocol no policy names
	}
	l.check(want...)

	listing := l.nft("list", "table", "inet", "brindle")
	for _, s := range []string{"meta l4proto vmap @xp-", "th dport vmap @xd-", "flags interval",
		"80-90 : goto brindle-pi-", // one policy: straight to its chain
		"0-79 : return"} {
		if !strings.Contains(listing, s) {
			t.Fatalf("nft listing lacks %q:\n%s", s, listing)
		}
	}
	l.nft("-j", "list", "ruleset")
	// nft shows the interface names the classify maps hold.
	if m := l.nft("list", "map", "inet", "brindle-classify", "brindle-to-wl"); !strings.Contains(m, fmt.Sprintf("%q : goto", l.iface("srv"))) {
		t.Errorf("nft does not show %q in the interface map:\n%s", l.iface("srv"), m)
	}

	// Drift: an index map loses its elements; the index fails closed
	// (TCP is dropped, UDP is not affected) until Resync restores it.
	portMap := regexp.MustCompile(`map (xd-[0-9a-f]+-6) `).FindStringSubmatch(listing)
	if portMap == nil {
		t.Fatalf("no TCP port map in:\n%s", listing)
	}
	l.nft("flush", "map", "inet", "brindle", portMap[1])
	l.check(probe{"client", "srv", "TCP", 80, false}, probe{"client", "srv", "UDP", 53, true})
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if l.dp.Writes() == before {
		t.Error("Resync after flushing an index map sent nothing")
	}
	if got := l.nft("list", "table", "inet", "brindle"); got != listing {
		t.Errorf("after Resync the table differs:\n%s\nwant:\n%s", got, listing)
	}
	l.check(want...)

	// p10 now allows 9000 instead of 8000-8100: a new index, the old one
	// gone.
	l.apply(state(desired.PortRange{Min: 9000, Max: 9000}))
	l.check(
		probe{"client", "srv", "TCP", 8080, false},
		probe{"client", "srv", "TCP", 9000, true},
		probe{"client", "srv", "TCP", 80, true},
	)
	after := l.nft("list", "table", "inet", "brindle")
	if n := strings.Count(after, "map xp-"); n != 1 {
		t.Errorf("%d protocol maps after the port change, want 1:\n%s", n, after)
	}
	if strings.Contains(after, portMap[1]) {
		t.Errorf("the old index's port map %s is still there", portMap[1])
	}

	// No endpoint uses an index: none is left.
	s := state(desired.PortRange{Min: 9000, Max: 9000})
	s.Endpoints.Delete(l.iface("srv"))
	l.apply(s)
	if got := l.nft("list", "table", "inet", "brindle"); strings.Contains(got, "xp-") || strings.Contains(got, "brindle-x") {
		t.Errorf("index objects left with no endpoint:\n%s", got)
	}
	// nft itself must still list the ruleset.
	if out, err := exec.Command("ip", "netns", "exec", l.host.Name(), "nft", "list", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
}

// TestPrivilegedLargeSetsAndMaps programs a selector set of 20,000
// addresses and a tier index over 1,000 policies (a 2,000-element port
// map): element lists far beyond one netlink attribute's 64 KiB. Every
// element must reach the kernel (the client's address sorts last in its
// set), and Resync must find nothing to repair.
func TestPrivilegedLargeSetsAndMaps(t *testing.T) {
	t.Parallel()
	l := newLab(t, "client", "srv")
	l.wl["srv"].ServeTCP(10999)
	s := l.base()
	big := []desired.Member{desired.AddrMember(l.ip("client"))} // 10.65.0.1
	for i := range 20000 {
		big = append(big, desired.AddrMember(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
	}
	s.IPSets.Set("s:big", desired.NewIPSet(desired.Addrs, big...))
	var ids []desired.PolicyID
	for i := range 1000 {
		id := desired.PolicyID{Tier: "default", Name: fmt.Sprintf("p%d", i), Kind: "GlobalNetworkPolicy"}
		r := allowTCP(uint16(10000 + i))
		r.Src.IPSetIDs = []string{"s:big"}
		s.Policies.Set(id, desired.Policy{Inbound: []desired.Rule{r}})
		ids = append(ids, id)
	}
	s.Endpoints.Set(l.iface("srv"), ep("srv", l.wl["srv"].IPs, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: ids}}, "allow"))
	l.apply(s)
	l.check(probe{"client", "srv", "TCP", 10999, true})

	set := l.nft("list", "set", "inet", "brindle", setName("s:big", desired.Addrs, 4))
	if n := strings.Count(set, ",") + 1; n != len(big) {
		t.Errorf("the kernel set holds %d addresses, want %d", n, len(big))
	}
	listing := l.nft("list", "table", "inet", "brindle")
	portMap := regexp.MustCompile(`map (xd-[0-9a-f]+-6) `).FindStringSubmatch(listing)
	if portMap == nil {
		t.Fatalf("no TCP port map in:\n%s", listing)
	}
	// 1,000 ports (each straight to its policy) and the gaps before,
	// between (none) and after them (return).
	pm := l.nft("list", "map", "inet", "brindle", portMap[1])
	if n, r := strings.Count(pm, "goto brindle-pi-"), strings.Count(pm, "return"); n != 1000 || r != 2 {
		t.Errorf("the port map holds %d intervals to a policy and %d returns, want 1,000 and 2", n, r)
	}
	before := l.dp.Writes()
	if err := l.dp.Resync(); err != nil {
		t.Fatal(err)
	}
	if got := l.dp.Writes() - before; got != 0 {
		t.Errorf("Resync of a correct table sent %d operations", got)
	}
}
