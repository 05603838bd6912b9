package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node is a host running the Brindle agent.
type Node struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              NodeSpec   `json:"spec,omitempty"`
	Status            NodeStatus `json:"status,omitempty"`
}

// NodeSpec is the spec of a Node.
type NodeSpec struct {
	BGP                  *NodeBGPSpec       `json:"bgp,omitempty"`
	IPv4VXLANTunnelAddr  string             `json:"ipv4VXLANTunnelAddr,omitempty"`
	VXLANTunnelMACAddr   string             `json:"vxlanTunnelMACAddr,omitempty"`
	IPv6VXLANTunnelAddr  string             `json:"ipv6VXLANTunnelAddr,omitempty"`
	VXLANTunnelMACAddrV6 string             `json:"vxlanTunnelMACAddrV6,omitempty"`
	OrchRefs             []OrchRef          `json:"orchRefs,omitempty"`
	Wireguard            *NodeWireguardSpec `json:"wireguard,omitempty"`
	Addresses            []NodeAddress      `json:"addresses,omitempty"`
}

// NodeBGPSpec is a node's BGP identity.
type NodeBGPSpec struct {
	ASNumber                *ASNumber `json:"asNumber,omitempty"`
	IPv4Address             string    `json:"ipv4Address,omitempty"`
	IPv6Address             string    `json:"ipv6Address,omitempty"`
	IPv4IPIPTunnelAddr      string    `json:"ipv4IPIPTunnelAddr,omitempty"`
	RouteReflectorClusterID string    `json:"routeReflectorClusterID,omitempty"`
}

// OrchRef ties a node to its name in an orchestrator.
type OrchRef struct {
	NodeName     string `json:"nodeName,omitempty"`
	Orchestrator string `json:"orchestrator"`
}

// NodeWireguardSpec holds a node's WireGuard interface addresses.
type NodeWireguardSpec struct {
	InterfaceIPv4Address string `json:"interfaceIPv4Address,omitempty"`
	InterfaceIPv6Address string `json:"interfaceIPv6Address,omitempty"`
}

// NodeAddress is one of a node's addresses.
type NodeAddress struct {
	Address string `json:"address"`
	Type    string `json:"type,omitempty"`
}

// NodeStatus is the observed state of a node.
type NodeStatus struct {
	WireguardPublicKey   string   `json:"wireguardPublicKey,omitempty"`
	WireguardPublicKeyV6 string   `json:"wireguardPublicKeyV6,omitempty"`
	PodCIDRs             []string `json:"podCIDRs,omitempty"`
}

// Encapsulation modes of an IP pool.
const (
	EncapNever       = "Never"
	EncapAlways      = "Always"
	EncapCrossSubnet = "CrossSubnet"
)

// IP pool uses.
const (
	IPPoolUseWorkload     = "Workload"
	IPPoolUseTunnel       = "Tunnel"
	IPPoolUseLoadBalancer = "LoadBalancer"
)

// IPPool is a range of workload addresses, carved into blocks.
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPPoolSpec `json:"spec,omitempty"`
}

// IPPoolSpec is the spec of an IPPool.
type IPPoolSpec struct {
	CIDR              string   `json:"cidr"`
	VXLANMode         string   `json:"vxlanMode,omitempty"`
	IPIPMode          string   `json:"ipipMode,omitempty"`
	NATOutgoing       bool     `json:"natOutgoing,omitempty"`
	Disabled          bool     `json:"disabled,omitempty"`
	DisableBGPExport  bool     `json:"disableBGPExport,omitempty"`
	BlockSize         int      `json:"blockSize,omitempty"`
	NodeSelector      string   `json:"nodeSelector,omitempty"`
	NamespaceSelector string   `json:"namespaceSelector,omitempty"`
	AllowedUses       []string `json:"allowedUses,omitempty"`
	AssignmentMode    string   `json:"assignmentMode,omitempty"`
	// IPIP and NATOutgoingV1 are deprecated v1-era fields Calico still
	// accepts in v3; defaulting folds them into IPIPMode and NATOutgoing.
	IPIP          *IPIPConfiguration `json:"ipip,omitempty"`
	NATOutgoingV1 bool               `json:"nat-outgoing,omitempty"`
}

// IPIPConfiguration is the deprecated form of IPIPMode.
type IPIPConfiguration struct {
	Enabled bool   `json:"enabled,omitempty"`
	Mode    string `json:"mode,omitempty"`
}

// IPReservation keeps addresses out of automatic assignment.
type IPReservation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPReservationSpec `json:"spec,omitempty"`
}

// IPReservationSpec is the spec of an IPReservation.
type IPReservationSpec struct {
	ReservedCIDRs []string `json:"reservedCIDRs,omitempty"`
}

// IPAMConfiguration holds cluster-wide IPAM settings (name "default").
type IPAMConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              IPAMConfigurationSpec `json:"spec,omitempty"`
}

// IPAMConfigurationSpec is the spec of an IPAMConfiguration.
type IPAMConfigurationSpec struct {
	StrictAffinity               bool   `json:"strictAffinity"`
	MaxBlocksPerHost             int32  `json:"maxBlocksPerHost,omitempty"`
	AutoAllocateBlocks           *bool  `json:"autoAllocateBlocks,omitempty"`
	IPCooldownSeconds            *int   `json:"ipCooldownSeconds,omitempty"`
	KubeVirtVMAddressPersistence string `json:"kubeVirtVMAddressPersistence,omitempty"`
}

// BGPPeer is a BGP session some nodes hold with a router or other nodes.
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BGPPeerSpec `json:"spec,omitempty"`
}

// BGPPeerSpec is the spec of a BGPPeer.
type BGPPeerSpec struct {
	Node                     string           `json:"node,omitempty"`
	NodeSelector             string           `json:"nodeSelector,omitempty"`
	PeerIP                   string           `json:"peerIP,omitempty"`
	PeerSelector             string           `json:"peerSelector,omitempty"`
	ASNumber                 ASNumber         `json:"asNumber,omitempty"`
	LocalASNumber            *ASNumber        `json:"localASNumber,omitempty"`
	KeepOriginalNextHop      bool             `json:"keepOriginalNextHop,omitempty"`
	NextHopMode              string           `json:"nextHopMode,omitempty"`
	Password                 *BGPPassword     `json:"password,omitempty"`
	SourceAddress            string           `json:"sourceAddress,omitempty"`
	MaxRestartTime           *metav1.Duration `json:"maxRestartTime,omitempty"`
	NumAllowedLocalASNumbers *int32           `json:"numAllowedLocalASNumbers,omitempty"`
	TTLSecurity              *uint8           `json:"ttlSecurity,omitempty"`
	KeepaliveTime            *metav1.Duration `json:"keepaliveTime,omitempty"`
	ReachableBy              string           `json:"reachableBy,omitempty"`
	Filters                  []string         `json:"filters,omitempty"`
	LocalWorkloadSelector    string           `json:"localWorkloadSelector,omitempty"`
	ReversePeering           string           `json:"reversePeering,omitempty"`
}

// BGPPassword refers to a secret holding a BGP session password.
type BGPPassword struct {
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
}

// SecretKeyRef names one key of a Kubernetes secret.
type SecretKeyRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional,omitempty"`
}

// BGPConfiguration holds BGP settings: "default" is global, "node.<name>"
// per node.
type BGPConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BGPConfigurationSpec `json:"spec,omitempty"`
}

// BGPConfigurationSpec is the spec of a BGPConfiguration.
type BGPConfigurationSpec struct {
	LogSeverityScreen              string                `json:"logSeverityScreen,omitempty"`
	NodeToNodeMeshEnabled          *bool                 `json:"nodeToNodeMeshEnabled,omitempty"`
	ASNumber                       *ASNumber             `json:"asNumber,omitempty"`
	ServiceLoadBalancerIPs         []ServiceIPBlock      `json:"serviceLoadBalancerIPs,omitempty"`
	ServiceExternalIPs             []ServiceIPBlock      `json:"serviceExternalIPs,omitempty"`
	ServiceClusterIPs              []ServiceIPBlock      `json:"serviceClusterIPs,omitempty"`
	ServiceLoadBalancerAggregation string                `json:"serviceLoadBalancerAggregation,omitempty"`
	ListenPort                     uint16                `json:"listenPort,omitempty"`
	Communities                    []Community           `json:"communities,omitempty"`
	PrefixAdvertisements           []PrefixAdvertisement `json:"prefixAdvertisements,omitempty"`
	NodeMeshPassword               *BGPPassword          `json:"nodeMeshPassword,omitempty"`
	NodeMeshMaxRestartTime         *metav1.Duration      `json:"nodeMeshMaxRestartTime,omitempty"`
	BindMode                       string                `json:"bindMode,omitempty"`
	IgnoredInterfaces              []string              `json:"ignoredInterfaces,omitempty"`
	ProgramClusterRoutes           string                `json:"programClusterRoutes,omitempty"`
	IPv4NormalRoutePriority        *int                  `json:"ipv4NormalRoutePriority,omitempty"`
	IPv6NormalRoutePriority        *int                  `json:"ipv6NormalRoutePriority,omitempty"`
	LocalWorkloadPeeringIPV4       string                `json:"localWorkloadPeeringIPV4,omitempty"`
	LocalWorkloadPeeringIPV6       string                `json:"localWorkloadPeeringIPV6,omitempty"`
}

// ServiceIPBlock is a CIDR of service addresses to advertise.
type ServiceIPBlock struct {
	CIDR string `json:"cidr,omitempty"`
}

// Community is a named BGP community value.
type Community struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

// PrefixAdvertisement attaches communities to a CIDR.
type PrefixAdvertisement struct {
	CIDR        string   `json:"cidr,omitempty"`
	Communities []string `json:"communities,omitempty"`
}

// ClusterInformation holds cluster-wide facts (name "default").
type ClusterInformation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ClusterInformationSpec `json:"spec,omitempty"`
}

// ClusterInformationSpec is the spec of a ClusterInformation.
type ClusterInformationSpec struct {
	ClusterGUID    string `json:"clusterGUID,omitempty"`
	ClusterType    string `json:"clusterType,omitempty"`
	CalicoVersion  string `json:"calicoVersion,omitempty"`
	DatastoreReady *bool  `json:"datastoreReady,omitempty"`
	Variant        string `json:"variant,omitempty"`
}
