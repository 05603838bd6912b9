package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FelixConfiguration configures the host agent: "default" is global,
// "node.<name>" applies to one host. Brindle's agent reads the fields it
// implements and accepts the rest so existing Calico YAML decodes.
type FelixConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              FelixConfigurationSpec `json:"spec,omitempty"`
}

// ProtoPort is a failsafe port entry.
type ProtoPort struct {
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port"`
	Net      string `json:"net,omitempty"`
}

// RouteTableRange is a range of kernel routing tables.
type RouteTableRange struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// FelixConfigurationSpec is the spec of a FelixConfiguration.
type FelixConfigurationSpec struct {
	// Dataplane selection.
	UseInternalDataplaneDriver *bool   `json:"useInternalDataplaneDriver,omitempty"`
	DataplaneDriver            string  `json:"dataplaneDriver,omitempty"`
	BPFEnabled                 *bool   `json:"bpfEnabled,omitempty"`
	NFTablesMode               *string `json:"nftablesMode,omitempty"`
	IptablesBackend            *string `json:"iptablesBackend,omitempty"`

	// Interfaces and chains.
	InterfacePrefix             string  `json:"interfacePrefix,omitempty"`
	InterfaceExclude            string  `json:"interfaceExclude,omitempty"`
	ChainInsertMode             string  `json:"chainInsertMode,omitempty"`
	DefaultEndpointToHostAction string  `json:"defaultEndpointToHostAction,omitempty"`
	IptablesFilterAllowAction   string  `json:"iptablesFilterAllowAction,omitempty"`
	IptablesFilterDenyAction    string  `json:"iptablesFilterDenyAction,omitempty"`
	IptablesMangleAllowAction   string  `json:"iptablesMangleAllowAction,omitempty"`
	IptablesMarkMask            *uint32 `json:"iptablesMarkMask,omitempty"`
	LogPrefix                   string  `json:"logPrefix,omitempty"`
	LogActionRateLimit          *string `json:"logActionRateLimit,omitempty"`

	DisableConntrackInvalidCheck *bool `json:"disableConntrackInvalidCheck,omitempty"`

	// Refresh intervals.
	RouteRefreshInterval           *metav1.Duration `json:"routeRefreshInterval,omitempty"`
	IptablesRefreshInterval        *metav1.Duration `json:"iptablesRefreshInterval,omitempty"`
	IpsetsRefreshInterval          *metav1.Duration `json:"ipsetsRefreshInterval,omitempty"`
	InterfaceRefreshInterval       *metav1.Duration `json:"interfaceRefreshInterval,omitempty"`
	NFTablesRefreshInterval        *metav1.Duration `json:"nftablesRefreshInterval,omitempty"`
	IptablesPostWriteCheckInterval *metav1.Duration `json:"iptablesPostWriteCheckIntervalSecs,omitempty"`
	IptablesLockTimeout            *metav1.Duration `json:"iptablesLockTimeoutSecs,omitempty"`
	IptablesLockProbeInterval      *metav1.Duration `json:"iptablesLockProbeIntervalMillis,omitempty"`
	NetlinkTimeout                 *metav1.Duration `json:"netlinkTimeout,omitempty"`

	// Encapsulation.
	IPIPEnabled            *bool  `json:"ipipEnabled,omitempty"`
	IPIPMTU                *int   `json:"ipipMTU,omitempty"`
	VXLANEnabled           *bool  `json:"vxlanEnabled,omitempty"`
	VXLANPort              *int   `json:"vxlanPort,omitempty"`
	VXLANVNI               *int   `json:"vxlanVNI,omitempty"`
	VXLANMTU               *int   `json:"vxlanMTU,omitempty"`
	VXLANMTUV6             *int   `json:"vxlanMTUV6,omitempty"`
	WireguardEnabled       *bool  `json:"wireguardEnabled,omitempty"`
	WireguardEnabledV6     *bool  `json:"wireguardEnabledV6,omitempty"`
	WireguardMTU           *int   `json:"wireguardMTU,omitempty"`
	WireguardListeningPort *int   `json:"wireguardListeningPort,omitempty"`
	WireguardInterfaceName string `json:"wireguardInterfaceName,omitempty"`
	MTUIfacePattern        string `json:"mtuIfacePattern,omitempty"`

	// Reporting.
	ReportingInterval        *metav1.Duration `json:"reportingInterval,omitempty"`
	ReportingTTL             *metav1.Duration `json:"reportingTTL,omitempty"`
	EndpointReportingEnabled *bool            `json:"endpointReportingEnabled,omitempty"`
	EndpointReportingDelay   *metav1.Duration `json:"endpointReportingDelay,omitempty"`
	EndpointStatusPathPrefix string           `json:"endpointStatusPathPrefix,omitempty"`

	// Health, metrics and logging.
	HealthEnabled                   *bool   `json:"healthEnabled,omitempty"`
	HealthHost                      *string `json:"healthHost,omitempty"`
	HealthPort                      *int    `json:"healthPort,omitempty"`
	PrometheusMetricsEnabled        *bool   `json:"prometheusMetricsEnabled,omitempty"`
	PrometheusMetricsHost           string  `json:"prometheusMetricsHost,omitempty"`
	PrometheusMetricsPort           *int    `json:"prometheusMetricsPort,omitempty"`
	PrometheusGoMetricsEnabled      *bool   `json:"prometheusGoMetricsEnabled,omitempty"`
	PrometheusProcessMetricsEnabled *bool   `json:"prometheusProcessMetricsEnabled,omitempty"`
	LogSeverityScreen               string  `json:"logSeverityScreen,omitempty"`
	LogSeverityFile                 string  `json:"logSeverityFile,omitempty"`
	LogSeveritySys                  string  `json:"logSeveritySys,omitempty"`
	LogFilePath                     string  `json:"logFilePath,omitempty"`
	LogDebugFilenameRegex           string  `json:"logDebugFilenameRegex,omitempty"`

	// Ports.
	FailsafeInboundHostPorts  *[]ProtoPort `json:"failsafeInboundHostPorts,omitempty"`
	FailsafeOutboundHostPorts *[]ProtoPort `json:"failsafeOutboundHostPorts,omitempty"`
	KubeNodePortRanges        *[]Port      `json:"kubeNodePortRanges,omitempty"`

	// NAT.
	NATOutgoingAddress    string  `json:"natOutgoingAddress,omitempty"`
	NATPortRange          *Port   `json:"natPortRange,omitempty"`
	NATOutgoingExclusions *string `json:"natOutgoingExclusions,omitempty"`

	// Routes.
	RouteSource                  string             `json:"routeSource,omitempty"`
	RouteTableRange              *RouteTableRange   `json:"routeTableRange,omitempty"`
	RouteTableRanges             *[]RouteTableRange `json:"routeTableRanges,omitempty"`
	DeviceRouteSourceAddress     string             `json:"deviceRouteSourceAddress,omitempty"`
	DeviceRouteSourceAddressIPv6 string             `json:"deviceRouteSourceAddressIPv6,omitempty"`
	DeviceRouteProtocol          *int               `json:"deviceRouteProtocol,omitempty"`
	RemoveExternalRoutes         *bool              `json:"removeExternalRoutes,omitempty"`
	ProgramClusterRoutes         *string            `json:"programClusterRoutes,omitempty"`
	RouteSyncDisabled            *bool              `json:"routeSyncDisabled,omitempty"`

	// Misc.
	IPv6Support                    *bool     `json:"ipv6Support,omitempty"`
	XDPEnabled                     *bool     `json:"xdpEnabled,omitempty"`
	GenericXDPEnabled              *bool     `json:"genericXDPEnabled,omitempty"`
	MaxIpsetSize                   *int      `json:"maxIpsetSize,omitempty"`
	UsageReportingEnabled          *bool     `json:"usageReportingEnabled,omitempty"`
	ClusterGUID                    string    `json:"clusterGUID,omitempty"`
	FloatingIPs                    *string   `json:"floatingIPs,omitempty"`
	PolicySyncPathPrefix           string    `json:"policySyncPathPrefix,omitempty"`
	AllowVXLANPacketsFromWorkloads *string   `json:"allowVXLANPacketsFromWorkloads,omitempty"`
	AllowIPIPPacketsFromWorkloads  *string   `json:"allowIPIPPacketsFromWorkloads,omitempty"`
	ServiceLoopPrevention          string    `json:"serviceLoopPrevention,omitempty"`
	SidecarAccelerationEnabled     *bool     `json:"sidecarAccelerationEnabled,omitempty"`
	ExternalNodesCIDRList          *[]string `json:"externalNodesList,omitempty"`
	DebugMemoryProfilePath         string    `json:"debugMemoryProfilePath,omitempty"`
	DebugDisableLogDropping        *bool     `json:"debugDisableLogDropping,omitempty"`

	// OpenStack.
	MetadataAddr    string `json:"metadataAddr,omitempty"`
	MetadataPort    *int   `json:"metadataPort,omitempty"`
	OpenstackRegion string `json:"openstackRegion,omitempty"`
}
