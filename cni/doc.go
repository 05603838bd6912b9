// Package cni is the agent side of Brindle's CNI plugin: an HTTP service,
// mounted on the agent's local unix socket under /v1/cni/, that assigns
// workload addresses, writes WorkloadEndpoints and answers ADD only once
// the endpoint's policy is programmed. The plugin binary (cmd/brindle-cni,
// package cni/plugin) stays thin: it asks this service, then builds the
// veth pair. The protocol is package cni/wire; docs/cni.md has the design.
//
// Contract:
//   - ADD: validate; release whatever an earlier ADD of the same
//     attachment left (handle "<network>.<containerID>"); assign
//     (automatic assignment group-committed with concurrent ADDs through
//     ipam.AutoAssignMany, or AssignIP for requested addresses); create
//     or update the WorkloadEndpoint (compat §3.1 name, interface "cali"
//     and 11 hex of SHA-1 of "<ns>.<pod>" or of the container ID; written in
//     one transaction with concurrent ADDs' endpoints); wait for Ready
//     with a timeout; reply. With ServiceConfig.PodInfo set, a Kubernetes
//     ADD looks the pod up (alongside the assignment): the endpoint gets
//     the pod's labels under ours (projectcalico.org/* win) and its
//     service account; a lookup error fails the ADD. Any failure after
//     the first address is taken (including the caller going away)
//     deletes the endpoint if this ADD wrote it and releases the handle,
//     so a failed ADD leaves nothing.
//   - DEL is idempotent: a missing endpoint or handle is success. The
//     endpoint is deleted only if its containerID is the caller's (a newer
//     sandbox of the same pod keeps its endpoint). Both handle forms are
//     released: "<network>.<containerID>" and, for Kubernetes, the legacy
//     "<namespace>.<pod>". A datastore error fails DEL so the runtime
//     retries it.
//   - Requests for one attachment are serialised (per handle); GC skips
//     attachments with a request in flight. This host's automatic
//     assignments run one batch at a time (the role of Calico's host-wide
//     IPAM lock), each batch serving every ADD that queued meanwhile.
//   - GC releases this node's handles of the network whose container is
//     not in the runtime's list, and deletes their endpoints.
//   - STATUS is not ready when the datastore does not answer or the
//     agent's own status function reports an error.
//
// The service keeps no state between requests other than the in-flight
// set; everything lives in the datastore.
package cni
