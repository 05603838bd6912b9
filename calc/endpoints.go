package calc

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/policy"
)

// localEP is a workload endpoint on this host.
type localEP struct {
	key      string // namespace/name
	iface    string
	ips      []netip.Prefix
	profiles []string
	// policies are the policies whose selector matches the endpoint.
	policies map[*polInfo]struct{}
	dirty    bool
	out      desired.Endpoint
}

func checkInterfaceName(s string) error {
	if s == "" || len(s) > desired.MaxInterfaceNameLen || strings.ContainsAny(s, "/ \x00") {
		return fmt.Errorf("spec.interfaceName %q must be 1-%d bytes with no '/', space or NUL", s, desired.MaxInterfaceNameLen)
	}
	return nil
}

// updateLocal adds, replaces or (o == nil) removes a local endpoint. e is
// the endpoint's entity (its labels and parents are shared).
func (c *Calc) updateLocal(key string, o *api.WorkloadEndpoint, e *entity) error {
	ep := c.locals[key]
	if o == nil {
		if ep == nil {
			return nil
		}
		c.local.DeleteItem(key) // ends its policy matches (ep is still in c.locals)
		for _, p := range ep.profiles {
			c.useProfile(p, -1)
		}
		c.setIface(ep, "")
		delete(c.locals, key)
		return nil
	}
	if err := checkInterfaceName(o.Spec.InterfaceName); err != nil {
		return err
	}
	if ep == nil {
		ep = &localEP{key: key, policies: map[*polInfo]struct{}{}}
		c.locals[key] = ep
	}
	c.endpointChanged(ep)
	// New slices: the old ones may be part of a State handed out.
	ep.ips = make([]netip.Prefix, 0, len(e.addrs))
	for _, a := range e.addrs {
		ep.ips = append(ep.ips, netip.PrefixFrom(a, a.BitLen()))
	}
	old := ep.profiles
	ep.profiles = slices.Clone(e.parents)
	for _, p := range ep.profiles {
		c.useProfile(p, 1)
	}
	for _, p := range old {
		c.useProfile(p, -1)
	}
	c.setIface(ep, o.Spec.InterfaceName)
	c.local.UpdateItemWithData(key, ep, e.labels, e.parents)
	return nil
}

// setIface moves an endpoint to another interface ("" = none). Two
// endpoints claiming one interface make a conflict: neither is programmed
// (the interface then drops everything) until one goes away.
func (c *Calc) setIface(ep *localEP, iface string) {
	if ep.iface == iface {
		return
	}
	if ep.iface != "" {
		c.pub.ifaces[ep.iface] = struct{}{}
		others := c.ifaces[ep.iface]
		delete(others, ep)
		if len(others) == 0 {
			delete(c.ifaces, ep.iface)
		}
		for o := range others {
			c.endpointChanged(o)
		}
	}
	ep.iface = iface
	if iface != "" {
		c.pub.ifaces[iface] = struct{}{}
		others := c.ifaces[iface]
		if others == nil {
			others = map[*localEP]struct{}{}
			c.ifaces[iface] = others
		}
		others[ep] = struct{}{}
	}
}

// tierRef is a tier as an endpoint sees it; missing tiers sort after all
// others, by name, and have default action Deny.
type tierRef struct {
	t       *policy.Tier
	missing bool
}

func compareTierRefs(a, b tierRef) int {
	if a.missing != b.missing {
		if a.missing {
			return 1
		}
		return -1
	}
	return policy.CompareTiers(a.t, b.t)
}

// endpointState returns the endpoint's desired state, rebuilt only after a
// change: its tiers in order, each with its policies in order per
// direction, then its profiles.
func (c *Calc) endpointState(ep *localEP) desired.Endpoint {
	if !ep.dirty {
		return ep.out
	}
	byTier := map[string][]*polInfo{}
	for pi := range ep.policies {
		byTier[pi.p.Tier] = append(byTier[pi.p.Tier], pi)
	}
	tiers := make([]tierRef, 0, len(byTier))
	for name := range byTier {
		if t := c.tier(name); t != nil {
			tiers = append(tiers, tierRef{t: t})
		} else {
			tiers = append(tiers, tierRef{t: &policy.Tier{Name: name, DefaultAction: api.Deny}, missing: true})
		}
	}
	slices.SortFunc(tiers, compareTierRefs)
	out := desired.Endpoint{
		WorkloadID: ep.key,
		IPs:        ep.ips,
		ProfileIDs: ep.profiles,
	}
	for _, tr := range tiers {
		pols := byTier[tr.t.Name]
		slices.SortFunc(pols, func(a, b *polInfo) int {
			return cmp.Or(policy.ComparePolicies(a.p, b.p), cmp.Compare(a.key, b.key))
		})
		tp := desired.TierPolicies{Name: tr.t.Name, DefaultAction: convertAction(tr.t.DefaultAction)}
		for _, pi := range pols {
			if pi.p.AppliesIngress {
				tp.IngressPolicies = append(tp.IngressPolicies, pi.id)
			}
			if pi.p.AppliesEgress {
				tp.EgressPolicies = append(tp.EgressPolicies, pi.id)
			}
		}
		out.Tiers = append(out.Tiers, tp)
	}
	if !out.Equal(ep.out) {
		ep.out = out // else the old value, equal, keeps its identity
	}
	ep.dirty = false
	return ep.out
}
