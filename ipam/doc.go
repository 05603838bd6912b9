// Package ipam is Brindle's address allocator: Calico's block IPAM over a
// small conditional-write key-value Store.
//
// IP pools are carved into blocks (/26 by default, /122 for IPv6). A node
// owns blocks through affinities and hands out addresses from them; routes
// are advertised per block. AutoAssign uses the node's confirmed blocks
// first, then claims a free block (pending affinity, create the block,
// confirmed affinity; the free block is found from a start chosen by a
// generator seeded with a hash of the node name), then, unless
// strictAffinity is set, borrows from any block with room. AssignIP takes a
// named address. Handles ("<network>.<containerID>") count what each owner
// holds per block, so ReleaseByHandle frees exactly what was taken.
//
// Storage matches Calico's etcd layout and JSON (/calico/ipam/v2/...).
//
// Invariants and failure behaviour:
//   - Every write is a compare-and-swap on the key's revision. A conflict
//     re-reads and retries (Config.MaxRetries, default 100); any other
//     error is returned at once. Nothing is mutated in memory before a write
//     succeeds: each attempt works on a fresh copy of what it read.
//   - Allocate: handle count up, then the block; if the block write fails
//     the handle count goes back down. A failed AutoAssign releases what it
//     already took, so it is all or nothing.
//   - AutoAssignMany serves many handles with one write of each block they
//     share: on a TxnStore (EtcdStore, MemStore) the block and the new
//     handles go in one transaction conditional on the block's revision
//     and on every handle being absent; otherwise, or when a handle
//     already exists, handle counts go up in parallel, then the block is
//     written once, and a failed block write takes them down again. Each
//     request is all or nothing on its own.
//   - Release: the block first, then the handle. If the handle write fails
//     the handle is left counting addresses already freed; the error says
//     so, `Check` reports it, and ReleaseByHandle (idempotent: it drops the
//     handle's entry for each block it has cleared) repairs it.
//   - A release may carry the allocation's sequence number (ABA guard) and
//     handle; a mismatch releases nothing and returns ErrBadSequenceNumber
//     or ErrWrongHandle.
//   - With ipCooldownSeconds, a released address stays taken (stamped
//     releasedAt) until the cooldown passes; expiry is applied whenever the
//     block is next written.
//   - IPReservation addresses are never auto-assigned; AssignIP may still
//     take them.
//   - A failed claim undoes what it wrote (best effort). A pending or
//     pendingDeletion affinity left behind counts as absent everywhere;
//     Check lists it for cleanup.
//   - A block another node claimed over EmptyBlockMinReclaimAge ago and
//     that is now empty may be taken over when no unclaimed block is left
//     (owner's affinity -> pendingDeletion, block deleted at the revision
//     read empty, affinity deleted).
//
// The IPAM keeps no state between calls and is safe for concurrent use, in
// one process and across hosts. Show and Check are the engines of
// `brindlectl ipam show|check`; BlocksForHost and BorrowedIPs feed routing.
package ipam
