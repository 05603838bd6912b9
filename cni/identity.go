package cni

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni/wire"
)

// DefaultInterfacePrefix is the host-side veth prefix (Felix's
// interfacePrefix default).
const DefaultInterfacePrefix = "cali"

// DefaultNamespace is the WorkloadEndpoint namespace of plain-CNI
// attachments.
const DefaultNamespace = "default"

// maxIfName is the longest Linux interface name (IFNAMSIZ - 1).
const maxIfName = 15

// identity is everything derived from an attachment.
type identity struct {
	orchestrator string
	namespace    string
	name         string // WorkloadEndpoint name
	ifName       string // host-side veth
	handle       string // IPAM handle
	legacyHandle string // "<ns>.<pod>" for k8s, "" otherwise
	k8s          *wire.K8s
}

// validateAttachment checks the fields every request needs.
func validateAttachment(a *wire.Attachment) error {
	switch {
	case a.Network == "":
		return fmt.Errorf("network: the CNI network name is required")
	case a.ContainerID == "":
		return fmt.Errorf("containerID: required")
	case a.IfName == "":
		return fmt.Errorf("ifName: required")
	case len(a.IfName) > maxIfName:
		return fmt.Errorf("ifName %q: longer than %d bytes", a.IfName, maxIfName)
	case strings.ContainsAny(a.ContainerID, "/ "):
		return fmt.Errorf("containerID %q: must not contain '/' or spaces", a.ContainerID)
	}
	if k := a.K8s; k != nil {
		if k.Namespace == "" || k.Pod == "" {
			return fmt.Errorf("k8s: both K8S_POD_NAMESPACE and K8S_POD_NAME are required (got %q, %q)", k.Namespace, k.Pod)
		}
	}
	return nil
}

// identify derives the endpoint, interface and handle of an attachment.
func identify(node, prefix string, a *wire.Attachment) (identity, error) {
	if err := validateAttachment(a); err != nil {
		return identity{}, err
	}
	id := identity{handle: a.Network + "." + a.ContainerID, k8s: a.K8s}
	var workload, hashed string
	if a.K8s != nil {
		id.orchestrator = api.OrchestratorKubernetes
		id.namespace = a.K8s.Namespace
		workload = a.K8s.Pod
		hashed = a.K8s.Namespace + "." + a.K8s.Pod
		id.legacyHandle = hashed
	} else {
		id.orchestrator = api.OrchestratorCNI
		id.namespace = DefaultNamespace
		workload = a.ContainerID
		hashed = a.ContainerID
	}
	name, err := api.WorkloadEndpointName(node, id.orchestrator, workload, a.IfName)
	if err != nil {
		return identity{}, err
	}
	id.name = name
	id.ifName = HostInterfaceName(prefix, hashed)
	return id, nil
}

// HostInterfaceName is the host-side veth name of a workload: prefix plus
// the first 15-len(prefix) hex digits of SHA-1(key), where key is
// "<namespace>.<pod>" for a Kubernetes pod and the container ID otherwise
// (compat §3.3, §5.2: "cali" + 11 hex digits).
func HostInterfaceName(prefix, key string) string {
	sum := sha1.Sum([]byte(key))
	n := maxIfName - len(prefix)
	if n < 0 {
		n = 0
	}
	return prefix + hex.EncodeToString(sum[:])[:n]
}
