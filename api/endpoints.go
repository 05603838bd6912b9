package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels Brindle (like Calico) synthesises on endpoints and reserves.
const (
	LabelNamespace      = "projectcalico.org/namespace"
	LabelOrchestrator   = "projectcalico.org/orchestrator"
	LabelServiceAccount = "projectcalico.org/serviceaccount"
	LabelTier           = "projectcalico.org/tier"
	// NamespaceLabelPrefix prefixes namespace labels applied through kns.
	// profiles; ServiceAccountLabelPrefix prefixes service-account labels
	// applied through ksa. profiles.
	NamespaceLabelPrefix      = "pcns."
	ServiceAccountLabelPrefix = "pcsa."
	// NameLabel is the label (after the pcns./pcsa. prefix) that carries
	// the namespace's or service account's own name.
	NameLabel = "projectcalico.org/name"
)

// Orchestrator names.
const (
	OrchestratorKubernetes = "k8s"
	OrchestratorCNI        = "cni"
	OrchestratorOpenStack  = "openstack"
)

// WorkloadEndpoint is one network interface of a workload (pod, VM).
type WorkloadEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              WorkloadEndpointSpec `json:"spec,omitempty"`
}

// WorkloadEndpointSpec is the spec of a WorkloadEndpoint.
type WorkloadEndpointSpec struct {
	Orchestrator               string                 `json:"orchestrator,omitempty"`
	Workload                   string                 `json:"workload,omitempty"`
	Node                       string                 `json:"node,omitempty"`
	ContainerID                string                 `json:"containerID,omitempty"`
	Pod                        string                 `json:"pod,omitempty"`
	Endpoint                   string                 `json:"endpoint,omitempty"`
	ServiceAccountName         string                 `json:"serviceAccountName,omitempty"`
	IPNetworks                 []string               `json:"ipNetworks,omitempty"`
	IPNATs                     []IPNAT                `json:"ipNATs,omitempty"`
	IPv4Gateway                string                 `json:"ipv4Gateway,omitempty"`
	IPv6Gateway                string                 `json:"ipv6Gateway,omitempty"`
	Profiles                   []string               `json:"profiles,omitempty"`
	InterfaceName              string                 `json:"interfaceName,omitempty"`
	MAC                        string                 `json:"mac,omitempty"`
	Ports                      []WorkloadEndpointPort `json:"ports,omitempty"`
	AllowSpoofedSourcePrefixes []string               `json:"allowSpoofedSourcePrefixes,omitempty"`
	QoSControls                *QoSControls           `json:"qosControls,omitempty"`
}

// IPNAT is a 1:1 NAT mapping (floating IP) for a workload address.
type IPNAT struct {
	InternalIP string `json:"internalIP"`
	ExternalIP string `json:"externalIP"`
}

// WorkloadEndpointPort is a named port a workload serves.
type WorkloadEndpointPort struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
	HostPort uint16   `json:"hostPort,omitempty"`
	HostIP   string   `json:"hostIP,omitempty"`
}

// QoSControls are bandwidth and rate limits on a workload (accepted and
// stored; not enforced yet).
type QoSControls struct {
	IngressBandwidth      int64 `json:"ingressBandwidth,omitempty"`
	EgressBandwidth       int64 `json:"egressBandwidth,omitempty"`
	IngressBurst          int64 `json:"ingressBurst,omitempty"`
	EgressBurst           int64 `json:"egressBurst,omitempty"`
	IngressPeakrate       int64 `json:"ingressPeakrate,omitempty"`
	EgressPeakrate        int64 `json:"egressPeakrate,omitempty"`
	IngressMinburst       int64 `json:"ingressMinburst,omitempty"`
	EgressMinburst        int64 `json:"egressMinburst,omitempty"`
	IngressPacketRate     int64 `json:"ingressPacketRate,omitempty"`
	EgressPacketRate      int64 `json:"egressPacketRate,omitempty"`
	IngressPacketBurst    int64 `json:"ingressPacketBurst,omitempty"`
	EgressPacketBurst     int64 `json:"egressPacketBurst,omitempty"`
	IngressMaxConnections int64 `json:"ingressMaxConnections,omitempty"`
	EgressMaxConnections  int64 `json:"egressMaxConnections,omitempty"`
	DSCP                  *int  `json:"dscp,omitempty"`
}

// HostEndpoint is a host's own interface (or all of them) under policy.
type HostEndpoint struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              HostEndpointSpec `json:"spec,omitempty"`
}

// HostEndpointSpec is the spec of a HostEndpoint.
type HostEndpointSpec struct {
	Node          string         `json:"node,omitempty"`
	InterfaceName string         `json:"interfaceName,omitempty"`
	ExpectedIPs   []string       `json:"expectedIPs,omitempty"`
	Profiles      []string       `json:"profiles,omitempty"`
	Ports         []EndpointPort `json:"ports,omitempty"`
}

// EndpointPort is a named port on a host endpoint.
type EndpointPort struct {
	Name     string   `json:"name"`
	Protocol Protocol `json:"protocol"`
	Port     uint16   `json:"port"`
}
