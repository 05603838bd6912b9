package route

import (
	"fmt"
	"net/netip"
	"sort"

	"golang.org/x/sys/unix"
)

// Routes is the whole desired set of workload routes: workload interface
// name → the workload's addresses, each a host prefix (/32 or /128).
type Routes map[string][]netip.Prefix

// index validates r and returns destination → interface. Every problem is
// reported with the interface and position it concerns; nothing is
// programmed from a Routes that fails.
func (r Routes) index(cfg Config) (map[netip.Prefix]string, error) {
	out := make(map[netip.Prefix]string)
	names := make([]string, 0, len(r))
	for name := range r {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic error messages
	for _, name := range names {
		switch {
		case name == "":
			return nil, fmt.Errorf("routes: empty interface name")
		case len(name) > unix.IFNAMSIZ-1:
			return nil, fmt.Errorf("routes: interface %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
		case !cfg.isWorkloadIface(name):
			return nil, fmt.Errorf("routes: interface %q does not start with a workload prefix %q", name, cfg.InterfacePrefixes)
		}
		for i, p := range r[name] {
			switch {
			case !p.IsValid():
				return nil, fmt.Errorf("routes: %s[%d]: invalid prefix", name, i)
			case p.Addr().Is4In6():
				return nil, fmt.Errorf("routes: %s[%d]: %s is an IPv4-mapped IPv6 prefix; use the IPv4 form", name, i, p)
			case p != p.Masked():
				return nil, fmt.Errorf("routes: %s[%d]: %s has host bits set (want %s)", name, i, p, p.Masked())
			case p.Addr().Zone() != "":
				return nil, fmt.Errorf("routes: %s[%d]: %s has a zone", name, i, p)
			}
			if other, dup := out[p]; dup && other != name {
				return nil, fmt.Errorf("routes: %s is wanted on both %s and %s", p, other, name)
			}
			out[p] = name
		}
	}
	return out, nil
}
