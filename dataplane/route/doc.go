// Package route is the host agent's route dataplane: for each local
// workload interface it keeps the host-side sysctls of compat §5.2 and one
// "<ip>/32 dev <iface> scope link proto brindle" route per workload address
// (/128, metric 1024, for IPv6), in the main table of one network namespace.
//
// Contract (see docs/dataplane-route.md for the why):
//   - Declarative. Apply(desired) takes the whole desired set. It reads the
//     kernel back, writes only the difference, and applying the same set
//     twice makes no kernel writes (Stats().Writes() does not move).
//   - Ours is marked. A main-table unicast route is ours when it carries
//     Config.Protocol (default 98), or when it sits on an interface with a
//     workload prefix (default "cali") and was not added by the kernel
//     (proto kernel/ra/redirect, link-local and multicast destinations are
//     left alone). Only our routes are ever removed; nothing else is
//     touched, except that a desired route replaces any route with the same
//     destination and metric.
//   - Nothing is swept before in-sync. Until the first Apply, Resync and
//     link events do nothing. The first Apply removes stale routes of ours
//     left by an earlier run, so a restarted agent needs no memory.
//   - Make before break. Sysctls are set before routes point at the
//     interface; adds and replaces come before deletes; a destination that
//     moves to another interface is replaced in one step.
//   - Interfaces that come later. A route whose interface is missing or down
//     is pending (shown by Dump) and is programmed as soon as the interface
//     is up: Run subscribes to link events and reconciles at once; without
//     Run, the next Apply or Resync picks it up.
//   - Sysctls are set on every interface with a workload prefix, desired or
//     not, when it is first seen; Resync checks them all again and repairs
//     drift along with routes. Namespace-wide forwarding
//     (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding) is the host's
//     setting and is not changed here; IPv4 forwarding between workloads
//     needs only the per-interface forwarding=1 set here, IPv6 needs
//     conf/all/forwarding=1.
//   - Failures. Invalid input is rejected before any write, with the
//     interface and position named. A kernel error on one route does not
//     stop the others; all are returned joined, and the next Apply or
//     Resync retries.
//
// Concurrency: Apply, Resync, Dump and Run's reconciles are serialised by
// one mutex; Run owns its subscription goroutine and stops with its
// context. Close after Run has returned.
package route
