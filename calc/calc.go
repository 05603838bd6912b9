package calc

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/desired"
	"github.com/brindle-net/brindle/policy"
	"github.com/brindle-net/brindle/selector"
)

// Config is what the agent tells calc about the host it runs on.
type Config struct {
	// Hostname is this host's node name: workload endpoints whose
	// spec.node equals it are local. Required.
	Hostname string
	// InterfacePrefixes, when set, override FelixConfiguration's
	// interfacePrefix (like Felix's environment overriding the datastore).
	InterfacePrefixes []string
}

// Validate reports a missing hostname or a bad interface prefix.
func (c Config) Validate() error {
	if c.Hostname == "" {
		return errors.New("calc: config: Hostname is required")
	}
	for i, p := range c.InterfacePrefixes {
		if p == "" || len(p) > desired.MaxInterfaceNameLen {
			return fmt.Errorf("calc: config: InterfacePrefixes[%d] %q must be 1-%d bytes", i, p, desired.MaxInterfaceNameLen)
		}
	}
	return nil
}

// Kinds calc consumes. Any other kind is ignored.
const (
	KindTier                = "Tier"
	KindNetworkPolicy       = "NetworkPolicy"
	KindGlobalNetworkPolicy = "GlobalNetworkPolicy"
	KindProfile             = "Profile"
	KindWorkloadEndpoint    = "WorkloadEndpoint"
	KindHostEndpoint        = "HostEndpoint"
	KindNetworkSet          = "NetworkSet"
	KindGlobalNetworkSet    = "GlobalNetworkSet"
	KindFelixConfiguration  = "FelixConfiguration"
)

// Update is one datastore change: the current value of one object, or its
// absence. Existence is decided from Object alone (nil means deleted or
// invalid), never from how the datastore reported the change, so repeated
// updates, spurious deletes and any order of delivery are all fine.
type Update struct {
	Kind      string
	Namespace string
	Name      string
	// Object is a pointer to the api type of Kind, or nil.
	Object api.Object
}

// Calc turns datastore updates into this host's desired policy dataplane.
// It is a pure state machine: not safe for concurrent use, no I/O.
type Calc struct {
	cfg    Config
	synced bool

	tiers    map[string]*policy.Tier // stored tiers (compiled)
	policies map[string]*polInfo     // by kind/namespace/name
	profiles map[string]*profInfo
	entities map[string]*entity // every endpoint and network set, by kind/namespace/name
	locals   map[string]*localEP
	ifaces   map[string]map[*localEP]struct{}
	felix    map[string]*api.FelixConfigurationSpec

	// local matches policy selectors (by policy key) against local
	// endpoints (by locals key); global matches active rule selectors (by
	// unique ID) against every endpoint and network set (by entities key).
	local  *selector.Index
	global *selector.Index

	sets    map[string]*ipSet  // active IP sets by ID
	selUses map[string]*selUse // by selector unique ID: the sets built on it
	// filling is the unique ID of the selector whose matches fill is
	// collecting into fillBuf (scratch, empty between calls).
	filling string
	fillBuf []*entity

	pub published // the last State and what changed since
}

// New returns an empty Calc. It panics if cfg does not validate (a
// programming error in the caller, which validates its own config).
func New(cfg Config) *Calc {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	c := &Calc{
		cfg:      cfg,
		tiers:    map[string]*policy.Tier{},
		policies: map[string]*polInfo{},
		profiles: map[string]*profInfo{},
		entities: map[string]*entity{},
		locals:   map[string]*localEP{},
		ifaces:   map[string]map[*localEP]struct{}{},
		felix:    map[string]*api.FelixConfigurationSpec{},
		sets:     map[string]*ipSet{},
		selUses:  map[string]*selUse{},
		pub:      newPublished(),
	}
	// Items carry their *localEP and *entity (UpdateItemWithData).
	c.local = selector.NewIndex(
		func(key, _ string, ep any) { c.onLocalMatch(key, ep.(*localEP), true) },
		func(key, _ string, ep any) { c.onLocalMatch(key, ep.(*localEP), false) })
	c.global = selector.NewIndex(
		func(uid, _ string, e any) { c.onGlobalMatch(uid, e.(*entity), true) },
		func(uid, _ string, e any) { c.onGlobalMatch(uid, e.(*entity), false) })
	return c
}

// InSync records that the datastore has delivered its whole initial
// snapshot. calc's output does not change; the agent must not program the
// dataplane before this (DESIGN: fail closed, nothing before in-sync).
func (c *Calc) InSync() { c.synced = true }

// Synced reports whether InSync was called.
func (c *Calc) Synced() bool { return c.synced }

// OnUpdate applies one datastore change. An object calc cannot use (a
// selector, CIDR, port or interface name that does not parse or cannot be
// programmed, or an Object whose type is not Kind's) is treated as absent
// and the error says why; calc stays consistent either way. Kinds calc does
// not consume are ignored.
func (c *Calc) OnUpdate(u Update) error {
	if u.Object != nil && (u.Object.GetName() != u.Name || u.Object.GetNamespace() != u.Namespace) {
		err := fmt.Errorf("calc: %s %s: object is named %s", u.Kind, joinName(u.Namespace, u.Name),
			joinName(u.Object.GetNamespace(), u.Object.GetName()))
		c.apply(Update{Kind: u.Kind, Namespace: u.Namespace, Name: u.Name})
		return err
	}
	if err := c.apply(u); err != nil {
		c.apply(Update{Kind: u.Kind, Namespace: u.Namespace, Name: u.Name})
		return fmt.Errorf("calc: %s %s: %w", u.Kind, joinName(u.Namespace, u.Name), err)
	}
	return nil
}

func joinName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func wrongType(u Update) error {
	return fmt.Errorf("object has type %T, not the type of kind %s", u.Object, u.Kind)
}

// apply dispatches one update; on error the caller applies a delete.
func (c *Calc) apply(u Update) error {
	key := u.Kind + "/" + joinName(u.Namespace, u.Name)
	switch u.Kind {
	case KindTier:
		var t *api.Tier
		if u.Object != nil {
			var ok bool
			if t, ok = u.Object.(*api.Tier); !ok {
				return wrongType(u)
			}
		}
		return c.updateTier(u.Name, t)
	case KindNetworkPolicy, KindGlobalNetworkPolicy:
		var p *policy.Policy
		var err error
		switch o := u.Object.(type) {
		case nil:
		case *api.NetworkPolicy:
			if u.Kind != KindNetworkPolicy {
				return wrongType(u)
			}
			p, err = policy.CompileNetworkPolicy(o)
		case *api.GlobalNetworkPolicy:
			if u.Kind != KindGlobalNetworkPolicy {
				return wrongType(u)
			}
			p, err = policy.CompileGlobalNetworkPolicy(o)
		default:
			return wrongType(u)
		}
		if err != nil {
			return err
		}
		return c.updatePolicy(key, p)
	case KindProfile:
		var p *policy.Profile
		if u.Object != nil {
			o, ok := u.Object.(*api.Profile)
			if !ok {
				return wrongType(u)
			}
			var err error
			if p, err = policy.CompileProfile(o); err != nil {
				return err
			}
		}
		return c.updateProfile(u.Name, p)
	case KindWorkloadEndpoint:
		if u.Object == nil {
			c.updateEntity(key, nil)
			c.updateLocal(joinName(u.Namespace, u.Name), nil, nil)
			return nil
		}
		o, ok := u.Object.(*api.WorkloadEndpoint)
		if !ok {
			return wrongType(u)
		}
		ep, err := policy.WorkloadFromAPI(o)
		if err != nil {
			return err
		}
		e := &entity{labels: ep.Labels, parents: ep.Profiles, addrs: ep.IPs, ports: ep.Ports}
		c.updateEntity(key, e)
		if o.Spec.Node != c.cfg.Hostname {
			c.updateLocal(joinName(u.Namespace, u.Name), nil, nil)
			return nil
		}
		return c.updateLocal(joinName(u.Namespace, u.Name), o, e)
	case KindHostEndpoint:
		if u.Object == nil {
			c.updateEntity(key, nil)
			return nil
		}
		o, ok := u.Object.(*api.HostEndpoint)
		if !ok {
			return wrongType(u)
		}
		ep, err := policy.HostFromAPI(o)
		if err != nil {
			return err
		}
		c.updateEntity(key, &entity{labels: ep.Labels, parents: ep.Profiles, addrs: ep.IPs, ports: ep.Ports})
		return nil
	case KindNetworkSet, KindGlobalNetworkSet:
		var ns *policy.NetworkSet
		var err error
		switch o := u.Object.(type) {
		case nil:
			c.updateEntity(key, nil)
			return nil
		case *api.NetworkSet:
			if u.Kind != KindNetworkSet {
				return wrongType(u)
			}
			ns, err = policy.NetworkSetFromAPI(o)
		case *api.GlobalNetworkSet:
			if u.Kind != KindGlobalNetworkSet {
				return wrongType(u)
			}
			ns, err = policy.GlobalNetworkSetFromAPI(o)
		default:
			return wrongType(u)
		}
		if err != nil {
			return err
		}
		c.updateEntity(key, &entity{labels: ns.Labels, parents: ns.Profiles, nets: ns.Nets})
		return nil
	case KindFelixConfiguration:
		c.pub.cfgDirty = true
		if u.Object == nil {
			delete(c.felix, u.Name)
			return nil
		}
		o, ok := u.Object.(*api.FelixConfiguration)
		if !ok {
			return wrongType(u)
		}
		if _, err := parseEndpointToHost(o.Spec.DefaultEndpointToHostAction); err != nil {
			return err
		}
		if _, err := parsePrefixes(o.Spec.InterfacePrefix); err != nil {
			return err
		}
		spec := o.Spec
		c.felix[u.Name] = &spec
		return nil
	}
	return nil
}

func parseEndpointToHost(s string) (desired.EndpointToHostAction, error) {
	switch strings.ToLower(s) {
	case "", "drop":
		return desired.EndpointToHostDrop, nil
	case "accept":
		return desired.EndpointToHostAccept, nil
	case "return":
		return desired.EndpointToHostReturn, nil
	}
	return 0, fmt.Errorf("spec.defaultEndpointToHostAction %q must be Drop, Accept or Return", s)
}

func parsePrefixes(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for i, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" || len(p) > desired.MaxInterfaceNameLen {
			return nil, fmt.Errorf("spec.interfacePrefix: entry %d %q must be 1-%d bytes", i, p, desired.MaxInterfaceNameLen)
		}
		out = append(out, p)
	}
	return out, nil
}

// felixValue returns the first non-zero value of f over the node's
// FelixConfiguration, then "default" (compat §6.4).
func felixValue[V comparable](c *Calc, f func(*api.FelixConfigurationSpec) V) V {
	var zero V
	for _, name := range []string{"node." + c.cfg.Hostname, "default"} {
		if s := c.felix[name]; s != nil {
			if v := f(s); v != zero {
				return v
			}
		}
	}
	return zero
}

func (c *Calc) config() desired.Config {
	cfg := desired.Config{InterfacePrefixes: slices.Clone(c.cfg.InterfacePrefixes)}
	if len(cfg.InterfacePrefixes) == 0 {
		cfg.InterfacePrefixes, _ = parsePrefixes(felixValue(c, func(s *api.FelixConfigurationSpec) string { return s.InterfacePrefix }))
	}
	cfg.DefaultEndpointToHostAction, _ = parseEndpointToHost(felixValue(c, func(s *api.FelixConfigurationSpec) string { return s.DefaultEndpointToHostAction }))
	return cfg
}

// Routes returns the workload routes of a state: each local endpoint's
// addresses by interface.
func Routes(s *desired.State) map[string][]netip.Prefix {
	out := make(map[string][]netip.Prefix, s.Endpoints.Len())
	for iface, ep := range s.Endpoints.All() {
		if len(ep.IPs) > 0 {
			out[iface] = slices.Clone(ep.IPs)
		}
	}
	return out
}
