package calc

import (
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/policy"
	"github.com/brindle-net/brindle/selector"
)

// entity is anything a rule selector can match: a workload or host
// endpoint (addresses and named ports) or a network set (CIDRs), anywhere
// in the cluster. Its labels and parents live in the global index.
type entity struct {
	labels  map[string]string
	parents []string
	addrs   []netip.Addr
	nets    []netip.Prefix
	ports   []policy.NamedPort
}

// sameMembers reports whether two versions of an entity give the same IP
// set members.
func (e *entity) sameMembers(o *entity) bool {
	return slices.Equal(e.addrs, o.addrs) && slices.Equal(e.nets, o.nets) && slices.Equal(e.ports, o.ports)
}

// addrMembers calls f for each member the entity gives a selector's set:
// its addresses, or its CIDRs.
func (e *entity) addrMembers(f func(desired.Member)) {
	for _, a := range e.addrs {
		f(desired.AddrMember(a))
	}
	for _, n := range e.nets {
		f(desired.NetMember(n))
	}
}

// namedPortMembers calls f for each address+protocol+port the entity
// serves under name.
func (e *entity) namedPortMembers(name string, f func(desired.Member)) {
	for _, p := range e.ports {
		if p.Name != name {
			continue
		}
		for _, a := range e.addrs {
			f(desired.NamedPortMember(a, p.Protocol, p.Port))
		}
	}
}

// updateEntity adds, replaces or (e == nil) removes an entity. The global
// index's items carry their entity, so an old version leaves the index
// (taking its members out of sets) before the new one comes in.
func (c *Calc) updateEntity(key string, e *entity) {
	old := c.entities[key]
	switch {
	case e == nil:
		if old != nil {
			c.global.DeleteItem(key)
			delete(c.entities, key)
		}
	case old != nil && old.sameMembers(e):
		// Keep the old identity so that only label changes are
		// re-evaluated and members do not churn.
		old.labels, old.parents = e.labels, e.parents
		c.global.UpdateItemWithData(key, old, old.labels, old.parents)
	default:
		if old != nil {
			c.global.DeleteItem(key)
		}
		c.entities[key] = e
		c.global.UpdateItemWithData(key, e, e.labels, e.parents)
	}
}

// refKind is what an IP set is built from.
type refKind uint8

const (
	refSelector  refKind = iota + 1 // addresses and CIDRs of what a selector matches
	refNamedPort                    // address+protocol+port of a named port of what a selector matches
	refCIDRs                        // a rule's literal CIDR list
)

// setRef is a rule's use of an IP set, with what is needed to build it.
type setRef struct {
	id   string
	kind refKind
	sel  *selector.Selector
	port string
	nets []netip.Prefix
}

// namedPortSetID is "n:" plus a hash of the selector's canonical form and
// the port name, so equal (selector, port) pairs share one set.
func namedPortSetID(sel *selector.Selector, port string) string {
	sum := sha256.Sum224([]byte("n:" + sel.String() + "\x00" + port))
	return "n:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

func (r setRef) describe() string {
	switch r.kind {
	case refSelector:
		return "selector " + r.sel.String()
	case refNamedPort:
		return "named port " + r.port + " of " + r.sel.String()
	}
	var b strings.Builder
	b.WriteString("cidrs")
	for _, n := range r.nets {
		b.WriteString(" " + n.String())
	}
	return b.String()
}

// ipSet is an active IP set: one or more rules of active policies or
// profiles use it.
type ipSet struct {
	ref  setRef
	typ  desired.IPSetType
	refs int
	// members is the set as desired state, an edit of the Map the last
	// snapshot handed out: a change copies only the shard it writes (a
	// selector's set can hold thousands of members).
	members desired.MapEdit[desired.Member, struct{}]
	// extra counts, for a member more than one entity gives, the entities
	// beyond the first; most members have none.
	extra map[desired.Member]int32
}

func newIPSet(r setRef, typ desired.IPSetType) *ipSet {
	return &ipSet{ref: r, typ: typ, refs: 1}
}

// add counts one more (delta 1) or one fewer (delta -1) entity giving m,
// and reports whether the members changed.
func (s *ipSet) add(m desired.Member, delta int32) bool {
	if delta > 0 {
		if !s.members.Has(m) {
			s.members.Set(m, struct{}{})
			return true
		}
		if s.extra == nil {
			s.extra = map[desired.Member]int32{}
		}
		s.extra[m]++
		return false
	}
	if n := s.extra[m]; n > 0 {
		if n == 1 {
			delete(s.extra, m)
		} else {
			s.extra[m] = n - 1
		}
		return false
	}
	if s.members.Has(m) {
		s.members.Delete(m)
		return true
	}
	return false
}

// snapshot returns the set as desired state; the Map is the caller's
// from then on (the edit goes on from it, copy-on-write).
func (s *ipSet) snapshot() desired.IPSet {
	return desired.IPSet{Type: s.typ, Members: s.members.Map()}
}

// selUse is a selector held in the global index and the sets built on it.
type selUse struct {
	sel   *selector.Selector
	set   *ipSet
	named map[string]*ipSet
}

func (u *selUse) empty() bool { return u.set == nil && len(u.named) == 0 }

func (c *Calc) onGlobalMatch(selID string, e *entity, matched bool) {
	if selID == c.filling {
		c.fillBuf = append(c.fillBuf, e) // a new selector's matches (fill)
		return
	}
	u := c.selUses[selID]
	if u == nil {
		return
	}
	delta := int32(1)
	if !matched {
		delta = -1
	}
	if s := u.set; s != nil {
		e.addrMembers(func(m desired.Member) {
			if s.add(m, delta) {
				c.setChanged(s)
			}
		})
	}
	for name, s := range u.named {
		e.namedPortMembers(name, func(m desired.Member) {
			if s.add(m, delta) {
				c.setChanged(s)
			}
		})
	}
}

// acquire takes one reference on a set, building it when it becomes
// active.
func (c *Calc) acquire(r setRef) {
	if s := c.sets[r.id]; s != nil {
		s.refs++
		return
	}
	typ := desired.Nets
	if r.kind == refNamedPort {
		typ = desired.NamedPorts
	}
	s := newIPSet(r, typ)
	c.sets[r.id] = s
	c.setChanged(s)
	switch r.kind {
	case refCIDRs:
		for _, n := range r.nets {
			s.add(desired.NetMember(n), 1)
		}
	case refSelector:
		u, isNew := c.selUse(r.sel)
		u.set = s
		c.fill(u, s, isNew, func(e *entity) { e.addrMembers(func(m desired.Member) { s.add(m, 1) }) })
	case refNamedPort:
		u, isNew := c.selUse(r.sel)
		if u.named == nil {
			u.named = map[string]*ipSet{}
		}
		u.named[r.port] = s
		c.fill(u, s, isNew, func(e *entity) { e.namedPortMembers(r.port, func(m desired.Member) { s.add(m, 1) }) })
	}
}

// fill gives a set just attached to u the members of what u's selector
// matches. A new selector is registered now, and the index's start
// callbacks (onGlobalMatch) fill every set attached to it, this one
// included; for a selector already held, add is called for each current
// match.
func (c *Calc) fill(u *selUse, s *ipSet, isNew bool, add func(*entity)) {
	uid := u.sel.UniqueID()
	if isNew {
		// The index reports the new selector's matches; collect them
		// (u has no other set yet) to size the set before filling it.
		c.filling, c.fillBuf = uid, c.fillBuf[:0]
		c.global.UpdateSelector(uid, u.sel)
		c.filling = ""
	} else {
		c.fillBuf = c.fillBuf[:0]
		for _, key := range c.global.Matches(uid) {
			c.fillBuf = append(c.fillBuf, c.entities[key])
		}
	}
	s.members.Grow(len(c.fillBuf))
	for _, e := range c.fillBuf {
		add(e)
	}
	clear(c.fillBuf)
}

// selUse returns the selUse of a selector, creating it (not yet
// registered in the global index) when new.
func (c *Calc) selUse(sel *selector.Selector) (*selUse, bool) {
	uid := sel.UniqueID()
	if u := c.selUses[uid]; u != nil {
		return u, false
	}
	u := &selUse{sel: sel}
	c.selUses[uid] = u
	return u, true
}

// release drops one reference on a set, removing it when none is left.
func (c *Calc) release(id string) {
	s := c.sets[id]
	if s == nil {
		return
	}
	if s.refs--; s.refs > 0 {
		return
	}
	delete(c.sets, id)
	c.setChanged(s)
	if s.ref.kind == refCIDRs {
		return
	}
	uid := s.ref.sel.UniqueID()
	u := c.selUses[uid]
	if s.ref.kind == refSelector {
		u.set = nil
	} else {
		delete(u.named, s.ref.port)
	}
	if u.empty() {
		// Nothing is kept for the selector now: its matches need no
		// stop callbacks.
		delete(c.selUses, uid)
		c.global.DropSelector(uid)
	}
}

// DescribeIPSet says what an active IP set holds ("selector ...", "named
// port <name> of ...", "cidrs ..."), for logs and debugging.
func (c *Calc) DescribeIPSet(id string) (string, bool) {
	s := c.sets[id]
	if s == nil {
		return "", false
	}
	return s.ref.describe(), true
}
