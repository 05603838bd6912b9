package api

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
)

// The 2017 v1 API (calicoctl v1.x, Calico 2.x) as users wrote it, and its
// conversion to v3 as calico-upgrade / "calicoctl convert" (libcalico-go
// v3.4 lib/upgrade/converters) did it. Only the documented v1 fields are
// accepted; anything else is an unknown-field error.

// v1Kinds maps every lowercase v1 kind name and alias to its canonical
// v1 kind.
var v1Kinds = map[string]string{
	"policy": "policy", "policies": "policy", "pol": "policy", "pols": "policy",
	"profile": "profile", "profiles": "profile", "pro": "profile", "pros": "profile",
	"workloadendpoint": "workloadEndpoint", "workloadendpoints": "workloadEndpoint", "wep": "workloadEndpoint", "weps": "workloadEndpoint",
	"hostendpoint": "hostEndpoint", "hostendpoints": "hostEndpoint", "hep": "hostEndpoint", "heps": "hostEndpoint",
	"ippool": "ipPool", "ippools": "ipPool", "ipp": "ipPool", "ipps": "ipPool", "pool": "ipPool", "pools": "ipPool",
	"bgppeer": "bgpPeer", "bgppeers": "bgpPeer", "bgpp": "bgpPeer", "bgpps": "bgpPeer", "bp": "bgpPeer", "bps": "bgpPeer",
	"node": "node", "nodes": "node", "no": "node", "nos": "node",
}

// V1KnpPrefix prefixes v1 policies generated from Kubernetes
// NetworkPolicies; they are regenerated from the Kubernetes objects, never
// converted.
const V1KnpPrefix = "knp.default."

type v1TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type v1Policy struct {
	v1TypeMeta
	Metadata struct {
		Name        string            `json:"name,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		Order          *float64 `json:"order,omitempty"`
		Ingress        []v1Rule `json:"ingress,omitempty"`
		Egress         []v1Rule `json:"egress,omitempty"`
		Selector       string   `json:"selector,omitempty"`
		DoNotTrack     bool     `json:"doNotTrack,omitempty"`
		PreDNAT        bool     `json:"preDNAT,omitempty"`
		ApplyOnForward bool     `json:"applyOnForward,omitempty"`
		Types          []string `json:"types,omitempty"`
	} `json:"spec,omitempty"`
}

type v1Rule struct {
	Action      string       `json:"action"`
	IPVersion   *int         `json:"ipVersion,omitempty"`
	Protocol    *Protocol    `json:"protocol,omitempty"`
	ICMP        *ICMPFields  `json:"icmp,omitempty"`
	NotProtocol *Protocol    `json:"notProtocol,omitempty"`
	NotICMP     *ICMPFields  `json:"notICMP,omitempty"`
	Source      v1EntityRule `json:"source,omitempty"`
	Destination v1EntityRule `json:"destination,omitempty"`
}

type v1EntityRule struct {
	Tag         string   `json:"tag,omitempty"`
	Net         string   `json:"net,omitempty"`
	Nets        []string `json:"nets,omitempty"`
	Selector    string   `json:"selector,omitempty"`
	Ports       []Port   `json:"ports,omitempty"`
	NotTag      string   `json:"notTag,omitempty"`
	NotNet      string   `json:"notNet,omitempty"`
	NotNets     []string `json:"notNets,omitempty"`
	NotSelector string   `json:"notSelector,omitempty"`
	NotPorts    []Port   `json:"notPorts,omitempty"`
}

type v1Profile struct {
	v1TypeMeta
	Metadata struct {
		Name   string            `json:"name,omitempty"`
		Labels map[string]string `json:"labels,omitempty"`
		Tags   []string          `json:"tags,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		Ingress []v1Rule `json:"ingress,omitempty"`
		Egress  []v1Rule `json:"egress,omitempty"`
	} `json:"spec,omitempty"`
}

type v1EndpointPort struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
}

type v1WorkloadEndpoint struct {
	v1TypeMeta
	Metadata struct {
		Name             string            `json:"name,omitempty"`
		Workload         string            `json:"workload,omitempty"`
		Orchestrator     string            `json:"orchestrator,omitempty"`
		Node             string            `json:"node,omitempty"`
		ActiveInstanceID string            `json:"activeInstanceID,omitempty"`
		Labels           map[string]string `json:"labels,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		IPNetworks    []string         `json:"ipNetworks,omitempty"`
		IPNATs        []IPNAT          `json:"ipNATs,omitempty"`
		IPv4Gateway   string           `json:"ipv4Gateway,omitempty"`
		IPv6Gateway   string           `json:"ipv6Gateway,omitempty"`
		Profiles      []string         `json:"profiles,omitempty"`
		InterfaceName string           `json:"interfaceName,omitempty"`
		MAC           string           `json:"mac,omitempty"`
		Ports         []v1EndpointPort `json:"ports,omitempty"`
	} `json:"spec,omitempty"`
}

type v1HostEndpoint struct {
	v1TypeMeta
	Metadata struct {
		Name   string            `json:"name,omitempty"`
		Node   string            `json:"node,omitempty"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		InterfaceName string           `json:"interfaceName,omitempty"`
		ExpectedIPs   []string         `json:"expectedIPs,omitempty"`
		Profiles      []string         `json:"profiles,omitempty"`
		Ports         []v1EndpointPort `json:"ports,omitempty"`
	} `json:"spec,omitempty"`
}

type v1IPPool struct {
	v1TypeMeta
	Metadata struct {
		CIDR string `json:"cidr,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		IPIP *struct {
			Enabled bool   `json:"enabled,omitempty"`
			Mode    string `json:"mode,omitempty"`
		} `json:"ipip,omitempty"`
		NATOutgoing bool `json:"nat-outgoing,omitempty"`
		Disabled    bool `json:"disabled,omitempty"`
	} `json:"spec,omitempty"`
}

type v1BGPPeer struct {
	v1TypeMeta
	Metadata struct {
		Scope  string `json:"scope,omitempty"`
		Node   string `json:"node,omitempty"`
		PeerIP string `json:"peerIP,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		ASNumber ASNumber `json:"asNumber,omitempty"`
	} `json:"spec,omitempty"`
}

type v1Node struct {
	v1TypeMeta
	Metadata struct {
		Name string `json:"name,omitempty"`
	} `json:"metadata,omitempty"`
	Spec struct {
		BGP *struct {
			ASNumber    *ASNumber `json:"asNumber,omitempty"`
			IPv4Address string    `json:"ipv4Address,omitempty"`
			IPv6Address string    `json:"ipv6Address,omitempty"`
		} `json:"bgp,omitempty"`
		OrchRefs []OrchRef `json:"orchRefs,omitempty"`
	} `json:"spec,omitempty"`
}

// decodeV1 decodes a v1 document and converts it to its v3 object.
func decodeV1(kind string, raw []byte) (Object, error) {
	k, ok := v1Kinds[strings.ToLower(kind)]
	if !ok {
		return nil, FieldErrors{{Path: "kind", Msg: fmt.Sprintf("unknown v1 kind %q (want policy, profile, workloadEndpoint, hostEndpoint, ipPool, bgpPeer or node; v3 kinds need apiVersion %s)", kind, APIVersion)}}
	}
	var fe fieldErrs
	var obj Object
	switch k {
	case "policy":
		var p v1Policy
		if err := strictDecode(raw, &p); err != nil {
			return nil, err
		}
		obj = convertV1Policy(&p, &fe)
	case "profile":
		var p v1Profile
		if err := strictDecode(raw, &p); err != nil {
			return nil, err
		}
		obj = convertV1Profile(&p, &fe)
	case "workloadEndpoint":
		var w v1WorkloadEndpoint
		if err := strictDecode(raw, &w); err != nil {
			return nil, err
		}
		obj = convertV1WorkloadEndpoint(&w, &fe)
	case "hostEndpoint":
		var h v1HostEndpoint
		if err := strictDecode(raw, &h); err != nil {
			return nil, err
		}
		obj = convertV1HostEndpoint(&h, &fe)
	case "ipPool":
		var p v1IPPool
		if err := strictDecode(raw, &p); err != nil {
			return nil, err
		}
		obj = convertV1IPPool(&p, &fe)
	case "bgpPeer":
		var p v1BGPPeer
		if err := strictDecode(raw, &p); err != nil {
			return nil, err
		}
		obj = convertV1BGPPeer(&p, &fe)
	case "node":
		var n v1Node
		if err := strictDecode(raw, &n); err != nil {
			return nil, err
		}
		obj = convertV1Node(&n, &fe)
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return obj, nil
}

func convertV1Policy(p *v1Policy, fe *fieldErrs) Object {
	name := p.Metadata.Name
	if name == "" {
		fe.add("metadata.name", "is required")
	}
	if strings.HasPrefix(name, V1KnpPrefix) {
		fe.add("metadata.name", "policy %q was generated from a Kubernetes NetworkPolicy and is not converted: apply the Kubernetes NetworkPolicy instead", name)
	}
	gnp := &GlobalNetworkPolicy{TypeMeta: typed("GlobalNetworkPolicy")}
	gnp.Name = v1NameNoDots(name)
	gnp.Annotations = p.Metadata.Annotations
	s := &p.Spec
	gnp.Spec.Order = s.Order
	gnp.Spec.Selector = v1Selector(s.Selector, "spec.selector", fe)
	gnp.Spec.Ingress = convertV1Rules(s.Ingress, "spec.ingress", fe)
	gnp.Spec.Egress = convertV1Rules(s.Egress, "spec.egress", fe)
	gnp.Spec.DoNotTrack = s.DoNotTrack
	gnp.Spec.PreDNAT = s.PreDNAT
	gnp.Spec.ApplyOnForward = s.ApplyOnForward || s.DoNotTrack || s.PreDNAT
	for i, t := range s.Types {
		switch strings.ToLower(t) {
		case "ingress":
			gnp.Spec.Types = append(gnp.Spec.Types, PolicyTypeIngress)
		case "egress":
			gnp.Spec.Types = append(gnp.Spec.Types, PolicyTypeEgress)
		default:
			fe.add(indexPath("spec.types", i), "unknown policy type %q (want ingress or egress)", t)
		}
	}
	// The v1 API filled in types from the rules when they were omitted
	// (the same rule as v3 defaulting); do it here so the converted object
	// says what the v1 one meant.
	if len(gnp.Spec.Types) == 0 {
		gnp.Spec.Types = defaultPolicyTypes(len(gnp.Spec.Ingress) > 0, len(gnp.Spec.Egress) > 0)
	}
	return gnp
}

func convertV1Profile(p *v1Profile, fe *fieldErrs) Object {
	if p.Metadata.Name == "" {
		fe.add("metadata.name", "is required")
	}
	prof := &Profile{TypeMeta: typed("Profile")}
	prof.Name = v1ProfileName(p.Metadata.Name)
	var labels map[string]string
	if len(p.Metadata.Labels) > 0 || len(p.Metadata.Tags) > 0 {
		labels = make(map[string]string, len(p.Metadata.Labels)+len(p.Metadata.Tags))
	}
	for k, v := range p.Metadata.Labels {
		labels[k] = v
	}
	for i, t := range p.Metadata.Tags {
		if v, ok := labels[t]; ok {
			fe.add(indexPath("metadata.tags", i), "tag %q clashes with the label %s=%q: both become labelsToApply; rename the label", t, t, v)
			continue
		}
		labels[t] = ""
	}
	prof.Spec.LabelsToApply = labels
	prof.Spec.Ingress = convertV1Rules(p.Spec.Ingress, "spec.ingress", fe)
	prof.Spec.Egress = convertV1Rules(p.Spec.Egress, "spec.egress", fe)
	return prof
}

func convertV1WorkloadEndpoint(w *v1WorkloadEndpoint, fe *fieldErrs) Object {
	m, s := &w.Metadata, &w.Spec
	for _, f := range []struct{ path, value string }{
		{"metadata.name", m.Name}, {"metadata.workload", m.Workload}, {"metadata.orchestrator", m.Orchestrator}, {"metadata.node", m.Node},
	} {
		if f.value == "" {
			fe.add(f.path, "is required")
		}
	}
	wep := &WorkloadEndpoint{TypeMeta: typed("WorkloadEndpoint")}
	wep.Namespace = "default"
	wep.Labels = v1Labels(m.Labels)
	spec := &wep.Spec
	spec.Orchestrator = v1Name(m.Orchestrator)
	spec.Node = v1NormalizeName(m.Node)
	spec.Endpoint = v1Name(m.Name)
	var workloadSeg string
	switch m.Orchestrator {
	case OrchestratorKubernetes:
		ns, pod, ok := strings.Cut(m.Workload, ".")
		if !ok && m.Workload != "" {
			fe.add("metadata.workload", "k8s workload %q is not \"<namespace>.<pod>\": it was not created by the Calico CNI plugin and cannot be converted", m.Workload)
		}
		wep.Namespace, spec.Pod, spec.ContainerID = ns, pod, m.ActiveInstanceID
		workloadSeg = pod
	case OrchestratorCNI:
		spec.ContainerID = m.Workload
		workloadSeg = m.Workload
	case "libnetwork":
		spec.Workload = "libnetwork"
		workloadSeg = "libnetwork"
	default:
		spec.Workload = v1Name(m.Workload)
		workloadSeg = spec.Workload
	}
	// IPv4 networks and NATs come first: the v1 backend stored the two
	// families separately.
	var v4, v6 []string
	for i, n := range s.IPNetworks {
		p, err := parseCIDROrIP(n)
		if err != nil {
			fe.add(indexPath("spec.ipNetworks", i), "%v", err)
			continue
		}
		if p.Addr().Is4() {
			v4 = append(v4, p.Masked().String())
		} else {
			v6 = append(v6, p.Masked().String())
		}
	}
	spec.IPNetworks = append(v4, v6...)
	var nat4, nat6 []IPNAT
	for i, n := range s.IPNATs {
		in, err1 := netip.ParseAddr(n.InternalIP)
		ex, err2 := netip.ParseAddr(n.ExternalIP)
		if err1 != nil {
			fe.add(indexPath("spec.ipNATs", i)+".internalIP", "%q is not an IP address", n.InternalIP)
		}
		if err2 != nil {
			fe.add(indexPath("spec.ipNATs", i)+".externalIP", "%q is not an IP address", n.ExternalIP)
		}
		if err1 != nil || err2 != nil {
			continue
		}
		nat := IPNAT{InternalIP: in.String(), ExternalIP: ex.String()}
		if in.Is4() {
			nat4 = append(nat4, nat)
		} else {
			nat6 = append(nat6, nat)
		}
	}
	spec.IPNATs = append(nat4, nat6...)
	spec.IPv4Gateway = v1IP(s.IPv4Gateway, "spec.ipv4Gateway", fe)
	spec.IPv6Gateway = v1IP(s.IPv6Gateway, "spec.ipv6Gateway", fe)
	if s.MAC != "" {
		mac, err := net.ParseMAC(s.MAC)
		if err != nil {
			fe.add("spec.mac", "%q is not a MAC address", s.MAC)
		} else {
			spec.MAC = mac.String()
		}
	}
	spec.Profiles = v1Profiles(s.Profiles)
	spec.InterfaceName = s.InterfaceName
	for _, p := range s.Ports {
		spec.Ports = append(spec.Ports, WorkloadEndpointPort{Name: p.Name, Protocol: v1Protocol(p.Protocol), Port: p.Port})
	}
	if m.Node != "" && m.Orchestrator != "" && m.Name != "" && workloadSeg != "" {
		name, err := WorkloadEndpointName(spec.Node, spec.Orchestrator, workloadSeg, spec.Endpoint)
		if err != nil {
			fe.add("metadata", "%v", err)
		}
		wep.Name = name
	}
	return wep
}

func convertV1HostEndpoint(h *v1HostEndpoint, fe *fieldErrs) Object {
	m, s := &h.Metadata, &h.Spec
	if m.Name == "" {
		fe.add("metadata.name", "is required")
	}
	if m.Node == "" {
		fe.add("metadata.node", "is required")
	}
	hep := &HostEndpoint{TypeMeta: typed("HostEndpoint")}
	node := v1NormalizeName(m.Node)
	hep.Name = v1Name(node + "." + m.Name)
	hep.Labels = m.Labels
	hep.Spec.Node = node
	hep.Spec.InterfaceName = s.InterfaceName
	var v4, v6 []string
	for i, ip := range s.ExpectedIPs {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			fe.add(indexPath("spec.expectedIPs", i), "%q is not an IP address", ip)
			continue
		}
		if a.Is4() {
			v4 = append(v4, a.String())
		} else {
			v6 = append(v6, a.String())
		}
	}
	hep.Spec.ExpectedIPs = append(v4, v6...)
	hep.Spec.Profiles = v1Profiles(s.Profiles)
	for _, p := range s.Ports {
		hep.Spec.Ports = append(hep.Spec.Ports, EndpointPort{Name: p.Name, Protocol: v1Protocol(p.Protocol), Port: p.Port})
	}
	return hep
}

func convertV1IPPool(p *v1IPPool, fe *fieldErrs) Object {
	pool := &IPPool{TypeMeta: typed("IPPool")}
	cidr, err := netip.ParsePrefix(p.Metadata.CIDR)
	switch {
	case p.Metadata.CIDR == "":
		fe.add("metadata.cidr", "is required")
	case err != nil:
		fe.add("metadata.cidr", "%q is not a CIDR", p.Metadata.CIDR)
	default:
		pool.Spec.CIDR = cidr.String()
		pool.Name = strings.NewReplacer(".", "-", ":", "-", "/", "-").Replace(pool.Spec.CIDR)
		pool.Spec.BlockSize = 26
		if cidr.Addr().Is6() {
			pool.Spec.BlockSize = 122
		}
	}
	pool.Spec.IPIPMode = EncapNever
	if ipip := p.Spec.IPIP; ipip != nil {
		switch strings.ToLower(ipip.Mode) {
		case "", "always":
			if ipip.Enabled {
				pool.Spec.IPIPMode = EncapAlways
			}
		case "cross-subnet":
			if ipip.Enabled {
				pool.Spec.IPIPMode = EncapCrossSubnet
			}
		default:
			fe.add("spec.ipip.mode", "unknown IPIP mode %q (want always or cross-subnet)", ipip.Mode)
		}
	}
	pool.Spec.NATOutgoing = p.Spec.NATOutgoing
	pool.Spec.Disabled = p.Spec.Disabled
	pool.Spec.NodeSelector = "all()"
	return pool
}

func convertV1BGPPeer(p *v1BGPPeer, fe *fieldErrs) Object {
	m := &p.Metadata
	peer := &BGPPeer{TypeMeta: typed("BGPPeer")}
	ip, err := netip.ParseAddr(m.PeerIP)
	switch {
	case m.PeerIP == "":
		fe.add("metadata.peerIP", "is required")
	case err != nil:
		fe.add("metadata.peerIP", "%q is not an IP address", m.PeerIP)
	}
	peer.Spec.PeerIP = ip.String()
	peer.Spec.ASNumber = p.Spec.ASNumber
	ipName := v1IPName(ip)
	switch strings.ToLower(m.Scope) {
	case "global":
		if m.Node != "" {
			fe.add("metadata.node", "must be empty for a global peer")
		}
		peer.Name = ipName
	case "node":
		if m.Node == "" {
			fe.add("metadata.node", "is required for a node peer")
		}
		peer.Spec.Node = v1NormalizeName(m.Node)
		peer.Name = peer.Spec.Node + "." + ipName
	case "":
		fe.add("metadata.scope", "is required (global or node)")
	default:
		fe.add("metadata.scope", "unknown scope %q (want global or node)", m.Scope)
	}
	if err != nil {
		peer.Spec.PeerIP = ""
	}
	return peer
}

func convertV1Node(n *v1Node, fe *fieldErrs) Object {
	if n.Metadata.Name == "" {
		fe.add("metadata.name", "is required")
	}
	node := &Node{TypeMeta: typed("Node")}
	node.Name = v1NormalizeName(n.Metadata.Name)
	if b := n.Spec.BGP; b != nil {
		if b.IPv4Address == "" && b.IPv6Address == "" {
			fe.add("spec.bgp", "needs ipv4Address or ipv6Address")
		}
		node.Spec.BGP = &NodeBGPSpec{ASNumber: b.ASNumber}
		node.Spec.BGP.IPv4Address = v1AddrWithNet(b.IPv4Address, "spec.bgp.ipv4Address", fe)
		node.Spec.BGP.IPv6Address = v1AddrWithNet(b.IPv6Address, "spec.bgp.ipv6Address", fe)
	}
	node.Spec.OrchRefs = n.Spec.OrchRefs
	return node
}

// convertV1Rules converts v1 rules; path is e.g. "spec.ingress".
func convertV1Rules(rules []v1Rule, path string, fe *fieldErrs) []Rule {
	if len(rules) == 0 {
		return nil
	}
	out := make([]Rule, len(rules))
	for i, r := range rules {
		rp := indexPath(path, i)
		var action Action
		switch strings.ToLower(r.Action) {
		case "", "allow":
			action = Allow // an empty v1 action meant allow
		case "deny":
			action = Deny
		case "log":
			action = Log
		case "pass", "next-tier":
			action = Pass
		default:
			fe.add(joinPath(rp, "action"), "unknown action %q (want allow, deny, log or pass)", r.Action)
		}
		out[i] = Rule{
			Action:      action,
			IPVersion:   r.IPVersion,
			ICMP:        r.ICMP,
			NotICMP:     r.NotICMP,
			Source:      convertV1EntityRule(&r.Source, joinPath(rp, "source"), fe),
			Destination: convertV1EntityRule(&r.Destination, joinPath(rp, "destination"), fe),
		}
		if r.Protocol != nil {
			p := v1Protocol(*r.Protocol)
			out[i].Protocol = &p
		}
		if r.NotProtocol != nil {
			p := v1Protocol(*r.NotProtocol)
			out[i].NotProtocol = &p
		}
	}
	return out
}

func convertV1EntityRule(e *v1EntityRule, path string, fe *fieldErrs) EntityRule {
	return EntityRule{
		Nets:        v1Nets(e.Nets, e.Net, path, "nets", "net", fe),
		Selector:    v1TagSelector(v1Selector(e.Selector, joinPath(path, "selector"), fe), e.Tag, joinPath(path, "tag"), fe),
		Ports:       e.Ports,
		NotNets:     v1Nets(e.NotNets, e.NotNet, path, "notNets", "notNet", fe),
		NotSelector: v1TagSelector(v1Selector(e.NotSelector, joinPath(path, "notSelector"), fe), e.NotTag, joinPath(path, "notTag"), fe),
		NotPorts:    e.NotPorts,
	}
}

// v1Nets merges a v1 "nets" list and the deprecated single "net" (which
// comes last, as the v1 API combined them) into masked CIDRs.
func v1Nets(nets []string, single, path, netsField, netField string, fe *fieldErrs) []string {
	var out []string
	add := func(s, p string) {
		pfx, err := parseCIDROrIP(s)
		if err != nil {
			fe.add(p, "%v", err)
			return
		}
		out = append(out, pfx.Masked().String())
	}
	for i, n := range nets {
		add(n, indexPath(joinPath(path, netsField), i))
	}
	if single != "" {
		add(single, joinPath(path, netField))
	}
	return out
}

// v1Selector converts a v1 selector: calico/k8s_ns becomes
// projectcalico.org/namespace (a plain text replacement, as Calico's
// converter did), and operators the 2017 language lacked are rejected.
func v1Selector(sel, path string, fe *fieldErrs) string {
	if op := v1SelectorNewOperator(sel); op != "" {
		fe.add(path, "%s is not part of the v1 selector language (it was added after 2017); use apiVersion %s for such selectors", op, APIVersion)
	}
	return strings.ReplaceAll(sel, "calico/k8s_ns", LabelNamespace)
}

// v1TagSelector ANDs the v3 form of a v1 tag (the tag label equal to the
// empty string) into sel.
func v1TagSelector(sel, tag, path string, fe *fieldErrs) string {
	if tag == "" {
		return sel
	}
	if !v1TagRegexp.MatchString(tag) {
		fe.add(path, "tag %q may only contain letters, digits, '_', '.', '/' and '-'", tag)
	}
	if sel == "" {
		return tag + " == ''"
	}
	return "(" + sel + ") && " + tag + " == ''"
}

var v1TagRegexp = regexp.MustCompile(`^[a-zA-Z0-9_./-]+$`)

// v1SelectorNewOperator returns the first operator in sel that the 2017
// selector language did not have ("contains", "starts with", "ends with",
// "global()"), or "". Quoted strings are skipped; an operator keyword counts
// only directly after a label, as in the tokenizer.
func v1SelectorNewOperator(sel string) string {
	isIdent := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '/' || c == '-'
	}
	var toks []string // identifiers and punctuation, strings dropped
	for i := 0; i < len(sel); {
		c := sel[i]
		switch {
		case c == '"' || c == '\'':
			end := strings.IndexByte(sel[i+1:], c)
			if end < 0 {
				return "" // unterminated: the parser reports it
			}
			toks = append(toks, "''")
			i += end + 2
		case isIdent(c):
			j := i
			for j < len(sel) && isIdent(sel[j]) {
				j++
			}
			toks = append(toks, sel[i:j])
			i = j
		case c == ' ' || c == '\t':
			i++
		default:
			toks = append(toks, string(c))
			i++
		}
	}
	for i, t := range toks {
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		if t == "global" && next == "(" && (i == 0 || !v1IsLabel(toks[i-1])) {
			return "global()"
		}
		if i == 0 || !v1IsLabel(toks[i-1]) {
			continue
		}
		switch {
		case t == "contains":
			return "contains"
		case t == "startswith", t == "starts" && next == "with":
			return "starts with"
		case t == "endswith", t == "ends" && next == "with":
			return "ends with"
		}
	}
	return ""
}

// v1IsLabel reports whether a selector token is a label (not a keyword or
// punctuation), i.e. whether an operator keyword may follow it.
func v1IsLabel(t string) bool {
	if t == "''" || len(t) == 1 && strings.ContainsAny(t, "(){},!=&|") {
		return false
	}
	switch t {
	case "in", "not", "notin", "has", "all", "global":
		return false
	}
	return true
}

// v1Protocol title-cases a v1 protocol name; numbers are unchanged.
func v1Protocol(p Protocol) Protocol {
	if p.Name == "" {
		return p
	}
	switch strings.ToLower(p.Name) {
	case "tcp":
		p.Name = ProtocolTCP
	case "udp":
		p.Name = ProtocolUDP
	case "icmp":
		p.Name = ProtocolICMP
	case "icmpv6":
		p.Name = ProtocolICMPv6
	case "sctp":
		p.Name = ProtocolSCTP
	case "udplite":
		p.Name = ProtocolUDPLite
	}
	return p
}

// v1Labels copies endpoint labels, renaming calico/k8s_ns.
func v1Labels(in map[string]string) map[string]string {
	if in == nil {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	if v, ok := out["calico/k8s_ns"]; ok {
		out[LabelNamespace] = v
		delete(out, "calico/k8s_ns")
	}
	return out
}

func v1Profiles(in []string) []string {
	var out []string
	for _, p := range in {
		out = append(out, v1ProfileName(p))
	}
	return out
}

// v1ProfileName renames a Kubernetes namespace profile k8s_ns.<ns> to
// kns.<ns> and normalises the name.
func v1ProfileName(name string) string {
	if rest, ok := strings.CutPrefix(name, "k8s_ns."); ok {
		name = NamespaceProfilePrefix + rest
	}
	return v1Name(name)
}

func v1IP(s, path string, fe *fieldErrs) string {
	if s == "" {
		return ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		fe.add(path, "%q is not an IP address", s)
		return ""
	}
	return a.String()
}

// v1AddrWithNet keeps a node address with its prefix length ("10.0.0.1/24");
// a bare IP gets a full-length prefix.
func v1AddrWithNet(s, path string, fe *fieldErrs) string {
	if s == "" {
		return ""
	}
	p, err := parseCIDROrIP(s)
	if err != nil {
		fe.add(path, "%v", err)
		return ""
	}
	return p.String()
}

// parseCIDROrIP parses "a.b.c.d/n" or a bare address (as a /32 or /128).
func parseCIDROrIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// v1IPName names a resource after an IP: "192-168-1-1", or the eight
// zero-padded groups of an IPv6 address joined with '-'.
func v1IPName(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	if ip.Is4() || ip.Is4In6() {
		return strings.ReplaceAll(ip.Unmap().String(), ".", "-")
	}
	b := ip.As16()
	groups := make([]string, 8)
	for i := range groups {
		groups[i] = fmt.Sprintf("%02x%02x", b[2*i], b[2*i+1])
	}
	return strings.Join(groups, "-")
}

var (
	v1NonNameChar = regexp.MustCompile(`[^-.a-z0-9]+`)
	v1DotDashSeq  = regexp.MustCompile(`[.-]*[.][.-]*`)
)

// v1NormalizeName turns any v1 name into a valid v3 name: lowercase, '/'
// becomes '.', other invalid characters '-', runs of '.' and '-' holding a
// '.' collapse to '.', and leading and trailing '.' and '-' are dropped.
func v1NormalizeName(name string) string {
	name = strings.ToLower(name)
	name = strings.ReplaceAll(name, "/", ".")
	name = v1NonNameChar.ReplaceAllString(name, "-")
	name = v1DotDashSeq.ReplaceAllString(name, ".")
	return strings.Trim(name, ".-")
}

// v1Name normalises a name and, if that changed it, appends the first eight
// hex digits of the SHA-1 of the original so distinct names stay distinct.
func v1Name(name string) string {
	return v1Qualify(name, v1NormalizeName(name))
}

// v1NameNoDots is v1Name with dots also turned into '-' (policy names).
func v1NameNoDots(name string) string {
	return v1Qualify(name, strings.ReplaceAll(v1NormalizeName(name), ".", "-"))
}

func v1Qualify(orig, final string) string {
	if orig == final {
		return orig
	}
	sum := sha1.Sum([]byte(orig))
	return final + "-" + hex.EncodeToString(sum[:])[:8]
}

// WorkloadEndpointName computes the name of a WorkloadEndpoint from its
// identifiers (compat §3.1): "<node>-<orchestrator>-<workload>-<endpoint>",
// where workload is the pod for orchestrator "k8s", the container ID for
// "cni", and always "libnetwork" for "libnetwork". Every '-' inside a
// segment is doubled. Segments must be non-empty and must not start or end
// with '-'.
func WorkloadEndpointName(node, orchestrator, workload, endpoint string) (string, error) {
	if orchestrator == "libnetwork" {
		workload = "libnetwork"
	}
	workloadField := "workload"
	switch orchestrator {
	case OrchestratorKubernetes:
		workloadField = "pod"
	case OrchestratorCNI:
		workloadField = "containerID"
	}
	segs := []struct{ field, value string }{
		{"node", node}, {"orchestrator", orchestrator}, {workloadField, workload}, {"endpoint", endpoint},
	}
	parts := make([]string, len(segs))
	for i, s := range segs {
		switch {
		case s.value == "":
			return "", fmt.Errorf("workload endpoint name: %s is required", s.field)
		case s.value[0] == '-' || s.value[len(s.value)-1] == '-':
			return "", fmt.Errorf("workload endpoint name: %s %q must not start or end with '-'", s.field, s.value)
		}
		parts[i] = strings.ReplaceAll(s.value, "-", "--")
	}
	return strings.Join(parts, "-"), nil
}
