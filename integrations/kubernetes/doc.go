// Package kubernetes keeps Brindle's datastore in step with a Kubernetes
// API server (Calico's kube-controllers in etcd mode, compat §3.3 and §11):
//
//   - NetworkPolicy <ns>/<name> → the stored original (kind
//     KubernetesNetworkPolicy) and its translation, the NetworkPolicy
//     knp.default.<name> (api.TranslateNetworkPolicy), written together;
//   - Namespace <ns> → Profile kns.<ns> (allow all; pcns. labels);
//   - ServiceAccount <ns>/<sa> → Profile ksa.<ns>.<sa> (pcsa. labels);
//   - Pod → the labels, service account, profiles and named ports of its
//     existing WorkloadEndpoints (found by spec.pod and namespace; the CNI
//     plugin creates and deletes endpoints, this package never does);
//   - Node deleted → its endpoints, its addresses (by IPAM handle), its
//     block affinities (an empty block is deleted, one still holding
//     borrowed addresses loses its affinity) and its Brindle Node.
//
// # Design
//
// Both sides are watched into caches: the Kubernetes kinds by client-go
// informers, the datastore kinds the controller owns by one datastore
// watch. A change on either side queues the key of the Kubernetes object
// it concerns (a deleted kns. profile queues its namespace, a new endpoint
// queues its pod). A worker compares what the datastore should hold for
// that key with what the cache says it holds and writes only the
// difference; endpoint updates are compare-and-swap on the cached
// revision, so a conflict just retries with backoff once the watch has
// delivered the newer value. The result depends only on the current state
// of both sides, never on the events seen.
//
// A full resync queues every key of both sides: on start (done inline
// before the controller reports ready), after a Kubernetes list/watch
// failure that makes an informer relist (410 Gone, an unreachable API
// server; the resync runs once the relist has had GapResyncDelay), and
// every ResyncPeriod. A watch that merely breaks resumes from its
// resourceVersion and misses nothing.
// Objects with the owned prefixes (kns., ksa., knp.default.) and stored
// Kubernetes NetworkPolicies with no Kubernetes counterpart are deleted,
// so nothing deleted while the controller was down survives it.
// A datastore watch gap needs nothing extra: the datastore watcher
// resumes or relists and delivers the difference.
//
// RunElected adds leader election through a coordination.k8s.io Lease;
// Handler serves /livez, /readyz and /metrics.
//
// # Ownership
//
// In a Kubernetes cluster this controller owns every kns.*/ksa.* Profile,
// every knp.default.* NetworkPolicy and every stored Kubernetes
// NetworkPolicy: ones written by other means are deleted by the next
// resync. A Brindle Node is removed only when its Kubernetes node is seen
// deleted, or when the Brindle Node refers to a Kubernetes node
// (spec.orchRefs orchestrator k8s) that does not exist.
package kubernetes
