package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
)

// Desired is the NAT-outgoing state: workload traffic from Masquerade to
// anywhere outside Pools is masqueraded. Both are IPv4, masked and sorted.
type Desired struct {
	// Masquerade are the CIDRs of natOutgoing pools.
	Masquerade []netip.Prefix
	// Pools are the CIDRs of every pool (destinations inside them keep
	// their source address).
	Pools []netip.Prefix
}

// Plan computes Desired from the IP pools. Disabled pools count too: their
// workloads still exist. IPv6 pools and unparsable CIDRs are skipped.
func Plan(pools []*api.IPPool) Desired {
	var d Desired
	for _, p := range pools {
		if p == nil {
			continue
		}
		c, err := netip.ParsePrefix(p.Spec.CIDR)
		if err != nil || !c.Addr().Is4() {
			continue
		}
		c = c.Masked()
		d.Pools = append(d.Pools, c)
		if p.Spec.NATOutgoing || p.Spec.NATOutgoingV1 {
			d.Masquerade = append(d.Masquerade, c)
		}
	}
	for _, s := range []*[]netip.Prefix{&d.Masquerade, &d.Pools} {
		slices.SortFunc(*s, comparePrefix)
		*s = slices.Compact(*s)
	}
	return d
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func (d Desired) validate() error {
	for name, s := range map[string][]netip.Prefix{"Masquerade": d.Masquerade, "Pools": d.Pools} {
		for i, p := range s {
			if !p.IsValid() || !p.Addr().Is4() || p != p.Masked() {
				return fmt.Errorf("nat: %s[%d]: %s is not a masked IPv4 prefix", name, i, p)
			}
		}
	}
	return nil
}

// String renders d as the nft ruleset it stands for (empty: no table).
func (d Desired) String() string {
	if len(d.Masquerade) == 0 {
		return ""
	}
	join := func(ps []netip.Prefix) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = p.String()
		}
		return strings.Join(s, ", ")
	}
	return fmt.Sprintf("set %s { %s }\nset %s { %s }\nchain %s: ip saddr @%s ip daddr != @%s masquerade\n",
		SetMasquerade, join(d.Masquerade), SetPools, join(d.Pools), ChainName, SetMasquerade, SetPools)
}

// interval is a half-open IPv4 range [start, end); end 0 means "to the top
// of the address space".
type interval struct{ start, end uint32 }

// intervals merges prefixes into sorted, disjoint, non-adjacent ranges: the
// only form the kernel's interval sets accept.
func intervals(ps []netip.Prefix) []interval {
	type r struct{ lo, hi uint64 } // [lo, hi)
	var rs []r
	for _, p := range ps {
		a := p.Masked().Addr().As4()
		lo := uint64(binary.BigEndian.Uint32(a[:]))
		rs = append(rs, r{lo, lo + 1<<(32-p.Bits())})
	}
	slices.SortFunc(rs, func(a, b r) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var merged []r
	for _, x := range rs {
		if n := len(merged); n > 0 && x.lo <= merged[n-1].hi {
			merged[n-1].hi = max(merged[n-1].hi, x.hi)
			continue
		}
		merged = append(merged, x)
	}
	out := make([]interval, len(merged))
	for i, m := range merged {
		out[i] = interval{uint32(m.lo), uint32(m.hi)} // hi 1<<32 wraps to 0
	}
	return out
}
