package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/brindle-net/brindle/api"
)

// EndpointKind tells workloads from host endpoints.
type EndpointKind int

// Endpoint kinds.
const (
	Workload EndpointKind = iota
	Host
)

// Endpoint is a workload or host endpoint as the evaluator sees it.
type Endpoint struct {
	Kind EndpointKind
	// Namespace is empty for a host endpoint.
	Namespace string
	Name      string
	// Labels are the endpoint's own labels, including the synthesised
	// projectcalico.org/* ones; profiles' labelsToApply are merged in by
	// the evaluator (the endpoint's own value wins on a conflict).
	Labels   map[string]string
	Profiles []string
	IPs      []netip.Addr
	Ports    []NamedPort
}

// ID is "namespace/name" for a workload and "name" for a host endpoint.
func (e *Endpoint) ID() string {
	if e.Namespace == "" {
		return e.Name
	}
	return e.Namespace + "/" + e.Name
}

// NamedPort is a port an endpoint serves under a name.
type NamedPort struct {
	Name     string
	Protocol uint8
	Port     uint16
}

// NetworkSet is a NetworkSet (Namespace set) or GlobalNetworkSet: rule
// selectors match its nets.
type NetworkSet struct {
	Namespace string
	Name      string
	Labels    map[string]string
	Profiles  []string
	Nets      []netip.Prefix
}

// World is what policy is evaluated against.
type World struct {
	Endpoints   []*Endpoint
	NetworkSets []*NetworkSet
}

// Pod describes a Kubernetes pod for K8sPod.
type Pod struct {
	Namespace, Name string
	Labels          map[string]string
	// ServiceAccount defaults to "default".
	ServiceAccount string
	IPs            []netip.Addr
	Ports          []NamedPort
}

// K8sPod models a pod as Calico does: its labels plus
// projectcalico.org/namespace, projectcalico.org/orchestrator=k8s and
// projectcalico.org/serviceaccount (when the name is under 63 characters),
// and the profiles kns.<ns> and ksa.<ns>.<sa>.
func K8sPod(p Pod) *Endpoint {
	sa := p.ServiceAccount
	if sa == "" {
		sa = "default"
	}
	labels := make(map[string]string, len(p.Labels)+3)
	for k, v := range p.Labels {
		labels[k] = v
	}
	labels[api.LabelNamespace] = p.Namespace
	labels[api.LabelOrchestrator] = api.OrchestratorKubernetes
	if len(sa) < 63 {
		labels[api.LabelServiceAccount] = sa
	}
	return &Endpoint{
		Kind:      Workload,
		Namespace: p.Namespace,
		Name:      p.Name,
		Labels:    labels,
		Profiles:  []string{api.NamespaceProfilePrefix + p.Namespace, api.ServiceAccountProfilePrefix + p.Namespace + "." + sa},
		IPs:       p.IPs,
		Ports:     p.Ports,
	}
}

// WorkloadFromAPI converts a WorkloadEndpoint. Its labels gain
// projectcalico.org/namespace and, when set, orchestrator and service
// account labels.
func WorkloadFromAPI(w *api.WorkloadEndpoint) (*Endpoint, error) {
	where := fmt.Sprintf("WorkloadEndpoint %s/%s", w.Namespace, w.Name)
	labels := map[string]string{}
	for k, v := range w.Labels {
		labels[k] = v
	}
	labels[api.LabelNamespace] = w.Namespace
	if w.Spec.Orchestrator != "" {
		labels[api.LabelOrchestrator] = w.Spec.Orchestrator
	}
	if sa := w.Spec.ServiceAccountName; sa != "" && len(sa) < 63 {
		labels[api.LabelServiceAccount] = sa
	}
	ep := &Endpoint{Kind: Workload, Namespace: w.Namespace, Name: w.Name, Labels: labels, Profiles: w.Spec.Profiles}
	for i, n := range w.Spec.IPNetworks {
		p, err := ParseNet(n)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.ipNetworks[%d]: %w", where, i, err)
		}
		ep.IPs = append(ep.IPs, p.Addr())
	}
	for i, p := range w.Spec.Ports {
		np, err := namedPort(p.Name, p.Protocol, p.Port)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.ports[%d]: %w", where, i, err)
		}
		ep.Ports = append(ep.Ports, np)
	}
	return ep, nil
}

// HostFromAPI converts a HostEndpoint: selectors match its expectedIPs.
func HostFromAPI(h *api.HostEndpoint) (*Endpoint, error) {
	where := "HostEndpoint " + h.Name
	ep := &Endpoint{Kind: Host, Name: h.Name, Labels: h.Labels, Profiles: h.Spec.Profiles}
	for i, s := range h.Spec.ExpectedIPs {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.expectedIPs[%d]: %q is not an IP address", where, i, s)
		}
		ep.IPs = append(ep.IPs, a)
	}
	for i, p := range h.Spec.Ports {
		np, err := namedPort(p.Name, p.Protocol, p.Port)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.ports[%d]: %w", where, i, err)
		}
		ep.Ports = append(ep.Ports, np)
	}
	return ep, nil
}

func namedPort(name string, proto api.Protocol, port uint16) (NamedPort, error) {
	n, ok := proto.ToNumber()
	if !ok {
		return NamedPort{}, fmt.Errorf("protocol %q is not known", proto.String())
	}
	return NamedPort{Name: name, Protocol: n, Port: port}, nil
}

// NetworkSetFromAPI converts a NetworkSet: its labels gain
// projectcalico.org/namespace and it inherits the kns.<ns> profile's labels,
// as in Calico.
func NetworkSetFromAPI(s *api.NetworkSet) (*NetworkSet, error) {
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[api.LabelNamespace] = s.Namespace
	nets, err := parseNets(s.Spec.Nets, "spec.nets")
	if err != nil {
		return nil, fmt.Errorf("NetworkSet %s/%s: %w", s.Namespace, s.Name, err)
	}
	return &NetworkSet{Namespace: s.Namespace, Name: s.Name, Labels: labels,
		Profiles: []string{api.NamespaceProfilePrefix + s.Namespace}, Nets: nets}, nil
}

// GlobalNetworkSetFromAPI converts a GlobalNetworkSet.
func GlobalNetworkSetFromAPI(s *api.GlobalNetworkSet) (*NetworkSet, error) {
	nets, err := parseNets(s.Spec.Nets, "spec.nets")
	if err != nil {
		return nil, fmt.Errorf("GlobalNetworkSet %s: %w", s.Name, err)
	}
	return &NetworkSet{Name: s.Name, Labels: s.Labels, Nets: nets}, nil
}

// Packet is what is evaluated: a first packet of a flow.
type Packet struct {
	Src, Dst netip.Addr
	// Protocol is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
	Protocol         uint8
	SrcPort, DstPort uint16
	// ICMPType and ICMPCode are used for ICMP and ICMPv6 packets.
	ICMPType, ICMPCode uint8
}

// Protocol numbers by lowercase name.
var protocolByName = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136}

// ParseProtocol accepts a protocol name (any case) or a number 1-255.
func ParseProtocol(s string) (uint8, error) {
	p := api.ProtocolFromString(s)
	if p.Name == "" {
		if p.Number == 0 {
			return 0, fmt.Errorf("protocol number must be from 1 to 255")
		}
		return p.Number, nil
	}
	if n, ok := protocolByName[strings.ToLower(s)]; ok {
		return n, nil
	}
	return 0, fmt.Errorf("protocol %q is not TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number", s)
}

// ProtocolName renders a protocol number as Calico names it.
func ProtocolName(n uint8) string {
	switch n {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 1:
		return "ICMP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	case 136:
		return "UDPLite"
	}
	return fmt.Sprint(n)
}
