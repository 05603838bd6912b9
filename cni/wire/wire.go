// Package wire is the protocol between the CNI plugin binary and the agent's
// CNI service, spoken as JSON over HTTP on the agent's local unix socket.
// It is a leaf: both sides import it, and it imports nothing of Brindle's,
// so the plugin binary stays free of etcd, the datastore and the IPAM.
//
// Every request is a POST of a JSON body to one of the paths below, except
// status, which is a GET. A success is 200 with the response type; a
// failure is a non-2xx status with an Error body whose Code is a CNI error
// code (the plugin passes it on to the runtime unchanged).
package wire

// Paths of the CNI service, all under PathPrefix.
const (
	PathPrefix = "/v1/cni/"
	PathAdd    = "/v1/cni/add"
	PathDel    = "/v1/cni/del"
	PathCheck  = "/v1/cni/check"
	PathGC     = "/v1/cni/gc"
	PathStatus = "/v1/cni/status"
)

// DefaultSocket is where the agent's local API listens unless the CNI
// configuration says otherwise.
const DefaultSocket = "/var/run/brindle/agent.sock"

// CNI error codes the service uses (CNI spec, "Error" section).
const (
	CodeInvalidConfig       = 7
	CodeTryAgainLater       = 11
	CodePluginNotAvailable  = 50
	CodeInternal            = 999
	CodeInvalidEnvVariables = 4
)

// K8s are the Kubernetes identifiers a runtime passes in CNI_ARGS.
type K8s struct {
	Namespace        string `json:"namespace"`
	Pod              string `json:"pod"`
	InfraContainerID string `json:"infraContainerID,omitempty"`
	// ServiceAccount is not part of the kubelet's CNI_ARGS; the plugin
	// passes K8S_POD_SERVICE_ACCOUNT when a runtime sets it. Empty means
	// "default".
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// Attachment names one CNI attachment: a container's interface on a
// network.
type Attachment struct {
	// Network is the CNI network name (the conflist's "name").
	Network     string `json:"network"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Netns is the container's network namespace path (informational).
	Netns string `json:"netns,omitempty"`
	// K8s is set when the runtime passed Kubernetes arguments.
	K8s *K8s `json:"k8s,omitempty"`
}

// AddRequest asks the service for addresses and a WorkloadEndpoint.
type AddRequest struct {
	Attachment
	// IPs are specific addresses to assign (CNI arg IP= or runtimeConfig
	// "ips"); empty means automatic assignment.
	IPs []string `json:"ips,omitempty"`
	// AssignIPv4 and AssignIPv6 say which families to assign automatically
	// (the conf's ipam.assign_ipv4, default true, and assign_ipv6).
	AssignIPv4 bool `json:"assignIPv4"`
	AssignIPv6 bool `json:"assignIPv6"`
	// IPv4Pools and IPv6Pools restrict automatic assignment (names or
	// CIDRs).
	IPv4Pools []string `json:"ipv4Pools,omitempty"`
	IPv6Pools []string `json:"ipv6Pools,omitempty"`
	// ReadyTimeoutMillis bounds the wait for the endpoint's policy to be
	// programmed; 0 means the service's default.
	ReadyTimeoutMillis int64 `json:"readyTimeoutMillis,omitempty"`
}

// AddResponse is the service's answer once the endpoint's policy is in the
// kernel.
type AddResponse struct {
	// InterfaceName is the host-side veth name the endpoint was written
	// with (and the policy programmed for).
	InterfaceName string `json:"interfaceName"`
	// IPs are the addresses as /32 or /128 prefixes.
	IPs []string `json:"ips"`
	// Namespace and Name identify the WorkloadEndpoint.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Revision is the datastore revision of the endpoint write.
	Revision int64 `json:"revision"`
}

// DelRequest releases an attachment's addresses and endpoint.
type DelRequest struct {
	Attachment
}

// DelResponse says what DEL found and removed.
type DelResponse struct {
	// EndpointDeleted is true if a WorkloadEndpoint with this container ID
	// was deleted.
	EndpointDeleted bool `json:"endpointDeleted"`
	// Released are the addresses released.
	Released []string `json:"released,omitempty"`
}

// CheckRequest asks what the datastore holds for an attachment.
type CheckRequest struct {
	Attachment
}

// CheckResponse is the datastore's view of an attachment; the plugin
// compares it with the kernel.
type CheckResponse struct {
	InterfaceName string   `json:"interfaceName"`
	IPs           []string `json:"ips"`
	Namespace     string   `json:"namespace"`
	Name          string   `json:"name"`
	// Problems found on the datastore side (endpoint missing, owned by
	// another container, IPAM handle missing, ...).
	Problems []string `json:"problems,omitempty"`
}

// GCAttachment is an attachment the runtime still has.
type GCAttachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// GCRequest asks the service to release everything of Network on this node
// that is not in Valid.
type GCRequest struct {
	Network string         `json:"network"`
	Valid   []GCAttachment `json:"valid"`
}

// GCResponse lists what GC released.
type GCResponse struct {
	// Handles are the IPAM handles released.
	Handles []string `json:"handles,omitempty"`
	// Endpoints are the WorkloadEndpoints deleted ("<namespace>/<name>").
	Endpoints []string `json:"endpoints,omitempty"`
}

// StatusResponse says whether the service can serve ADD.
type StatusResponse struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Error is the body of every failed request.
type Error struct {
	Code    uint   `json:"code"`
	Msg     string `json:"msg"`
	Details string `json:"details,omitempty"`
}

func (e *Error) Error() string {
	if e.Details != "" {
		return e.Msg + ": " + e.Details
	}
	return e.Msg
}
