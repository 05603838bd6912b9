package nft

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/brindle-net/brindle/desired"
	"github.com/google/go-cmp/cmp"
)

// TestBuildSetsKeys checks buildSets' shared-buffer keys against keys built
// one by one: for addresses and named ports of both families, every
// element's key is the member's bytes (and protocol and port), the map
// key is elem.mapKey, and no key overwrote another.
func TestBuildSetsKeys(t *testing.T) {
	var addrs, ports []desired.Member
	for i := range 300 {
		a4 := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		a6 := netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(i)})
		for _, a := range []netip.Addr{a4, a6} {
			addrs = append(addrs, desired.AddrMember(a))
			ports = append(ports, desired.Member{Prefix: netip.PrefixFrom(a, a.BitLen()), Protocol: 6, Port: uint16(8000 + i)})
		}
	}
	for _, tc := range []struct {
		typ desired.IPSetType
		ms  []desired.Member
	}{{desired.Addrs, addrs}, {desired.Nets, addrs}, {desired.NamedPorts, ports}} {
		v4, v6, _ := buildSets("s:test", desired.NewIPSet(tc.typ, tc.ms...))
		want4, want6 := map[string]elem{}, map[string]elem{}
		for _, m := range tc.ms {
			k := m.Prefix.Addr().AsSlice()
			if tc.typ == desired.NamedPorts {
				k = append(k, m.Protocol, 0, 0, 0)
				k = binary.BigEndian.AppendUint16(k, m.Port)
				k = append(k, 0, 0)
			}
			e := elem{key: k}
			if m.Prefix.Addr().Is4() {
				want4[e.mapKey()] = e
			} else {
				want6[e.mapKey()] = e
			}
		}
		eq := cmp.Comparer(func(a, b elem) bool { return a.mapKey() == b.mapKey() })
		if d := cmp.Diff(want4, v4.elems, eq); d != "" {
			t.Errorf("type %v, IPv4 (-want +got):\n%s", tc.typ, d)
		}
		if d := cmp.Diff(want6, v6.elems, eq); d != "" {
			t.Errorf("type %v, IPv6 (-want +got):\n%s", tc.typ, d)
		}
	}
}

// TestBuildSetsKernelKind checks which kernel set holds each family of a
// Nets set: a plain address set while every member of the family is one
// address, an interval set (another name) once one is wider; the family
// bits say so, which is what makes the rules using the set be rebuilt.
func TestBuildSetsKernelKind(t *testing.T) {
	host4 := desired.NetMember(netip.MustParsePrefix("10.0.0.1/32"))
	host6 := desired.NetMember(netip.MustParsePrefix("fd00::1/128"))
	net4 := desired.NetMember(netip.MustParsePrefix("10.0.1.0/24"))
	net6 := desired.NetMember(netip.MustParsePrefix("fd00:1::/64"))
	for _, tc := range []struct {
		name         string
		ms           []desired.Member
		kind4, kind6 setKind
		fams         uint8
		n4           int
	}{
		{"hosts", []desired.Member{host4, host6}, kindAddr4, kindAddr6, fam4 | fam6, 1},
		{"v4 net", []desired.Member{host4, net4, host6}, kindNet4, kindAddr6, fam4 | fam6 | wide4, 2},
		{"v6 net", []desired.Member{host4, net6}, kindAddr4, kindNet6, fam4 | fam6 | wide6, 1},
		{"empty", nil, kindAddr4, kindAddr6, 0, 0},
	} {
		v4, v6, counts := buildSets("s:kind", desired.NewIPSet(desired.Nets, tc.ms...))
		fams := counts.fams()
		if v4.kind != tc.kind4 || v6.kind != tc.kind6 || fams != tc.fams || len(v4.elems) != tc.n4 {
			t.Errorf("%s: kinds %v/%v, fams %04b, %d IPv4 elements; want %v/%v, %04b, %d",
				tc.name, v4.kind, v6.kind, fams, len(v4.elems), tc.kind4, tc.kind6, tc.fams, tc.n4)
		}
		if want := setName("s:kind", kernelType(desired.Nets, fams, 4), 4); v4.name != want {
			t.Errorf("%s: IPv4 set %q, rules would use %q", tc.name, v4.name, want)
		}
		if want := setName("s:kind", kernelType(desired.Nets, fams, 6), 6); v6.name != want {
			t.Errorf("%s: IPv6 set %q, rules would use %q", tc.name, v6.name, want)
		}
	}
	a, _, _ := buildSets("s:kind", desired.NewIPSet(desired.Nets, host4))
	c, _, _ := buildSets("s:kind", desired.NewIPSet(desired.Nets, host4, net4))
	if a.name == c.name {
		t.Errorf("address and interval sets share the name %q", a.name)
	}
}

// TestElemMapKeys checks elemMap's shared-string keys equal mapKey for
// elements with and without ends and chains.
func TestElemMapKeys(t *testing.T) {
	var es []elem
	for i := range 50 {
		e := elem{key: []byte{byte(i), 1}}
		if i%2 == 0 {
			e.end = []byte{byte(i), 2}
		}
		if i%3 == 0 {
			e.jump = fmt.Sprintf("brindle-pi-%d", i)
		}
		es = append(es, e)
	}
	m := elemMap(es)
	if len(m) != len(es) {
		t.Fatalf("%d keys for %d elements", len(m), len(es))
	}
	for _, e := range es {
		if got, ok := m[e.mapKey()]; !ok || got.mapKey() != e.mapKey() {
			t.Errorf("element %x-%x %q: not under its mapKey", e.key, e.end, e.jump)
		}
	}
}

// TestIntervals checks the merge of prefixes into interval elements:
// overlapping, contained and adjacent prefixes join, a gap splits, and an
// interval reaching the top of the address space has no end.
func TestIntervals(t *testing.T) {
	p := netip.MustParsePrefix
	a := func(s string) []byte { return netip.MustParseAddr(s).AsSlice() }
	for _, tc := range []struct {
		in   []netip.Prefix
		want []elem
	}{
		{[]netip.Prefix{p("10.0.0.1/32")}, []elem{{key: a("10.0.0.1"), end: a("10.0.0.2")}}},
		{[]netip.Prefix{p("10.0.0.3/32"), p("10.0.0.1/32"), p("10.0.0.2/32")}, // adjacent, unsorted
			[]elem{{key: a("10.0.0.1"), end: a("10.0.0.4")}}},
		{[]netip.Prefix{p("10.0.0.0/24"), p("10.0.0.7/32"), p("10.0.1.0/24"), p("10.0.3.0/24")}, // contained, adjacent, gap
			[]elem{{key: a("10.0.0.0"), end: a("10.0.2.0")}, {key: a("10.0.3.0"), end: a("10.0.4.0")}}},
		{[]netip.Prefix{p("255.255.255.0/24"), p("255.255.255.255/32")}, // to the top: no end
			[]elem{{key: a("255.255.255.0")}}},
		{[]netip.Prefix{p("fd00::1/128"), p("fd00::/64")},
			[]elem{{key: a("fd00::"), end: a("fd00:0:0:1::")}}},
	} {
		eq := cmp.Comparer(func(x, y elem) bool { return x.mapKey() == y.mapKey() })
		if d := cmp.Diff(tc.want, intervals(tc.in), eq); d != "" {
			t.Errorf("intervals(%v) (-want +got):\n%s", tc.in, d)
		}
	}
}

// TestPatchSetFallsBack: a referenced set's member changes are element
// changes in place while its families and kinds stay; the first or last
// member of a family, or a member wider than one address, rebuilds it (the
// rules using it change). After every step its elements are a fresh
// build's.
func TestPatchSetFallsBack(t *testing.T) {
	p := gpol("p")
	w := newGenericWalk(t, Config{})
	pols := map[desired.PolicyID]desired.Policy{p: fromSet(desired.Allow, "s:x")}
	for _, step := range []struct {
		name    string
		members []string
		inPlace bool
	}{
		{"first", []string{"10.65.0.1/32"}, false},
		{"a v4 host more", []string{"10.65.0.1/32", "10.65.0.2/32"}, true},
		{"first v6 member", []string{"10.65.0.1/32", "10.65.0.2/32", "fd00::1/128"}, false},
		{"another v6 host, one v4 gone", []string{"10.65.0.2/32", "fd00::1/128", "fd00::2/128"}, true},
		{"last v6 members gone", []string{"10.65.0.2/32"}, false},
		{"a wide v4 member", []string{"10.65.0.2/32", "10.66.0.0/16"}, false},
		{"back to hosts", []string{"10.65.0.2/32", "10.65.0.3/32"}, false},
		{"a v4 host moved", []string{"10.65.0.2/32", "10.65.0.4/32"}, true},
	} {
		set := netSet(step.members...)
		w.apply(oneEndpointState(map[string]desired.IPSet{"s:x": set}, pols, []desired.PolicyID{p}))
		e := w.b.sets["s:x"]
		name4 := e.specs[0].name
		_, replaced := w.b.dSets[name4]
		_, journaled := w.b.dElems[name4]
		if step.inPlace && (replaced || !journaled) || !step.inPlace && !replaced {
			t.Errorf("%s: IPv4 set replaced %v, journaled %v; want in place %v", step.name, replaced, journaled, step.inPlace)
		}
		f4, f6, counts := buildSets("s:x", set)
		if counts != e.counts {
			t.Errorf("%s: counts %+v (fams %04b), fresh %+v", step.name, e.counts, e.counts.fams(), counts)
		}
		for i, f := range []*setSpec{f4, f6} {
			if got, want := slices.Sorted(maps.Keys(e.specs[i].elems)), slices.Sorted(maps.Keys(f.elems)); !slices.Equal(got, want) {
				t.Errorf("%s: family %d elements %q, fresh %q", step.name, i, got, want)
			}
		}
	}
}
