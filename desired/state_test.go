package desired

import (
	"net/netip"
	"strings"
	"testing"
)

func u8(v uint8) *uint8 { return &v }

func validState() State {
	pol := PolicyID{Tier: "default", Name: "db", Namespace: "prod", Kind: "NetworkPolicy"}
	return State{
		IPSets: MapOf(map[string]IPSet{
			"s:front": NewIPSet(Addrs, AddrMember(netip.MustParseAddr("10.0.0.1"))),
			"c:nets":  NewIPSet(Nets, NetMember(netip.MustParsePrefix("10.1.0.0/16"))),
			"n:redis": NewIPSet(NamedPorts, NamedPortMember(netip.MustParseAddr("10.0.0.2"), ProtoTCP, 6379)),
		}),
		Policies: MapOf(map[PolicyID]Policy{pol: {Inbound: []Rule{{
			Action:   Allow,
			Protocol: u8(ProtoTCP),
			Src:      Match{IPSetIDs: []string{"s:front"}, NotNetsIPSetID: "c:nets"},
			Dst:      Match{Ports: []PortRange{{6379, 6379}}, NamedPortIPSetIDs: []string{"n:redis"}},
		}}}}),
		Endpoints: MapOf(map[string]Endpoint{"cali1": {
			Tiers:      []TierPolicies{{Name: "default", DefaultAction: Deny, IngressPolicies: []PolicyID{pol}}},
			ProfileIDs: []string{"kns.prod", "missing-is-fine"},
		}}),
	}
}

func TestValidate(t *testing.T) {
	pol := PolicyID{Tier: "default", Name: "db", Namespace: "prod", Kind: "NetworkPolicy"}
	tests := []struct {
		name   string
		mutate func(*State)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*State) {}, ""},
		{"missing set", func(s *State) { s.IPSets.Delete("s:front") }, `source ipSetIDs: ip set "s:front" does not exist`},
		{"wrong set type for nets", func(s *State) { s.IPSets.Set("c:nets", NewIPSet(Addrs)) }, `notNets: ip set "c:nets" has type addrs`},
		{"named port set type", func(s *State) { s.IPSets.Set("n:redis", NewIPSet(Nets)) }, `namedPorts: ip set "n:redis" has type nets`},
		{"missing policy", func(s *State) { s.Policies.Delete(pol) }, `ingress policy [0] default/prod/db (NetworkPolicy) does not exist`},
		{"ports without protocol", func(s *State) {
			p, _ := s.Policies.Get(pol)
			p.Inbound[0].Protocol = u8(ProtoICMP)
		}, "ports need protocol"},
		{"icmp without protocol", func(s *State) {
			s.Profiles = MapOf(map[string]Profile{"p": {Outbound: []Rule{{Action: Allow, ICMP: &ICMPMatch{Type: 8}}}}})
		}, "profile p outbound rule [0]: icmp matches need protocol"},
		{"bad tier default", func(s *State) {
			ep, _ := s.Endpoints.Get("cali1")
			ep.Tiers[0].DefaultAction = Allow
			s.Endpoints.Set("cali1", ep)
		}, "default action Allow is not Deny or Pass"},
		{"long interface", func(s *State) { s.Endpoints.Set("cali0123456789abc", Endpoint{}) }, "interface name must be 1-15 bytes"},
		{"addr set with net", func(s *State) {
			s.IPSets.Set("s:front", NewIPSet(Addrs, NetMember(netip.MustParsePrefix("10.0.0.0/8"))))
		}, "an addrs set holds single addresses only"},
		{"unmasked", func(s *State) {
			s.IPSets.Set("c:nets", NewIPSet(Nets, Member{Prefix: netip.MustParsePrefix("10.1.2.3/16")}))
		}, "prefix is not masked"},
		{"bad action", func(s *State) {
			s.Profiles = MapOf(map[string]Profile{"p": {Inbound: []Rule{{}}}})
		}, "bad action Action(0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validState()
			tt.mutate(&s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	a, b := validState(), validState()
	if !a.Equal(&b) {
		t.Fatal("equal states compare unequal")
	}
	p, _ := b.Policies.Get(PolicyID{Tier: "default", Name: "db", Namespace: "prod", Kind: "NetworkPolicy"})
	p.Inbound[0].Protocol = u8(ProtoUDP)
	if a.Equal(&b) {
		t.Fatal("states with different rule protocols compare equal")
	}
	c := validState()
	front, _ := c.IPSets.Get("s:front")
	front.Members.Set(AddrMember(netip.MustParseAddr("10.0.0.9")), struct{}{})
	c.IPSets.Set("s:front", front)
	if a.Equal(&c) {
		t.Fatal("states with different set members compare equal")
	}
}

func TestCIDRSetID(t *testing.T) {
	x := CIDRSetID([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/24")})
	y := CIDRSetID([]netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")})
	if x != y {
		t.Fatalf("same CIDRs gave %q and %q", x, y)
	}
	if z := CIDRSetID([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); z == x || !strings.HasPrefix(z, "c:") {
		t.Fatalf("CIDRSetID = %q", z)
	}
}

func TestValidateOneObject(t *testing.T) {
	s := validState()
	pol := PolicyID{Tier: "default", Name: "db", Namespace: "prod", Kind: "NetworkPolicy"}
	if err := s.ValidatePolicy(pol); err != nil {
		t.Fatalf("ValidatePolicy of a valid policy: %v", err)
	}
	s.IPSets.Delete("s:front")
	if err := s.ValidatePolicy(pol); err == nil || !strings.Contains(err.Error(), `ip set "s:front" does not exist`) {
		t.Fatalf("ValidatePolicy = %v, want the missing set", err)
	}
	s.Policies.Delete(pol)
	if err := s.ValidateEndpoint("cali1"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("ValidateEndpoint = %v, want the missing policy", err)
	}
	if err := s.ValidateIPSet("nope"); err == nil {
		t.Fatal("ValidateIPSet of a missing set succeeded")
	}
}

// TestValidateIPSetSince: against a valid previous version, only the
// members gained are checked; a new type, or a set the previous version
// does not describe, is checked whole.
func TestValidateIPSetSince(t *testing.T) {
	addr := func(s string) Member { return Member{Prefix: netip.MustParsePrefix(s)} }
	old := IPSet{Type: Addrs, Members: MapOf(map[Member]struct{}{addr("10.0.0.1/32"): {}, addr("10.0.0.2/32"): {}})}
	s := &State{IPSets: MapOf(map[string]IPSet{"s:a": old})}

	gained := old
	gained.Members.Set(addr("10.0.0.3/32"), struct{}{})
	gained.Members.Delete(addr("10.0.0.1/32"))
	s.IPSets.Set("s:a", gained)
	if err := s.ValidateIPSetSince("s:a", old); err != nil {
		t.Fatalf("a valid member gained: %v", err)
	}

	bad := gained
	bad.Members.Set(addr("10.0.0.0/24"), struct{}{}) // not a single address
	s.IPSets.Set("s:a", bad)
	if err := s.ValidateIPSetSince("s:a", gained); err == nil || !strings.Contains(err.Error(), `ip set "s:a": member {10.0.0.0/24`) {
		t.Fatalf("an invalid member gained: %v, want it named", err)
	}
	// Against a previous version that already held it (trusted as valid),
	// it is not checked again; against one of another type, it is.
	if err := s.ValidateIPSetSince("s:a", bad); err != nil {
		t.Fatalf("unchanged set: %v", err)
	}
	if err := s.ValidateIPSetSince("s:a", IPSet{Type: Nets, Members: bad.Members}); err == nil || !strings.Contains(err.Error(), "10.0.0.0/24") {
		t.Fatalf("type changed: %v, want the whole set checked", err)
	}
	if err := s.ValidateIPSetSince("nope", old); err == nil {
		t.Fatal("a missing set passed")
	}
}
