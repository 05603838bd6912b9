// Package vxlan is Brindle's VXLAN overlay (IPPool.vxlanMode, compat §7.6):
// workloads in a VXLAN pool reach workloads on other hosts through a VXLAN
// device even when the fabric cannot route pool addresses. No BGP is
// needed: everything is computed from Nodes, IPPools and IPAM blocks.
//
// Three parts:
//
//   - Plan (pure). This node, all Nodes, IPPools and IPAM blocks (owner =
//     confirmed affinity, plus borrowed addresses) → Desired: the tunnel
//     (this node's VTEP address and MAC from its Node, its own IPv4 from
//     spec.bgp.ipv4Address as the outer source), one ARP + FDB pair per
//     remote VTEP, and one route per remote block of a VXLAN pool (plus a
//     /32 for each address borrowed by a remote node). Always: "via
//     <remote VTEP> dev <device> onlink". CrossSubnet: the same when the
//     remote node's IP is outside this node's subnet (the prefix of
//     spec.bgp.ipv4Address), otherwise "via <remote node IP>" over the
//     fabric. IPv6 pools are ignored. What cannot be planned (a node
//     without VTEP or address) is listed in Desired.Problems; the rest is
//     planned.
//
//   - Dataplane (netlink). Owns the device Config.Device (default
//     vxlan.calico, VNI 4096, UDP 4789, MTU = parent's − 50, learning off,
//     the VTEP as its only IPv4 address /32), the permanent ARP and FDB
//     entries on it, and the main-table routes with Config.Protocol
//     (default 97; 98 is the route dataplane's, 99 the BGP speaker's).
//     Declarative: Apply reads the kernel back, writes only differences,
//     removes stale entries of ours; applying twice writes nothing
//     (Stats().Writes()). Make before break: device, then neighbours, then
//     route adds, then route and neighbour deletes; without a tunnel the
//     routes go before the device. A device whose fixed parameters (VNI,
//     port, parent, local address, learning) differ is re-created. A route
//     of another protocol at a destination we want is never replaced
//     (Stats().RouteConflicts). Nothing is touched before the first Apply.
//
//   - RunDaemon. Watches Nodes, IPPools and the IPAM keys
//     (/calico/ipam/v2/assignment/ and /host/); after the first in-sync
//     and on every change it keeps this node's VTEP allocated (IPAM handle
//     "vxlan-tunnel-addr-<node>", an enabled VXLAN pool, use Tunnel; MAC
//     from MACFor unless the Node has one), written to the Node by a
//     compare-and-swap update that keeps every other field, and released
//     and cleared when no pool uses VXLAN; then applies the VXLAN plan and
//     the NAT-outgoing plan (package dataplane/nat). Failures are retried
//     after DaemonConfig.RetryInterval; both dataplanes are resynced every
//     ResyncInterval. The Node itself must be created by someone else
//     (node registration): until it exists no VTEP is allocated.
//
// Concurrency: the Dataplane's methods take one mutex; the daemon's state
// belongs to RunDaemon's goroutine.
package vxlan
