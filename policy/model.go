package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/selector"
)

// Direction is the side of an endpoint a packet crosses.
type Direction int

// Directions. Ingress is traffic to the endpoint, Egress traffic from it.
const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Built-in tiers (compat §2.1): always present, whatever the datastore
// holds; a stored Tier of the same name replaces the built-in one.
const (
	KubeAdminTierName    = "kube-admin"
	KubeBaselineTierName = "kube-baseline"
	// DefaultAllowProfileName is the synthesised profile that allows
	// everything in and out.
	DefaultAllowProfileName = "projectcalico-default-allow"
)

// Model is the compiled policy: tiers in evaluation order and profiles by
// name.
type Model struct {
	Tiers    []*Tier
	Profiles map[string]*Profile
}

// Tier is a compiled tier.
type Tier struct {
	Name  string
	Order *float64
	// DefaultAction is Deny or Pass: what happens to a packet that the
	// tier's policies selected the endpoint for but did not decide.
	DefaultAction api.Action
	// Policies in evaluation order.
	Policies []*Policy
}

// Policy is a compiled NetworkPolicy or GlobalNetworkPolicy.
type Policy struct {
	// Kind is "NetworkPolicy" or "GlobalNetworkPolicy".
	Kind string
	// Namespace is empty for a GlobalNetworkPolicy.
	Namespace string
	Name      string
	Tier      string
	Order     *float64
	// Selector is the scoped endpoint selector (ScopePolicySelector).
	Selector *selector.Selector
	// AppliesIngress and AppliesEgress come from types, defaulted as
	// Calico defaults them.
	AppliesIngress, AppliesEgress bool
	Ingress, Egress               []*Rule
	DoNotTrack, PreDNAT           bool
	ApplyOnForward                bool
}

// ID is "namespace/name" for a NetworkPolicy and "name" for a global one.
func (p *Policy) ID() string {
	if p.Namespace == "" {
		return p.Name
	}
	return p.Namespace + "/" + p.Name
}

// Rules returns the policy's rules for one direction.
func (p *Policy) Rules(d Direction) []*Rule {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// Applies reports whether the policy's types include d.
func (p *Policy) Applies(d Direction) bool {
	if d == Egress {
		return p.AppliesEgress
	}
	return p.AppliesIngress
}

// Profile is a compiled profile.
type Profile struct {
	Name            string
	LabelsToApply   map[string]string
	Ingress, Egress []*Rule
}

// Rules returns the profile's rules for one direction.
func (p *Profile) Rules(d Direction) []*Rule {
	if d == Egress {
		return p.Egress
	}
	return p.Ingress
}

// Rule is a compiled rule. Nil pointers and empty lists mean "no
// constraint".
type Rule struct {
	// Index is the rule's position in its policy's list for its direction.
	Index  int
	Action api.Action
	// IPVersion is 4, 6 or 0 (either).
	IPVersion   int
	Protocol    *uint8
	NotProtocol *uint8
	ICMP        *ICMPMatch
	NotICMP     *ICMPMatch
	Source      Entity
	Destination Entity
	// HasHTTP marks an application-layer match, which is ignored.
	HasHTTP bool
}

// ICMPMatch matches an ICMP type and, when Code is set, a code.
type ICMPMatch struct {
	Type uint8
	Code *uint8
}

// PortRange is an inclusive range of port numbers.
type PortRange struct{ Min, Max uint16 }

// Entity is one side (source or destination) of a compiled rule.
type Entity struct {
	// Selector is the scoped positive selector (ScopeEntitySelector), nil
	// when the rule puts no selector constraint on this side.
	Selector *selector.Selector
	// NotSelector is never scoped.
	NotSelector *selector.Selector
	Nets        []netip.Prefix
	NotNets     []netip.Prefix
	// Ports and NamedPorts are ORed: the side's port must be in one of the
	// ranges or be one of the named ports of an endpoint holding the
	// side's address (and matching Selector).
	Ports         []PortRange
	NamedPorts    []string
	NotPorts      []PortRange
	NotNamedPorts []string
	// Services is a Kubernetes service match; the evaluator has no
	// service data, so a rule with one never matches.
	Services *api.ServiceMatch
}

// HasPorts reports whether the side constrains the port.
func (e *Entity) HasPorts() bool { return len(e.Ports) > 0 || len(e.NamedPorts) > 0 }

// Input is everything Compile needs.
type Input struct {
	Tiers                 []*api.Tier
	NetworkPolicies       []*api.NetworkPolicy
	GlobalNetworkPolicies []*api.GlobalNetworkPolicy
	Profiles              []*api.Profile
}

// BuiltinTiers returns the three built-in tiers (compat §2.1), empty.
func BuiltinTiers() []*Tier {
	f := func(v float64) *float64 { return &v }
	return []*Tier{
		{Name: api.DefaultTierName, Order: f(1_000_000), DefaultAction: api.Deny},
		{Name: KubeAdminTierName, Order: f(1_000), DefaultAction: api.Pass},
		{Name: KubeBaselineTierName, Order: f(10_000_000), DefaultAction: api.Pass},
	}
}

// Compile builds a Model. A policy naming a tier that does not exist is an
// error; so is any selector, CIDR, protocol or port that does not parse.
func Compile(in Input) (*Model, error) {
	tiers := map[string]*Tier{}
	for _, t := range BuiltinTiers() {
		tiers[t.Name] = t
	}
	for _, t := range in.Tiers {
		ct, err := CompileTier(t)
		if err != nil {
			return nil, err
		}
		tiers[ct.Name] = ct
	}
	add := func(p *Policy) error {
		t, ok := tiers[p.Tier]
		if !ok {
			return fmt.Errorf("%s %s: tier %q does not exist", p.Kind, p.ID(), p.Tier)
		}
		t.Policies = append(t.Policies, p)
		return nil
	}
	for _, np := range in.NetworkPolicies {
		p, err := CompileNetworkPolicy(np)
		if err != nil {
			return nil, err
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	for _, gnp := range in.GlobalNetworkPolicies {
		p, err := CompileGlobalNetworkPolicy(gnp)
		if err != nil {
			return nil, err
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	m := &Model{Profiles: map[string]*Profile{
		DefaultAllowProfileName: {
			Name:    DefaultAllowProfileName,
			Ingress: []*Rule{{Action: api.Allow}},
			Egress:  []*Rule{{Action: api.Allow}},
		},
	}}
	for _, t := range tiers {
		slices.SortStableFunc(t.Policies, ComparePolicies)
		m.Tiers = append(m.Tiers, t)
	}
	slices.SortStableFunc(m.Tiers, CompareTiers)
	for _, p := range in.Profiles {
		cp, err := CompileProfile(p)
		if err != nil {
			return nil, err
		}
		m.Profiles[cp.Name] = cp
	}
	return m, nil
}

// ComparePolicies orders policies within a tier: ascending order, nil
// last; ties broken by name, then namespace, then kind (Felix's
// "name/namespace/kind" key comparison).
func ComparePolicies(a, b *Policy) int {
	if c := desired.CompareOrder(a.Order, b.Order); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(a.Kind, b.Kind)
}

// CompareTiers orders tiers: ascending order, nil last, ties by name.
func CompareTiers(a, b *Tier) int {
	if c := desired.CompareOrder(a.Order, b.Order); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// CompileTier compiles a Tier; a missing defaultAction is Deny.
func CompileTier(t *api.Tier) (*Tier, error) {
	ct := &Tier{Name: t.Name, Order: t.Spec.Order, DefaultAction: api.Deny}
	if t.Spec.DefaultAction != nil {
		switch *t.Spec.DefaultAction {
		case api.Deny, api.Pass:
			ct.DefaultAction = *t.Spec.DefaultAction
		default:
			return nil, fmt.Errorf("Tier %s: spec.defaultAction %q must be Deny or Pass", t.Name, *t.Spec.DefaultAction)
		}
	}
	return ct, nil
}

// defaultTypes applies Calico's types defaulting when types is empty
// (compat §2.4): no egress rules gives Ingress (this includes a policy with
// no rules at all), egress rules only give Egress, both give both.
func defaultTypes(types []api.PolicyType, nIngress, nEgress int) (in, eg bool, err error) {
	if len(types) == 0 {
		switch {
		case nEgress == 0:
			return true, false, nil
		case nIngress == 0:
			return false, true, nil
		default:
			return true, true, nil
		}
	}
	for i, t := range types {
		switch strings.ToLower(string(t)) {
		case "ingress":
			in = true
		case "egress":
			eg = true
		default:
			return false, false, fmt.Errorf("spec.types[%d]: %q is neither Ingress nor Egress", i, t)
		}
	}
	return in, eg, nil
}

// CompileNetworkPolicy compiles a namespaced policy.
func CompileNetworkPolicy(np *api.NetworkPolicy) (*Policy, error) {
	s := &np.Spec
	where := fmt.Sprintf("NetworkPolicy %s/%s", np.Namespace, np.Name)
	if np.Namespace == "" {
		return nil, fmt.Errorf("%s: metadata.namespace is required", where)
	}
	sel, err := ScopePolicySelector(np.Namespace, s.Selector, "", s.ServiceAccountSelector)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	p := &Policy{Kind: "NetworkPolicy", Namespace: np.Namespace, Name: np.Name, Tier: cmp.Or(s.Tier, api.DefaultTierName), Order: s.Order}
	return finishPolicy(p, where, sel, s.Types, s.Ingress, s.Egress)
}

// CompileGlobalNetworkPolicy compiles a cluster-wide policy.
func CompileGlobalNetworkPolicy(gnp *api.GlobalNetworkPolicy) (*Policy, error) {
	s := &gnp.Spec
	where := "GlobalNetworkPolicy " + gnp.Name
	sel, err := ScopePolicySelector("", s.Selector, s.NamespaceSelector, s.ServiceAccountSelector)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	p := &Policy{Kind: "GlobalNetworkPolicy", Name: gnp.Name, Tier: cmp.Or(s.Tier, api.DefaultTierName), Order: s.Order,
		DoNotTrack: s.DoNotTrack, PreDNAT: s.PreDNAT, ApplyOnForward: s.ApplyOnForward}
	return finishPolicy(p, where, sel, s.Types, s.Ingress, s.Egress)
}

func finishPolicy(p *Policy, where, sel string, types []api.PolicyType, in, eg []api.Rule) (*Policy, error) {
	var err error
	if p.Selector, err = selector.Parse(sel); err != nil {
		return nil, fmt.Errorf("%s: spec.selector: %w", where, err)
	}
	if p.AppliesIngress, p.AppliesEgress, err = defaultTypes(types, len(in), len(eg)); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if p.Ingress, err = compileRules(in, p.Namespace, where+": spec.ingress"); err != nil {
		return nil, err
	}
	if p.Egress, err = compileRules(eg, p.Namespace, where+": spec.egress"); err != nil {
		return nil, err
	}
	return p, nil
}

// CompileProfile compiles a profile. Profile rules are not namespaced.
func CompileProfile(pr *api.Profile) (*Profile, error) {
	where := "Profile " + pr.Name
	cp := &Profile{Name: pr.Name, LabelsToApply: pr.Spec.LabelsToApply}
	var err error
	if cp.Ingress, err = compileRules(pr.Spec.Ingress, "", where+": spec.ingress"); err != nil {
		return nil, err
	}
	if cp.Egress, err = compileRules(pr.Spec.Egress, "", where+": spec.egress"); err != nil {
		return nil, err
	}
	return cp, nil
}

func compileRules(rs []api.Rule, ns, where string) ([]*Rule, error) {
	var out []*Rule
	for i := range rs {
		r, err := CompileRule(&rs[i], ns, i)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", where, i, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// CompileRule compiles one rule of a policy in namespace ns ("" for a
// global policy or a profile) at position index.
func CompileRule(r *api.Rule, ns string, index int) (*Rule, error) {
	cr := &Rule{Index: index, HasHTTP: r.HTTP != nil}
	switch strings.ToLower(string(r.Action)) {
	case "allow":
		cr.Action = api.Allow
	case "deny":
		cr.Action = api.Deny
	case "log":
		cr.Action = api.Log
	case "pass", "next-tier":
		cr.Action = api.Pass
	default:
		return nil, fmt.Errorf("action %q must be Allow, Deny, Log or Pass", r.Action)
	}
	if r.IPVersion != nil {
		if *r.IPVersion != 4 && *r.IPVersion != 6 {
			return nil, fmt.Errorf("ipVersion %d must be 4 or 6", *r.IPVersion)
		}
		cr.IPVersion = *r.IPVersion
	}
	var err error
	if cr.Protocol, err = protoNumber(r.Protocol, "protocol"); err != nil {
		return nil, err
	}
	if cr.NotProtocol, err = protoNumber(r.NotProtocol, "notProtocol"); err != nil {
		return nil, err
	}
	if cr.ICMP, err = icmpMatch(r.ICMP, "icmp"); err != nil {
		return nil, err
	}
	if cr.NotICMP, err = icmpMatch(r.NotICMP, "notICMP"); err != nil {
		return nil, err
	}
	if cr.Source, err = compileEntity(&r.Source, ns); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if cr.Destination, err = compileEntity(&r.Destination, ns); err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	return cr, nil
}

func protoNumber(p *api.Protocol, field string) (*uint8, error) {
	if p == nil {
		return nil, nil
	}
	n, ok := p.ToNumber()
	if !ok || n == 0 {
		return nil, fmt.Errorf("%s %q is not TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255", field, p.String())
	}
	return &n, nil
}

func icmpMatch(f *api.ICMPFields, field string) (*ICMPMatch, error) {
	if f == nil {
		return nil, nil
	}
	if f.Type == nil {
		if f.Code != nil {
			return nil, fmt.Errorf("%s.code needs %s.type", field, field)
		}
		return nil, nil
	}
	if *f.Type < 0 || *f.Type > 254 {
		return nil, fmt.Errorf("%s.type %d must be from 0 to 254", field, *f.Type)
	}
	m := &ICMPMatch{Type: uint8(*f.Type)}
	if f.Code != nil {
		if *f.Code < 0 || *f.Code > 255 {
			return nil, fmt.Errorf("%s.code %d must be from 0 to 255", field, *f.Code)
		}
		c := uint8(*f.Code)
		m.Code = &c
	}
	return m, nil
}

func compileEntity(er *api.EntityRule, ns string) (Entity, error) {
	var e Entity
	scoped, err := ScopeEntitySelector(er, ns)
	if err != nil {
		return e, err
	}
	if scoped != "" {
		if e.Selector, err = selector.Parse(scoped); err != nil {
			return e, fmt.Errorf("selector: %w", err)
		}
	}
	if er.NotSelector != "" {
		if e.NotSelector, err = selector.Parse(er.NotSelector); err != nil {
			return e, fmt.Errorf("notSelector: %w", err)
		}
	}
	if e.Nets, err = parseNets(er.Nets, "nets"); err != nil {
		return e, err
	}
	if e.NotNets, err = parseNets(er.NotNets, "notNets"); err != nil {
		return e, err
	}
	e.Ports, e.NamedPorts, err = splitPorts(er.Ports, "ports")
	if err != nil {
		return e, err
	}
	e.NotPorts, e.NotNamedPorts, err = splitPorts(er.NotPorts, "notPorts")
	if err != nil {
		return e, err
	}
	if er.Services != nil {
		s := *er.Services
		e.Services = &s
	}
	return e, nil
}

// ParseNet parses a CIDR or a bare address (a /32 or /128) and masks it.
func ParseNet(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseNets(ss []string, field string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, s := range ss {
		p, err := ParseNet(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func splitPorts(ps []api.Port, field string) ([]PortRange, []string, error) {
	var ranges []PortRange
	var named []string
	for i, p := range ps {
		if p.IsNamed() {
			named = append(named, p.PortName)
			continue
		}
		if p.MinPort > p.MaxPort {
			return nil, nil, fmt.Errorf("%s[%d]: range %s has min above max", field, i, p)
		}
		ranges = append(ranges, PortRange{p.MinPort, p.MaxPort})
	}
	return ranges, named, nil
}
