// Package scenario reads policy scenarios — namespaces, pods, policies and
// probes with expected outcomes — and evaluates them with the reference
// evaluator. `brindlectl policy check` runs scenarios through it; the lab
// runs the same files against real packets.
//
// Like package policy it does no I/O of its own: Parse takes the file's
// bytes, and the text rendering shared by `policy check` and `brindle lab
// run` (text.go) writes to a strings.Builder or an io.Writer it is given.
package scenario

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/policy"
)

// DefaultPodCIDR is where pods without an ip get addresses: the n-th such
// pod in file order gets the n-th free address after the network address.
const DefaultPodCIDR = "10.244.0.0/16"

// Scenario is the file format.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Namespaces maps a name to its labels. Namespaces that pods use but
	// that are not listed exist with no labels.
	Namespaces map[string]Namespace `json:"namespaces,omitempty"`
	// ServiceAccounts gives service accounts labels (for
	// serviceAccounts.selector); unlisted ones have none.
	ServiceAccounts []ServiceAccount `json:"serviceAccounts,omitempty"`
	Pods            []Pod            `json:"pods,omitempty"`
	// Policies are full objects of any kind DecodeDocuments accepts:
	// Kubernetes NetworkPolicy, projectcalico.org/v3 kinds, 2017 v1 kinds.
	Policies       []json.RawMessage `json:"policies,omitempty"`
	Probes         []Probe           `json:"probes,omitempty"`
	ExternalProbes []Probe           `json:"externalProbes,omitempty"`
}

// Namespace is a namespace's labels.
type Namespace struct {
	Labels map[string]string `json:"labels,omitempty"`
}

// ServiceAccount is a service account's labels.
type ServiceAccount struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Pod is a pod of the scenario.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	// IP is optional; see DefaultPodCIDR.
	IP string `json:"ip,omitempty"`
	// ServiceAccount defaults to "default".
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Ports are the ports the pod serves; a name makes a named port.
	Ports []PodPort `json:"ports,omitempty"`
}

// PodPort is one served port.
type PodPort struct {
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol,omitempty"` // default TCP
	Name     string `json:"name,omitempty"`
}

// Probe is one packet to evaluate: from a pod ("ns/name") or, in
// externalProbes, an address outside the cluster, to a pod.
type Probe struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     uint16 `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"` // default TCP
	// SourcePort is optional (0 when unset).
	SourcePort uint16 `json:"sourcePort,omitempty"`
	// ICMPType and ICMPCode default to 8/0 (echo request) for ICMP and
	// 128/0 for ICMPv6.
	ICMPType *uint8 `json:"icmpType,omitempty"`
	ICMPCode *uint8 `json:"icmpCode,omitempty"`
	// Allowed is the expectation; nil means "just show the result".
	Allowed *bool `json:"allowed,omitempty"`
}

// Label renders the probe's protocol and port, e.g. "80/TCP" or "ICMP".
func (p *Probe) Label() string {
	proto := p.Protocol
	if proto == "" {
		proto = "TCP"
	}
	if n, err := policy.ParseProtocol(proto); err == nil {
		proto = policy.ProtocolName(n)
		if n == 1 || n == 58 {
			return proto
		}
	}
	return fmt.Sprintf("%d/%s", p.Port, proto)
}

// Parse decodes a scenario strictly (unknown fields are errors).
func Parse(data []byte) (*Scenario, error) {
	var s Scenario
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return &s, nil
}

// Built is a scenario compiled for evaluation.
type Built struct {
	Scenario  *Scenario
	Model     *policy.Model
	World     *policy.World
	Evaluator *policy.Evaluator
	// PodIP is each pod's address by "ns/name".
	PodIP map[string]netip.Addr
	// PodOrder lists pod IDs in file order, then the IDs of
	// WorkloadEndpoints given in policies (probes may target them too).
	PodOrder []string
	weps     []*policy.Endpoint
}

// Build decodes the policies, models the pods as Calico does, compiles the
// model and prepares the evaluator. Every error names the offending entry.
func (s *Scenario) Build() (*Built, error) {
	b := &Built{Scenario: s, PodIP: map[string]netip.Addr{}, World: &policy.World{}}
	var in policy.Input
	userProfiles := map[string]*api.Profile{}
	for i, raw := range s.Policies {
		objs, err := api.DecodeDocuments(raw)
		if err != nil {
			return nil, fmt.Errorf("policies[%d]: %w", i, err)
		}
		for _, obj := range objs {
			if err := b.addObject(obj, &in, userProfiles); err != nil {
				return nil, fmt.Errorf("policies[%d]: %w", i, err)
			}
		}
	}

	// Namespaces and service accounts become kns. and ksa. profiles.
	namespaces := map[string]map[string]string{}
	for name, ns := range s.Namespaces {
		namespaces[name] = ns.Labels
	}
	saLabels := map[[2]string]map[string]string{}
	for i, sa := range s.ServiceAccounts {
		if sa.Namespace == "" || sa.Name == "" {
			return nil, fmt.Errorf("serviceAccounts[%d]: namespace and name are required", i)
		}
		saLabels[[2]string{sa.Namespace, sa.Name}] = sa.Labels
		if _, ok := namespaces[sa.Namespace]; !ok {
			namespaces[sa.Namespace] = nil
		}
	}
	used, err := netip.ParsePrefix(DefaultPodCIDR)
	if err != nil {
		return nil, err
	}
	taken := map[netip.Addr]bool{}
	for i, p := range s.Pods {
		if p.IP == "" {
			continue
		}
		a, err := netip.ParseAddr(p.IP)
		if err != nil {
			return nil, fmt.Errorf("pods[%d] (%s/%s): ip %q is not an IP address", i, p.Namespace, p.Name, p.IP)
		}
		taken[a] = true
	}
	next := used.Addr().Next()
	for i, p := range s.Pods {
		where := fmt.Sprintf("pods[%d]", i)
		if p.Namespace == "" || p.Name == "" || strings.Contains(p.Name, "/") {
			return nil, fmt.Errorf("%s: namespace and name (without '/') are required", where)
		}
		id := p.Namespace + "/" + p.Name
		if _, dup := b.PodIP[id]; dup {
			return nil, fmt.Errorf("%s: pod %s is listed twice", where, id)
		}
		var ip netip.Addr
		if p.IP != "" {
			ip, _ = netip.ParseAddr(p.IP)
		} else {
			for taken[next] {
				next = next.Next()
			}
			if !used.Contains(next) {
				return nil, fmt.Errorf("%s: no free address left in %s", where, DefaultPodCIDR)
			}
			ip = next
			taken[ip] = true
		}
		var ports []policy.NamedPort
		for j, pp := range p.Ports {
			proto, err := policy.ParseProtocol(defaultTCP(pp.Protocol))
			if err != nil {
				return nil, fmt.Errorf("%s.ports[%d]: %w", where, j, err)
			}
			ports = append(ports, policy.NamedPort{Name: pp.Name, Protocol: proto, Port: pp.Port})
		}
		sa := p.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		if _, ok := namespaces[p.Namespace]; !ok {
			namespaces[p.Namespace] = nil
		}
		if _, ok := saLabels[[2]string{p.Namespace, sa}]; !ok {
			saLabels[[2]string{p.Namespace, sa}] = nil
		}
		b.World.Endpoints = append(b.World.Endpoints, policy.K8sPod(policy.Pod{
			Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, ServiceAccount: sa,
			IPs: []netip.Addr{ip}, Ports: ports,
		}))
		b.PodIP[id] = ip
		b.PodOrder = append(b.PodOrder, id)
	}
	for _, ep := range b.weps {
		if _, dup := b.PodIP[ep.ID()]; dup {
			return nil, fmt.Errorf("WorkloadEndpoint %s has the name of a pod", ep.ID())
		}
		b.PodIP[ep.ID()] = ep.IPs[0]
		b.PodOrder = append(b.PodOrder, ep.ID())
	}
	for _, name := range sortedKeys(namespaces) {
		in.Profiles = append(in.Profiles, api.NamespaceProfile(name, namespaces[name]))
	}
	saKeys := make([][2]string, 0, len(saLabels))
	for k := range saLabels {
		saKeys = append(saKeys, k)
	}
	sort.Slice(saKeys, func(i, j int) bool { return saKeys[i][0]+"."+saKeys[i][1] < saKeys[j][0]+"."+saKeys[j][1] })
	for _, k := range saKeys {
		in.Profiles = append(in.Profiles, api.ServiceAccountProfile(k[0], k[1], saLabels[k]))
	}
	// Profiles given in the scenario replace derived ones of the same name.
	for _, name := range sortedKeys(userProfiles) {
		in.Profiles = append(in.Profiles, userProfiles[name])
	}

	if b.Model, err = policy.Compile(in); err != nil {
		return nil, err
	}
	b.Evaluator = policy.NewEvaluator(b.Model, b.World)
	if err := s.checkProbes(b); err != nil {
		return nil, err
	}
	return b, nil
}

func defaultTCP(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (b *Built) addObject(obj api.Object, in *policy.Input, profiles map[string]*api.Profile) error {
	switch o := obj.(type) {
	case *networkingv1.NetworkPolicy:
		if o.Namespace == "" {
			o.Namespace = "default"
		}
		np, err := api.TranslateNetworkPolicy(o)
		if err != nil {
			return err
		}
		in.NetworkPolicies = append(in.NetworkPolicies, np)
		return nil
	}
	if kind, ok := api.KindOf(obj); ok && kind.Namespaced && obj.GetNamespace() == "" {
		obj.SetNamespace("default")
	}
	api.Default(obj)
	if err := api.Validate(obj); err != nil {
		return err
	}
	switch o := obj.(type) {
	case *api.NetworkPolicy:
		in.NetworkPolicies = append(in.NetworkPolicies, o)
	case *api.GlobalNetworkPolicy:
		in.GlobalNetworkPolicies = append(in.GlobalNetworkPolicies, o)
	case *api.Tier:
		in.Tiers = append(in.Tiers, o)
	case *api.Profile:
		profiles[o.Name] = o
	case *api.NetworkSet:
		ns, err := policy.NetworkSetFromAPI(o)
		if err != nil {
			return err
		}
		b.World.NetworkSets = append(b.World.NetworkSets, ns)
	case *api.GlobalNetworkSet:
		ns, err := policy.GlobalNetworkSetFromAPI(o)
		if err != nil {
			return err
		}
		b.World.NetworkSets = append(b.World.NetworkSets, ns)
	case *api.HostEndpoint:
		ep, err := policy.HostFromAPI(o)
		if err != nil {
			return err
		}
		b.World.Endpoints = append(b.World.Endpoints, ep)
	case *api.WorkloadEndpoint:
		ep, err := policy.WorkloadFromAPI(o)
		if err != nil {
			return err
		}
		b.World.Endpoints = append(b.World.Endpoints, ep)
		if len(ep.IPs) > 0 {
			b.weps = append(b.weps, ep)
		}
	default:
		kind := obj.GetObjectKind().GroupVersionKind().Kind
		return fmt.Errorf("%s %s: kind is not used by policy check", kind, obj.GetName())
	}
	return nil
}

// Packet builds the packet for a probe.
func (b *Built) Packet(p *Probe, external bool) (policy.Packet, error) {
	var pk policy.Packet
	var err error
	if external {
		if pk.Src, err = netip.ParseAddr(p.From); err != nil {
			return pk, fmt.Errorf("from %q is not an IP address", p.From)
		}
	} else {
		ip, ok := b.PodIP[p.From]
		if !ok {
			return pk, fmt.Errorf("from %q is not a pod of the scenario (want namespace/name)", p.From)
		}
		pk.Src = ip
	}
	ip, ok := b.PodIP[p.To]
	if !ok {
		return pk, fmt.Errorf("to %q is not a pod of the scenario (want namespace/name)", p.To)
	}
	pk.Dst = ip
	if pk.Protocol, err = policy.ParseProtocol(defaultTCP(p.Protocol)); err != nil {
		return pk, err
	}
	pk.SrcPort, pk.DstPort = p.SourcePort, p.Port
	switch pk.Protocol {
	case 1, 58:
		pk.ICMPType = 8
		if pk.Protocol == 58 {
			pk.ICMPType = 128
		}
		if p.ICMPType != nil {
			pk.ICMPType = *p.ICMPType
		}
		if p.ICMPCode != nil {
			pk.ICMPCode = *p.ICMPCode
		}
	case 6, 17, 132, 136:
		if p.Port == 0 {
			return pk, fmt.Errorf("port is required for %s", policy.ProtocolName(pk.Protocol))
		}
	}
	return pk, nil
}

func (s *Scenario) checkProbes(b *Built) error {
	for i := range s.Probes {
		if _, err := b.Packet(&s.Probes[i], false); err != nil {
			return fmt.Errorf("probes[%d]: %w", i, err)
		}
	}
	for i := range s.ExternalProbes {
		if _, err := b.Packet(&s.ExternalProbes[i], true); err != nil {
			return fmt.Errorf("externalProbes[%d]: %w", i, err)
		}
	}
	return nil
}

// ProbeResult is one evaluated probe.
type ProbeResult struct {
	Probe    Probe
	External bool
	Result   policy.Result
	// Wrong is true when the probe has an expectation the result differs
	// from.
	Wrong bool
}

// Run evaluates every probe (pod probes first, then external ones), with
// walk-throughs when trace is set.
func (b *Built) Run(trace bool) []ProbeResult {
	var out []ProbeResult
	run := func(ps []Probe, external bool) {
		for i := range ps {
			pk, err := b.Packet(&ps[i], external)
			if err != nil {
				continue // checked by Build
			}
			var r policy.Result
			if trace {
				r = b.Evaluator.Evaluate(pk)
			} else {
				r = b.Evaluator.Decide(pk)
			}
			out = append(out, ProbeResult{Probe: ps[i], External: external, Result: r,
				Wrong: ps[i].Allowed != nil && *ps[i].Allowed != r.Allowed})
		}
	}
	run(b.Scenario.Probes, false)
	run(b.Scenario.ExternalProbes, true)
	return out
}

// ParsePortProtocol parses "80/TCP", "80" (TCP) or "ICMP".
func ParsePortProtocol(s string) (port uint16, proto string, err error) {
	p, pr, ok := strings.Cut(s, "/")
	if !ok {
		if n, err := strconv.ParseUint(s, 10, 16); err == nil {
			return uint16(n), "TCP", nil
		}
		if _, err := policy.ParseProtocol(s); err != nil {
			return 0, "", fmt.Errorf("%q is not PORT/PROTOCOL", s)
		}
		return 0, s, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, "", fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, p)
	}
	if _, err := policy.ParseProtocol(pr); err != nil {
		return 0, "", fmt.Errorf("%q: %w", s, err)
	}
	return uint16(n), pr, nil
}
