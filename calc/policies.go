package calc

import (
	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/policy"
)

// polInfo is a policy calc knows of. It is active while its selector
// matches at least one local endpoint; only then are its rules' sets held
// and is it part of the desired state.
type polInfo struct {
	key string
	p   *policy.Policy
	id  desired.PolicyID
	out desired.Policy
	// refs are the sets the rules use; held while active.
	refs    []setRef
	held    bool
	matches map[*localEP]struct{}
}

// updateTier stores or (t == nil) removes a tier. The tier list of every
// local endpoint with a policy in the tier is rebuilt.
func (c *Calc) updateTier(name string, t *api.Tier) error {
	if t == nil {
		delete(c.tiers, name)
	} else {
		ct, err := policy.CompileTier(t)
		if err != nil {
			return err
		}
		c.tiers[name] = ct
	}
	for _, ep := range c.locals {
		for pi := range ep.policies {
			if pi.p.Tier == name {
				c.endpointChanged(ep)
				break
			}
		}
	}
	return nil
}

// tier returns a tier by name: a stored one, else a built-in one, else nil
// (a missing tier).
func (c *Calc) tier(name string) *policy.Tier {
	if t := c.tiers[name]; t != nil {
		return t
	}
	for _, t := range policy.BuiltinTiers() {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// updatePolicy stores or (p == nil) removes a compiled policy.
func (c *Calc) updatePolicy(key string, p *policy.Policy) error {
	pi := c.policies[key]
	if p == nil {
		if pi != nil {
			c.local.DeleteSelector(key) // deactivates it
			delete(c.policies, key)
		}
		return nil
	}
	var refs refList
	in, err := convertRules(p.Ingress, &refs, "spec.ingress")
	if err != nil {
		return err
	}
	out, err := convertRules(p.Egress, &refs, "spec.egress")
	if err != nil {
		return err
	}
	if pi == nil {
		pi = &polInfo{key: key, matches: map[*localEP]struct{}{}}
		c.policies[key] = pi
	}
	oldRefs, oldP, oldID := pi.refs, pi.p, pi.id
	pi.p = p
	pi.id = desired.PolicyID{Tier: p.Tier, Name: p.Name, Namespace: p.Namespace, Kind: p.Kind}
	// Equal rules keep their identity, so the policy counts as unchanged.
	changed := oldP == nil || pi.id != oldID
	if o := (desired.Policy{Inbound: in, Outbound: out, Order: p.Order}); changed || !pi.out.Equal(o) {
		pi.out, changed = o, true
	}
	pi.refs = refs.refs
	if pi.held {
		// Make before break: sets both versions use stay built.
		for _, r := range pi.refs {
			c.acquire(r)
		}
		for _, r := range oldRefs {
			c.release(r.id)
		}
	}
	if changed && pi.held {
		c.policyChanged(pi) // (de)activation records itself
	}
	if oldP == nil || !sameForEndpoints(oldP, p) {
		for ep := range pi.matches {
			c.endpointChanged(ep)
		}
	}
	if p.PreDNAT || p.DoNotTrack {
		// Host-endpoint policy: never applies to a workload.
		c.local.DeleteSelector(key)
	} else {
		c.local.UpdateSelector(key, p.Selector)
	}
	return nil
}

// sameForEndpoints reports whether two versions of a policy have the same
// place in the endpoints' tier lists: tier, order and directions (the rest
// of the ID is the policy's key).
func sameForEndpoints(a, b *policy.Policy) bool {
	return a.Tier == b.Tier && a.AppliesIngress == b.AppliesIngress && a.AppliesEgress == b.AppliesEgress &&
		(a.Order == nil) == (b.Order == nil) && (a.Order == nil || *a.Order == *b.Order)
}

// onLocalMatch follows policy selectors over local endpoints, activating
// a policy at its first local match and deactivating it after its last.
func (c *Calc) onLocalMatch(key string, ep *localEP, matched bool) {
	pi := c.policies[key]
	c.endpointChanged(ep)
	if matched {
		pi.matches[ep] = struct{}{}
		ep.policies[pi] = struct{}{}
	} else {
		delete(pi.matches, ep)
		delete(ep.policies, pi)
	}
	switch {
	case len(pi.matches) > 0 && !pi.held:
		pi.held = true
		c.policyChanged(pi)
		for _, r := range pi.refs {
			c.acquire(r)
		}
	case len(pi.matches) == 0 && pi.held:
		pi.held = false
		c.policyChanged(pi)
		for _, r := range pi.refs {
			c.release(r.id)
		}
	}
}

// profInfo is a profile that exists or that a local endpoint names. Its
// rules' sets are held while it exists and a local endpoint names it.
type profInfo struct {
	name string
	p    *policy.Profile // nil: missing (deny-all for the endpoints naming it)
	out  desired.Profile
	refs []setRef
	held bool
	uses int // local endpoints naming it
}

func defaultAllowProfile() *policy.Profile {
	return &policy.Profile{
		Name:    policy.DefaultAllowProfileName,
		Ingress: []*policy.Rule{{Action: api.Allow}},
		Egress:  []*policy.Rule{{Action: api.Allow}},
	}
}

func (c *Calc) profile(name string) *profInfo {
	pr := c.profiles[name]
	if pr == nil {
		pr = &profInfo{name: name}
		c.profiles[name] = pr
		if name == policy.DefaultAllowProfileName {
			// Synthesised, as policy.Compile does; a stored profile of
			// the same name replaces it.
			c.setProfile(pr, defaultAllowProfile(), desired.Profile{
				Inbound:  []desired.Rule{{Action: desired.Allow}},
				Outbound: []desired.Rule{{Action: desired.Allow}},
			}, nil)
		}
	}
	return pr
}

// updateProfile stores or (p == nil) removes a compiled profile.
func (c *Calc) updateProfile(name string, p *policy.Profile) error {
	var refs refList
	var out desired.Profile
	if p == nil && name == policy.DefaultAllowProfileName {
		p = defaultAllowProfile()
	}
	if p != nil {
		var err error
		if out.Inbound, err = convertRules(p.Ingress, &refs, "spec.ingress"); err != nil {
			return err
		}
		if out.Outbound, err = convertRules(p.Egress, &refs, "spec.egress"); err != nil {
			return err
		}
	}
	c.setProfile(c.profile(name), p, out, refs.refs)
	return nil
}

func (c *Calc) setProfile(pr *profInfo, p *policy.Profile, out desired.Profile, refs []setRef) {
	var labels map[string]string
	if p != nil {
		labels = p.LabelsToApply
		if labels == nil {
			labels = map[string]string{}
		}
	}
	if labels == nil {
		// A missing profile: endpoints naming it inherit nothing.
		c.local.DeleteParent(pr.name)
		c.global.DeleteParent(pr.name)
	} else {
		c.local.UpdateParent(pr.name, labels)
		c.global.UpdateParent(pr.name, labels)
	}
	oldRefs, wasHeld := pr.refs, pr.held
	if pr.p != nil && p != nil && pr.out.Equal(out) {
		out = pr.out // equal rules keep their identity: unchanged
	} else if pr.uses > 0 {
		c.profileChanged(pr.name)
	}
	pr.p, pr.out, pr.refs = p, out, refs
	pr.held = p != nil && pr.uses > 0
	if pr.held {
		for _, r := range pr.refs {
			c.acquire(r)
		}
	}
	if wasHeld {
		for _, r := range oldRefs {
			c.release(r.id)
		}
	}
	c.gcProfile(pr)
}

func (c *Calc) gcProfile(pr *profInfo) {
	if pr.p == nil && pr.uses == 0 {
		delete(c.profiles, pr.name)
	}
}

// useProfile counts a local endpoint naming (delta 1) or no longer naming
// (delta -1) a profile.
func (c *Calc) useProfile(name string, delta int) {
	pr := c.profile(name)
	pr.uses += delta
	want := pr.p != nil && pr.uses > 0
	switch {
	case want && !pr.held:
		pr.held = true
		c.profileChanged(pr.name)
		for _, r := range pr.refs {
			c.acquire(r)
		}
	case !want && pr.held:
		pr.held = false
		c.profileChanged(pr.name)
		for _, r := range pr.refs {
			c.release(r.id)
		}
	}
	c.gcProfile(pr)
}
