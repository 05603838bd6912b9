package calc

import (
	"math/rand/v2"

	"github.com/brindle-net/brindle/desired"
)

// published is the last State handed out and what has changed since.
//
// Every value reachable from a State handed out is immutable from then on:
// calc writes a changed object anew (a new member map, rule slices or
// endpoint), and State builds a changed collection as an edit of the
// handed-out desired.Map, which copies only the shards holding a changed
// key. An unchanged collection is the Same map as in the previous State,
// so State costs a shard copy per changed key plus the rebuild of each
// object that changed, never a pass over every object.
type published struct {
	cfg       desired.Config
	ipSets    desired.Map[string, desired.IPSet]
	policies  desired.Map[desired.PolicyID, desired.Policy]
	profiles  desired.Map[string, desired.Profile]
	endpoints desired.Map[string, desired.Endpoint]

	cfgDirty bool
	// The keys changed since the last State: IP set IDs, policy keys
	// (c.policies), profile names and interface names.
	sets   map[string]struct{}
	pols   map[string]struct{}
	profs  map[string]struct{}
	ifaces map[string]struct{}
	// polIDs is the ID each policy key is published under.
	polIDs map[string]desired.PolicyID
	// gen is the Gen of the last State handed out (0: none yet); next is
	// the next one, from a random start so that two Calcs' numbers do not
	// meet (a dataplane fed by a new Calc must not take its Deltas).
	gen, next uint64
}

func newPublished() published {
	return published{
		next:     rand.Uint64() | 1,
		cfgDirty: true,
		sets:     map[string]struct{}{},
		pols:     map[string]struct{}{},
		profs:    map[string]struct{}{},
		ifaces:   map[string]struct{}{},
		polIDs:   map[string]desired.PolicyID{},
	}
}

// setChanged records that a set was created, removed, or had its members
// changed.
func (c *Calc) setChanged(s *ipSet) { c.pub.sets[s.ref.id] = struct{}{} }

// policyChanged records that a policy was activated, deactivated, changed
// or removed.
func (c *Calc) policyChanged(pi *polInfo) { c.pub.pols[pi.key] = struct{}{} }

// profileChanged records that a profile's rules, existence or use changed.
func (c *Calc) profileChanged(name string) { c.pub.profs[name] = struct{}{} }

// endpointChanged records that a local endpoint's desired state must be
// rebuilt. An interface change records both interfaces (setIface).
func (c *Calc) endpointChanged(ep *localEP) {
	ep.dirty = true
	if ep.iface != "" {
		c.pub.ifaces[ep.iface] = struct{}{}
	}
}

// State returns the whole current desired state. It costs a look at each
// object changed since the last call (and a rebuild of those that need
// one) plus a copy of the shards in which an object really changed; a
// collection with no change is the Same map as in the previous State.
// The State shares its maps, rule slices, IP set member maps and endpoints
// with the States returned before; calc never modifies them, and callers
// must not either (the desired types' Clone methods give private copies).
func (c *Calc) State() desired.State {
	p := &c.pub
	if p.cfgDirty {
		if cfg := c.config(); !cfg.Equal(p.cfg) {
			p.cfg = cfg
		}
		p.cfgDirty = false
	}
	d := &desired.Delta{Since: p.gen}
	if len(p.sets) > 0 {
		p.ipSets = patchMap(p.ipSets, p.sets, &d.IPSets, func(id string) (desired.IPSet, bool) {
			if s := c.sets[id]; s != nil {
				return s.snapshot(), true
			}
			return desired.IPSet{}, false
		}, sameIPSet)
		resetKeys(&p.sets)
	}
	if len(p.pols) > 0 {
		// Policies are published by ID, which a key's new version may
		// change: every ID a changed key had or has is looked at.
		ids := make(map[desired.PolicyID]struct{}, len(p.pols))
		vals := make(map[desired.PolicyID]desired.Policy, len(p.pols))
		for key := range p.pols {
			if id, ok := p.polIDs[key]; ok {
				ids[id] = struct{}{}
				delete(p.polIDs, key)
			}
			if pi := c.policies[key]; pi != nil && pi.held {
				ids[pi.id] = struct{}{}
				vals[pi.id] = pi.out
				p.polIDs[key] = pi.id
			}
		}
		p.policies = patchMap(p.policies, ids, &d.Policies, func(id desired.PolicyID) (desired.Policy, bool) {
			v, ok := vals[id]
			return v, ok
		}, samePolicy)
		resetKeys(&p.pols)
	}
	if len(p.profs) > 0 {
		p.profiles = patchMap(p.profiles, p.profs, &d.Profiles, func(name string) (desired.Profile, bool) {
			if pr := c.profiles[name]; pr != nil && pr.uses > 0 && pr.p != nil {
				return pr.out, true
			}
			return desired.Profile{}, false
		}, sameProfile)
		resetKeys(&p.profs)
	}
	if len(p.ifaces) > 0 {
		p.endpoints = patchMap(p.endpoints, p.ifaces, &d.Endpoints, func(iface string) (desired.Endpoint, bool) {
			eps := c.ifaces[iface]
			if len(eps) != 1 {
				return desired.Endpoint{}, false // none, or a conflict: the interface drops
			}
			var out desired.Endpoint
			for ep := range eps {
				out = c.endpointState(ep)
			}
			return out, true
		}, sameEndpoint)
		resetKeys(&p.ifaces)
	}
	if d.Since == 0 {
		d = nil // the first State: nothing to be relative to
	}
	p.gen = p.next
	p.next++
	if p.next == 0 {
		p.next = 1
	}
	return desired.State{
		Config:    p.cfg,
		IPSets:    p.ipSets,
		Policies:  p.policies,
		Profiles:  p.profiles,
		Endpoints: p.endpoints,
		Gen:       p.gen,
		Delta:     d,
	}
}

// patchMap returns base with the current values of keys (get: ok false
// when absent): base itself when every value is the same object as
// base's (same reports that), else an edit of base with the differences
// applied, which copies only the shards with a change. base is never
// written: it may be part of a State handed out. The keys whose value
// changed are appended to changed (the State's Delta).
func patchMap[K comparable, V any](base desired.Map[K, V], keys map[K]struct{}, changed *[]K, get func(K) (V, bool), same func(a, b V) bool) desired.Map[K, V] {
	var e *desired.MapEdit[K, V]
	for k := range keys {
		v, ok := get(k)
		old, had := base.Get(k)
		if ok == had && (!ok || same(old, v)) {
			continue
		}
		*changed = append(*changed, k)
		if e == nil {
			e = base.Edit()
		}
		if ok {
			e.Set(k, v)
		} else {
			e.Delete(k)
		}
	}
	if e == nil {
		return base
	}
	return e.Map()
}

// sameIPSet, samePolicy, sameProfile and sameEndpoint report whether two
// values are the same object (the same member map or backing arrays), as
// consumers recognise unchanged objects.
func sameIPSet(a, b desired.IPSet) bool {
	return a.Type == b.Type && a.Members.Same(b.Members)
}

func samePolicy(a, b desired.Policy) bool {
	return sameSlice(a.Inbound, b.Inbound) && sameSlice(a.Outbound, b.Outbound)
}

func sameProfile(a, b desired.Profile) bool {
	return sameSlice(a.Inbound, b.Inbound) && sameSlice(a.Outbound, b.Outbound)
}

func sameEndpoint(a, b desired.Endpoint) bool {
	return a.WorkloadID == b.WorkloadID && sameSlice(a.IPs, b.IPs) && sameSlice(a.Tiers, b.Tiers) && sameSlice(a.ProfileIDs, b.ProfileIDs)
}

func sameSlice[T any](a, b []T) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// resetKeys empties a set of changed keys. clear costs the map's capacity,
// not its length, so a set that grew large (start of day) is replaced
// rather than cleared, keeping later small changes cheap.
func resetKeys[K comparable](m *map[K]struct{}) {
	if len(*m) > 64 {
		*m = map[K]struct{}{}
		return
	}
	clear(*m)
}
