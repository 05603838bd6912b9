package api

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Names and orders of the resources derived from Kubernetes objects
// (compat §3.3).
const (
	// K8sNetworkPolicyPrefix prefixes the name of a translated Kubernetes
	// NetworkPolicy: "knp.default.<name>".
	K8sNetworkPolicyPrefix = "knp.default."
	// K8sNetworkPolicyOrder is the order of every translated policy.
	K8sNetworkPolicyOrder = 1000.0
	// NamespaceProfilePrefix prefixes a namespace's profile: "kns.<ns>".
	NamespaceProfilePrefix = "kns."
	// ServiceAccountProfilePrefix prefixes a service account's profile:
	// "ksa.<ns>.<sa>".
	ServiceAccountProfilePrefix = "ksa."
)

// TranslateNetworkPolicy turns a Kubernetes networking.k8s.io/v1
// NetworkPolicy into the Calico NetworkPolicy that enforces it,
// "knp.default.<name>" in the default tier at order 1000, exactly as Calico's
// Kubernetes datastore converts it:
//
//   - the selector is "projectcalico.org/orchestrator == 'k8s'" ANDed with the
//     podSelector (matchLabels sorted by key, then matchExpressions in order);
//   - each ingress or egress rule becomes one Allow rule per protocol (sorted
//     by name) and peer, with the ports of one protocol merged into ranges;
//     a port without a protocol is TCP; endPort makes "port:endPort";
//   - an ipBlock peer gives nets/notNets; a pod or namespace peer gives a
//     selector (always with the orchestrator term) and a namespaceSelector
//     ("all()" for an empty one).
//
// The API server defaults an empty policyTypes to Ingress, plus Egress when
// the policy has egress rules; objects read from files never passed through
// it, so that defaulting is applied here first.
func TranslateNetworkPolicy(np *networkingv1.NetworkPolicy) (*NetworkPolicy, error) {
	if np == nil {
		return nil, fmt.Errorf("kubernetes NetworkPolicy is nil")
	}
	if np.Name == "" {
		return nil, fmt.Errorf("kubernetes NetworkPolicy: metadata.name is required")
	}
	where := fmt.Sprintf("kubernetes NetworkPolicy %s/%s", np.Namespace, np.Name)
	podSel, err := k8sSelector(&np.Spec.PodSelector, true)
	if err != nil {
		return nil, fmt.Errorf("%s: spec.podSelector: %w", where, err)
	}
	var ingress, egress []Rule
	for i, r := range np.Spec.Ingress {
		rules, err := k8sRule(r.From, r.Ports, true)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.ingress[%d]: %w", where, i, err)
		}
		ingress = append(ingress, rules...)
	}
	for i, r := range np.Spec.Egress {
		rules, err := k8sRule(r.To, r.Ports, false)
		if err != nil {
			return nil, fmt.Errorf("%s: spec.egress[%d]: %w", where, i, err)
		}
		egress = append(egress, rules...)
	}

	policyTypes := np.Spec.PolicyTypes
	if len(policyTypes) == 0 {
		// The API server's defaulting.
		policyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			policyTypes = append(policyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	var hasIngress, hasEgress bool
	for i, t := range policyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			hasIngress = true
		case networkingv1.PolicyTypeEgress:
			hasEgress = true
		default:
			return nil, fmt.Errorf("%s: spec.policyTypes[%d]: %q is neither Ingress nor Egress", where, i, t)
		}
	}
	var types []PolicyType
	if hasIngress {
		types = append(types, PolicyTypeIngress)
	}
	if hasEgress {
		types = append(types, PolicyTypeEgress)
	}

	order := K8sNetworkPolicyOrder
	return &NetworkPolicy{
		TypeMeta: typed("NetworkPolicy"),
		ObjectMeta: metav1.ObjectMeta{
			Name:              K8sNetworkPolicyPrefix + np.Name,
			Namespace:         np.Namespace,
			UID:               np.UID,
			ResourceVersion:   np.ResourceVersion,
			CreationTimestamp: np.CreationTimestamp,
		},
		Spec: NetworkPolicySpec{
			Tier:     DefaultTierName,
			Order:    &order,
			Selector: podSel,
			Types:    types,
			Ingress:  ingress,
			Egress:   egress,
		},
	}, nil
}

// k8sSelector renders a label selector in Calico syntax. A pod selector
// always starts with the orchestrator term; an empty namespace selector is
// "all()"; a nil namespace selector is "".
func k8sSelector(s *metav1.LabelSelector, pod bool) (string, error) {
	var terms []string
	if pod {
		terms = append(terms, LabelOrchestrator+" == '"+OrchestratorKubernetes+"'")
	}
	if s == nil {
		return strings.Join(terms, " && "), nil
	}
	if !pod && len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
		return "all()", nil
	}
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.MatchLabels[k]
		if err := checkK8sLabelText(k, v); err != nil {
			return "", fmt.Errorf("matchLabels: %w", err)
		}
		terms = append(terms, fmt.Sprintf("%s == '%s'", k, v))
	}
	for i, e := range s.MatchExpressions {
		for _, v := range e.Values {
			if err := checkK8sLabelText(e.Key, v); err != nil {
				return "", fmt.Errorf("matchExpressions[%d]: %w", i, err)
			}
		}
		if err := checkK8sLabelText(e.Key, ""); err != nil {
			return "", fmt.Errorf("matchExpressions[%d]: %w", i, err)
		}
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(e.Values) == 0 {
				return "", fmt.Errorf("matchExpressions[%d]: operator %s needs at least one value", i, e.Operator)
			}
			op := "in"
			if e.Operator == metav1.LabelSelectorOpNotIn {
				op = "not in"
			}
			terms = append(terms, fmt.Sprintf("%s %s { '%s' }", e.Key, op, strings.Join(e.Values, "', '")))
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(e.Values) != 0 {
				return "", fmt.Errorf("matchExpressions[%d]: operator %s takes no values", i, e.Operator)
			}
			if e.Operator == metav1.LabelSelectorOpExists {
				terms = append(terms, fmt.Sprintf("has(%s)", e.Key))
			} else {
				terms = append(terms, fmt.Sprintf("! has(%s)", e.Key))
			}
		default:
			return "", fmt.Errorf("matchExpressions[%d]: unknown operator %q (want In, NotIn, Exists or DoesNotExist)", i, e.Operator)
		}
	}
	return strings.Join(terms, " && "), nil
}

// checkK8sLabelText rejects keys and values that cannot be written into a
// selector (Kubernetes validation would reject them too).
func checkK8sLabelText(key, value string) error {
	if key == "" {
		return fmt.Errorf("label key must not be empty")
	}
	if strings.ContainsAny(key, " \t'\"(){}!=&|,") {
		return fmt.Errorf("label key %q is not a valid label key", key)
	}
	if strings.ContainsAny(value, "'\"") {
		return fmt.Errorf("label value %q for key %q is not a valid label value", value, key)
	}
	return nil
}

// k8sRule turns one ingress (peers are sources) or egress (peers are
// destinations) rule into Calico rules: one per protocol × peer.
func k8sRule(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, ingress bool) ([]Rule, error) {
	type peerFields struct {
		sel, nsSel    string
		nets, notNets []string
	}
	var fields []peerFields
	for i := range peers {
		sel, nsSel, nets, notNets, err := k8sPeer(&peers[i])
		if err != nil {
			return nil, fmt.Errorf("peer %d: %w", i, err)
		}
		fields = append(fields, peerFields{sel, nsSel, nets, notNets})
	}
	if len(fields) == 0 {
		fields = []peerFields{{}} // no constraint on the peer
	}

	// protocol name -> ports; a nil slice means every port of that
	// protocol; the "" protocol means no protocol and port match at all.
	protoPorts := map[string][]Port{}
	if len(ports) == 0 {
		protoPorts[""] = nil
	}
	for i, p := range ports {
		proto := string(corev1.ProtocolTCP)
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		switch proto {
		case string(corev1.ProtocolTCP), string(corev1.ProtocolUDP), string(corev1.ProtocolSCTP):
		default:
			return nil, fmt.Errorf("ports[%d]: protocol %q must be TCP, UDP or SCTP", i, proto)
		}
		if p.Port == nil {
			if p.EndPort != nil {
				return nil, fmt.Errorf("ports[%d]: endPort needs port", i)
			}
			protoPorts[proto] = nil // all ports, overriding any list
			continue
		}
		port, err := k8sPort(*p.Port, p.EndPort)
		if err != nil {
			return nil, fmt.Errorf("ports[%d]: %w", i, err)
		}
		if cur, ok := protoPorts[proto]; ok && cur == nil {
			continue // already every port
		}
		protoPorts[proto] = append(protoPorts[proto], port)
	}
	protos := make([]string, 0, len(protoPorts))
	for p := range protoPorts {
		protos = append(protos, p)
	}
	sort.Strings(protos)

	var rules []Rule
	for _, protoName := range protos {
		portList := SimplifyPorts(protoPorts[protoName])
		for _, f := range fields {
			r := Rule{Action: Allow}
			if protoName != "" {
				p := ProtocolFromString(protoName)
				r.Protocol = &p
			}
			peer := EntityRule{Selector: f.sel, NamespaceSelector: f.nsSel, Nets: f.nets, NotNets: f.notNets}
			if ingress {
				r.Source = peer
				r.Destination = EntityRule{Ports: slices.Clone(portList)}
			} else {
				peer.Ports = slices.Clone(portList)
				r.Destination = peer
			}
			rules = append(rules, r)
		}
	}
	return rules, nil
}

// k8sPeer converts one peer: an ipBlock, or pod and/or namespace selectors.
func k8sPeer(p *networkingv1.NetworkPolicyPeer) (sel, nsSel string, nets, notNets []string, err error) {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return "", "", nil, nil, fmt.Errorf("ipBlock excludes podSelector and namespaceSelector")
		}
		cidr, err := maskedCIDR(p.IPBlock.CIDR)
		if err != nil {
			return "", "", nil, nil, fmt.Errorf("ipBlock.cidr: %w", err)
		}
		nets = []string{cidr}
		for i, e := range p.IPBlock.Except {
			c, err := maskedCIDR(e)
			if err != nil {
				return "", "", nil, nil, fmt.Errorf("ipBlock.except[%d]: %w", i, err)
			}
			notNets = append(notNets, c)
		}
		return "", "", nets, notNets, nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return "", "", nil, nil, fmt.Errorf("must set one of podSelector, namespaceSelector or ipBlock")
	}
	if sel, err = k8sSelector(p.PodSelector, true); err != nil {
		return "", "", nil, nil, fmt.Errorf("podSelector: %w", err)
	}
	if nsSel, err = k8sSelector(p.NamespaceSelector, false); err != nil {
		return "", "", nil, nil, fmt.Errorf("namespaceSelector: %w", err)
	}
	return sel, nsSel, nil, nil, nil
}

func maskedCIDR(s string) (string, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a CIDR", s)
	}
	return pfx.Masked().String(), nil
}

func k8sPort(p intstr.IntOrString, end *int32) (Port, error) {
	if p.Type == intstr.String {
		if end != nil {
			return Port{}, fmt.Errorf("endPort cannot be used with the named port %q", p.StrVal)
		}
		if p.StrVal == "" {
			return Port{}, fmt.Errorf("port name must not be empty")
		}
		if p.StrVal[0] >= '0' && p.StrVal[0] <= '9' {
			return ParsePort(p.StrVal)
		}
		return NamedPort(p.StrVal), nil
	}
	if p.IntVal < 1 || p.IntVal > 65535 {
		return Port{}, fmt.Errorf("port %d must be from 1 to 65535", p.IntVal)
	}
	if end == nil {
		return SinglePort(uint16(p.IntVal)), nil
	}
	if *end < p.IntVal || *end > 65535 {
		return Port{}, fmt.Errorf("endPort %d must be from port %d to 65535", *end, p.IntVal)
	}
	return PortRange(uint16(p.IntVal), uint16(*end)), nil
}

// SimplifyPorts returns the smallest list of ports and ranges that covers
// ports, as Calico merges a translated rule's ports: with fewer than two
// numeric ports the list is returned unchanged; otherwise named ports come
// first (in input order), then the numeric ports coalesced into ascending
// ranges.
func SimplifyPorts(ports []Port) []Port {
	if len(ports) <= 1 {
		return ports
	}
	var named []Port
	var spans [][2]int
	count := 0
	for _, p := range ports {
		if p.IsNamed() {
			named = append(named, p)
			continue
		}
		spans = append(spans, [2]int{int(p.MinPort), int(p.MaxPort)})
		count += int(p.MaxPort) - int(p.MinPort) + 1
	}
	if count <= 1 {
		return ports
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0] < spans[j][0] })
	out := named
	cur := spans[0]
	for _, s := range spans[1:] {
		if s[0] <= cur[1]+1 {
			cur[1] = max(cur[1], s[1])
			continue
		}
		out = append(out, PortRange(uint16(cur[0]), uint16(cur[1])))
		cur = s
	}
	return append(out, PortRange(uint16(cur[0]), uint16(cur[1])))
}

// NamespaceProfile builds the profile Calico derives from a Kubernetes
// namespace: "kns.<ns>", allowing everything in and out, applying the
// namespace's labels with the "pcns." prefix plus
// "pcns.projectcalico.org/name=<ns>".
func NamespaceProfile(name string, labels map[string]string) *Profile {
	apply := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		apply[NamespaceLabelPrefix+k] = v
	}
	apply[NamespaceLabelPrefix+NameLabel] = name
	return &Profile{
		TypeMeta:   typed("Profile"),
		ObjectMeta: metav1.ObjectMeta{Name: NamespaceProfilePrefix + name},
		Spec: ProfileSpec{
			Ingress:       []Rule{{Action: Allow}},
			Egress:        []Rule{{Action: Allow}},
			LabelsToApply: apply,
		},
	}
}

// ServiceAccountProfile builds the profile Calico derives from a Kubernetes
// service account: "ksa.<ns>.<sa>", with no rules, applying the account's
// labels with the "pcsa." prefix plus "pcsa.projectcalico.org/name=<sa>".
func ServiceAccountProfile(ns, sa string, labels map[string]string) *Profile {
	apply := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		apply[ServiceAccountLabelPrefix+k] = v
	}
	apply[ServiceAccountLabelPrefix+NameLabel] = sa
	return &Profile{
		TypeMeta:   typed("Profile"),
		ObjectMeta: metav1.ObjectMeta{Name: ServiceAccountProfilePrefix + ns + "." + sa},
		Spec:       ProfileSpec{LabelsToApply: apply},
	}
}
