package nft

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/desired"
)

// TestClassSharingRetentionAndEviction drives a builder through endpoint
// moves and checks the class bookkeeping: endpoints with the same rules
// share a class, an unused class is retained up to RetainClasses (least
// recently used out first) and reused, a retained class whose policy is
// deleted goes, and ids are allocated lowest first and freed on eviction.
func TestClassSharingRetentionAndEviction(t *testing.T) {
	pol := func(n string) desired.PolicyID {
		return desired.PolicyID{Tier: "default", Name: n, Kind: "GlobalNetworkPolicy"}
	}
	ip := netip.MustParseAddr("10.65.0.1")
	state := func(eps map[string][]string) *desired.State {
		s := &desired.State{
			Policies:  desired.MapOf(map[desired.PolicyID]desired.Policy{}),
			Profiles:  desired.MapOf(map[string]desired.Profile{"allow": allowAll}),
			Endpoints: desired.MapOf(map[string]desired.Endpoint{}),
		}
		for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
			s.Policies.Set(pol(n), desired.Policy{Inbound: []desired.Rule{allowTCP(80)}})
		}
		for iface, pols := range eps {
			var ids []desired.PolicyID
			for _, p := range pols {
				ids = append(ids, pol(p))
			}
			s.Endpoints.Set(iface, ep(iface, []netip.Addr{ip}, []desired.TierPolicies{{Name: "default", DefaultAction: desired.Deny, IngressPolicies: ids}}, "allow"))
		}
		return s
	}
	b := newBuilder(Config{RetainClasses: 1, ClassMode: ClassDirect}.withDefaults())
	step := func(name string, s *desired.State) {
		t.Helper()
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := b.build(s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// ingress class of an endpoint: its chain's policies.
	classOf := func(iface string) *classEntry { return b.eps[iface].classes[0] }
	idle := func() []string {
		var out []string
		for e := range b.cls.idle[0] {
			out = append(out, chainText(e.chain))
		}
		return out
	}

	step("two share", state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p2"}}))
	if classOf("cali1") != classOf("cali2") || classOf("cali1").refs != 2 || classOf("cali1") == classOf("cali3") {
		t.Fatalf("cali1 and cali2 should share a class with 2 uses, cali3 its own")
	}
	p1, p2 := classOf("cali1"), classOf("cali3")
	if p1.id != 1 || p2.id != 2 {
		t.Fatalf("ids %d, %d: want 1, 2 (lowest first, interface order)", p1.id, p2.id)
	}

	step("cali3 to p1: p2 retained", state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p1"}}))
	if len(b.cls.idle[0]) != 1 || b.cls.byHash[p2.hash] != p2 || b.m.chains[p2.chain.name] == nil {
		t.Fatalf("p2's class should be retained: idle %v", idle())
	}
	step("cali3 back to p2: reused", state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p2"}}))
	if classOf("cali3") != p2 || len(b.cls.idle[0]) != 0 {
		t.Fatalf("cali3 should be back in p2's class (idle %v)", idle())
	}
	for name := range b.dChains {
		if !inA(name) {
			t.Errorf("reusing a retained class changed policy-table chain %s", name)
		}
	}
	for name := range b.dSets {
		if !inA(name) {
			t.Errorf("reusing a retained class changed policy-table set %s", name)
		}
	}

	// Two classes fall idle with room for one: the older goes.
	step("cali3 to p3", state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p3"}}))
	p3 := classOf("cali3")
	step("cali3 to p4", state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p4"}}))
	if b.cls.byHash[p2.hash] != nil || b.cls.byHash[p3.hash] != p3 || len(b.cls.idle[0]) != 1 {
		t.Fatalf("want p2's class evicted and p3's retained; idle %v", idle())
	}
	if b.m.chains[p2.chain.name] != nil {
		t.Fatalf("the evicted class's chain is still in the model")
	}
	if got := classOf("cali3").id; got != 4 || b.cls.byID[0][2] != nil {
		t.Fatalf("p4's class got id %d, want 4 (eviction comes after allocation), and id 2 free", got)
	}
	// Its mark chain stays, kept for the id's next class.
	if b.m.chains[p2.setter.name] != p2.setter || b.cls.setters[0][2] != p2.setter {
		t.Fatalf("the evicted class's mark chain was not kept for its id")
	}

	// p3 is deleted: its retained class, which jumps to it, goes too.
	s := state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p4"}})
	s.Policies.Delete(pol("p3"))
	step("p3 deleted", s)
	if b.cls.byHash[p3.hash] != nil || len(b.cls.idle[0]) != 0 {
		t.Fatalf("the retained class of a deleted policy was kept: idle %v", idle())
	}
	for name, c := range b.m.chains {
		for _, target := range jumpTargets(nil, c) {
			if b.m.chains[target] == nil && !strings.HasPrefix(target, "!") {
				t.Errorf("chain %s jumps to %s, which is not in the model", objName(name), target)
			}
		}
	}

	// A new class takes the lowest free id, 2, and with it the mark chain
	// kept for it: no chain changes in the classify table.
	step("cali3 to p5", state(map[string][]string{"cali1": {"p1"}, "cali2": {"p1"}, "cali3": {"p5"}}))
	if e := classOf("cali3"); e.id != 2 || e.setter != p2.setter {
		t.Fatalf("p5's class has id %d and mark chain %p, want 2 and the one kept for id 2, %p", e.id, e.setter, p2.setter)
	}
	if _, changed := b.dChains[p2.setter.name]; changed {
		t.Errorf("taking id 2 again changed its mark chain")
	}
	if _, kept := b.cls.setters[0][2]; kept {
		t.Errorf("id 2's mark chain is both in use and kept as a spare")
	}
}

func TestConfigClassMask(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, ""},
		{Config{ClassMask: 0x00ff0000}, ""},
		{Config{ClassMask: 0x00ff00f0}, "ClassMask 0x00ff00f0 is not a contiguous run of bits"},
		{Config{ClassMask: 0x03000000}, "ClassMask 0x03000000 overlaps PassMark 0x02000000"},
		{Config{TableName: strings.Repeat("x", 60)}, "is longer than 55 bytes"},
	} {
		err := tc.cfg.Validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
