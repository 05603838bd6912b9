package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Action is what a rule does with a packet it matches.
type Action string

// Rule actions. Calico's backend spells Pass as "next-tier".
const (
	Allow Action = "Allow"
	Deny  Action = "Deny"
	Log   Action = "Log"
	Pass  Action = "Pass"
)

// PolicyType is a direction a policy applies to.
type PolicyType string

// Policy directions.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

// DefaultTierName is the tier of every policy that names none.
const DefaultTierName = "default"

// NetworkPolicy is a namespaced policy (projectcalico.org/v3).
type NetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkPolicySpec `json:"spec,omitempty"`
}

// NetworkPolicySpec is the spec of a NetworkPolicy.
type NetworkPolicySpec struct {
	Tier                   string                  `json:"tier,omitempty"`
	Order                  *float64                `json:"order,omitempty"`
	Ingress                []Rule                  `json:"ingress,omitempty"`
	Egress                 []Rule                  `json:"egress,omitempty"`
	Selector               string                  `json:"selector,omitempty"`
	Types                  []PolicyType            `json:"types,omitempty"`
	ServiceAccountSelector string                  `json:"serviceAccountSelector,omitempty"`
	PerformanceHints       []PolicyPerformanceHint `json:"performanceHints,omitempty"`
}

// PolicyPerformanceHint is an optimisation hint on a policy.
type PolicyPerformanceHint string

// GlobalNetworkPolicy is a cluster-wide policy.
type GlobalNetworkPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              GlobalNetworkPolicySpec `json:"spec,omitempty"`
}

// GlobalNetworkPolicySpec is the spec of a GlobalNetworkPolicy.
type GlobalNetworkPolicySpec struct {
	Tier                   string                  `json:"tier,omitempty"`
	Order                  *float64                `json:"order,omitempty"`
	Ingress                []Rule                  `json:"ingress,omitempty"`
	Egress                 []Rule                  `json:"egress,omitempty"`
	Selector               string                  `json:"selector,omitempty"`
	Types                  []PolicyType            `json:"types,omitempty"`
	DoNotTrack             bool                    `json:"doNotTrack,omitempty"`
	PreDNAT                bool                    `json:"preDNAT,omitempty"`
	ApplyOnForward         bool                    `json:"applyOnForward,omitempty"`
	ServiceAccountSelector string                  `json:"serviceAccountSelector,omitempty"`
	NamespaceSelector      string                  `json:"namespaceSelector,omitempty"`
	PerformanceHints       []PolicyPerformanceHint `json:"performanceHints,omitempty"`
}

// Rule is one rule of a policy or profile. All its criteria are ANDed.
type Rule struct {
	Action      Action        `json:"action"`
	IPVersion   *int          `json:"ipVersion,omitempty"`
	Protocol    *Protocol     `json:"protocol,omitempty"`
	ICMP        *ICMPFields   `json:"icmp,omitempty"`
	NotProtocol *Protocol     `json:"notProtocol,omitempty"`
	NotICMP     *ICMPFields   `json:"notICMP,omitempty"`
	Source      EntityRule    `json:"source,omitzero"`
	Destination EntityRule    `json:"destination,omitzero"`
	HTTP        *HTTPMatch    `json:"http,omitempty"`
	Metadata    *RuleMetadata `json:"metadata,omitempty"`
}

// EntityRule matches the source or destination of a packet.
type EntityRule struct {
	Nets              []string             `json:"nets,omitempty"`
	Selector          string               `json:"selector,omitempty"`
	NamespaceSelector string               `json:"namespaceSelector,omitempty"`
	Services          *ServiceMatch        `json:"services,omitempty"`
	Ports             []Port               `json:"ports,omitempty"`
	NotNets           []string             `json:"notNets,omitempty"`
	NotSelector       string               `json:"notSelector,omitempty"`
	NotPorts          []Port               `json:"notPorts,omitempty"`
	ServiceAccounts   *ServiceAccountMatch `json:"serviceAccounts,omitempty"`
}

// ICMPFields matches an ICMP type and optionally a code.
type ICMPFields struct {
	Type *int `json:"type,omitempty"`
	Code *int `json:"code,omitempty"`
}

// ServiceAccountMatch matches endpoints by service account: names and
// selector are ANDed.
type ServiceAccountMatch struct {
	Names    []string `json:"names,omitempty"`
	Selector string   `json:"selector,omitempty"`
}

// ServiceMatch matches a Kubernetes service's endpoints.
type ServiceMatch struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

// HTTPMatch is an application-layer match (accepted, not enforced by the
// nftables dataplane).
type HTTPMatch struct {
	Methods []string   `json:"methods,omitempty"`
	Paths   []HTTPPath `json:"paths,omitempty"`
}

// HTTPPath matches a request path exactly or by prefix.
type HTTPPath struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
}

// RuleMetadata carries annotations on a rule.
type RuleMetadata struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Tier orders groups of policies.
type Tier struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              TierSpec `json:"spec,omitempty"`
}

// TierSpec is the spec of a Tier.
type TierSpec struct {
	Order         *float64 `json:"order,omitempty"`
	DefaultAction *Action  `json:"defaultAction,omitempty"`
}

// Profile holds rules and labels that endpoints inherit by name.
type Profile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ProfileSpec `json:"spec,omitempty"`
}

// ProfileSpec is the spec of a Profile.
type ProfileSpec struct {
	Ingress       []Rule            `json:"ingress,omitempty"`
	Egress        []Rule            `json:"egress,omitempty"`
	LabelsToApply map[string]string `json:"labelsToApply,omitempty"`
}

// NetworkSet is a namespaced, labelled set of CIDRs that rule selectors can
// select.
type NetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NetworkSetSpec `json:"spec,omitempty"`
}

// NetworkSetSpec is the spec of a NetworkSet or GlobalNetworkSet.
type NetworkSetSpec struct {
	Nets                 []string `json:"nets,omitempty"`
	AllowedEgressDomains []string `json:"allowedEgressDomains,omitempty"`
}

// GlobalNetworkSet is a cluster-wide NetworkSet.
type GlobalNetworkSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              GlobalNetworkSetSpec `json:"spec,omitempty"`
}

// GlobalNetworkSetSpec is the spec of a GlobalNetworkSet.
type GlobalNetworkSetSpec = NetworkSetSpec
