// Package datastore is Brindle's only door to etcd: it stores the
// projectcalico.org/v3 resources of package api in Calico's etcd layout,
// writes them with compare-and-swap, streams changes to consumers, and runs
// an embedded etcd member.
//
// # Key layout
//
// A resource of kind K lives at
//
//	/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>
//
// as the JSON of the api type (apiVersion, kind, metadata, spec), exactly as
// Calico's etcdv3 backend stores it. metadata.resourceVersion is never
// stored: it is the key's etcd mod revision, filled in on every read. A
// Kubernetes NetworkPolicy written through a batch is stored twice, in one
// transaction: the original (plural kubernetesnetworkpolicies) and its
// translation, the NetworkPolicy knp.default.<name>. IPAM data keeps
// Calico's /calico/ipam/v2/... keys and is reached through the raw API
// (Client.Raw).
//
// # Writes
//
//   - Create fails with ErrAlreadyExists if the key exists.
//   - Update is a compare-and-swap on the object's resourceVersion: a stale
//     one gets ErrConflict and the stored value is untouched. There is no
//     unconditional update.
//   - Delete may be conditional on a resourceVersion (ErrConflict if stale).
//   - WriteBatch (create, replace, apply, delete of many documents) checks
//     every document first, then writes all of them in one etcd transaction
//     if they fit Config.MaxTxnOps / MaxTxnBytes (etcd's defaults: 128 ops,
//     1.5 MiB), so a failure leaves nothing half-written. Larger batches go
//     in consecutive transactions of whole documents; a failure returns a
//     *BatchError listing exactly the documents already committed.
//
// Errors wrap ErrNotFound, ErrAlreadyExists, ErrConflict or ErrInvalid and
// name the key or document.
//
// # Watch
//
// Client.Watch gives one ordered stream for any set of kinds and raw key
// prefixes: a snapshot read at a single revision, then one UpdateInSync,
// then every change in etcd revision order, including across kinds (one
// etcd watch covers the common prefix). An Update says set or delete, the
// kind, namespace, name and revision, and carries the decoded object (or
// raw bytes for raw prefixes). A value that does not decode is logged and
// delivered as a delete with Err set; the stream goes on.
//
// After a dropped connection or a restarted member the watcher resumes at
// the revision after the last one it delivered, so nothing is lost or
// repeated. If that revision was compacted, it lists again and delivers only
// the difference (sets and deletes) as one batch. Updates are queued
// without bound between etcd and the consumer, so a slow consumer gets
// every update, in bigger batches; it never stalls etcd or other watchers.
//
// # Hub: one watch shared by many consumers
//
// Client.NewHub runs one such watch for a whole process and fans it out:
// one etcd watch and one decode per change, a cache of every key's current
// value, and any number of subscribers (Hub.Subscribe, which returns a
// *Watcher with the same stream). A subscriber may ask for a subset of the
// hub's kinds and raw prefixes. It gets the cache's contents in key order,
// then UpdateInSync, then the hub's changes in order; one that joins while
// the hub's first snapshot is still being read gets the part read so far
// and then the rest, then UpdateInSync. Each subscriber has its own
// unbounded queue, filled without blocking, so a slow one loses nothing and
// delays nobody. Objects from a hub are shared by all subscribers and the
// cache: they are read-only (copy before modifying). Client.Watch objects
// belong to their single consumer.
//
// # Lists
//
// Lists and snapshots read a prefix in pages at one revision (2,000 keys,
// doubling up to 32,000, since etcd counts to the end of the range on every
// paged read), fetching the next page while the current one is decoded;
// a watch decodes large batches on all cores, keeping their order.
//
// # Embedded member
//
// StartServer runs a single etcd member (brindle datastore uses it; tests
// use it through package datastoretest on random loopback ports), with
// automatic compaction off by default and etcd's logs routed to a
// *slog.Logger at error level.
//
// # Failure behaviour
//
// New fails with an error naming every endpoint it could not reach. Reads
// and writes return etcd's errors wrapped with the key. Watchers never
// give up: they retry with backoff (100 ms to 5 s) until stopped.
package datastore
