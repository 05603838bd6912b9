// Package routing is the agent's BGP speaker: GoBGP (v3, as a library)
// holds the sessions, advertises this node's IPAM blocks and programs the
// routes it learns into the kernel. It reproduces confd + BIRD (compat §7).
//
// Plan is pure: from Nodes, BGPPeers, BGPConfigurations and this node's
// blocks and borrowed addresses it computes a Desired — local AS (Node >
// node.<name> BGPConfiguration > default BGPConfiguration > 64512), router
// ID (the node's IPv4), listen port, the peers and the prefixes. Peers
// follow Calico's confd: a node-to-node mesh unless nodeToNodeMeshEnabled is
// false (a route reflector, one with routeReflectorClusterID, skips the
// mesh, and meshed nodes skip reflectors; only the side whose address is
// the greater *string* dials, the other is passive); then BGPPeers with
// neither node nor nodeSelector (global), then those picking this node
// (node), then reverse peerings for BGPPeers that pick this node as the
// peer. The first peering to an address wins. An iBGP peer of a reflector
// whose cluster ID differs is a route-reflector client. Resources Plan
// cannot use are skipped and listed in Desired.Problems.
//
// Speaker contract:
//   - Declarative. Apply(Desired) adds and removes peers and advertised
//     paths to reach the desired set; applying the same Desired twice
//     changes nothing (Stats do not move). AS, router ID or port changes
//     restart BGP. A disabled Desired stops BGP.
//   - Learned routes. A best path from a peer becomes "<prefix> via <next
//     hop> proto 99" in the main table (the next hop resolved through the
//     kernel when it is not on a connected subnet); a withdrawal, or our
//     own path becoming best, removes it. Owned blocks get "blackhole
//     <block> proto 99". Protocol 99 (Config.RouteProtocol) is not the
//     route dataplane's 98, so each reconciler prunes only its own routes;
//     a route of another protocol at the same destination and metric is
//     never replaced.
//   - Nothing is swept before convergence. Routes of ours found in the
//     kernel that nobody wants (left by an earlier run) are removed only
//     once every desired peer is Established and has sent End-of-RIB (or
//     does not do graceful restart), or Config.RestartTime after the first
//     Apply, whichever comes first. Until then they keep forwarding.
//   - Graceful restart. Every session negotiates it (RFC 4724), restart
//     time from the Peer or Config.RestartTime. Stop closes the sessions
//     without a NOTIFICATION (see abandonSessions) and leaves kernel routes
//     alone, so peers keep our routes as stale and our kernel keeps theirs
//     while the agent restarts. A killed agent looks the same to peers: its
//     routes stay at peers for the restart time, then go. A peer that goes
//     silent (its hold timer expires: we send the NOTIFICATION) is not
//     treated as restarting: its routes are dropped then (dropSilentPeers;
//     Config.GracefulOnHoldExpiry keeps GoBGP's RFC 8538 way). StopAndWithdraw
//     sends a Cease (peers drop our routes at once) and deletes our kernel
//     routes.
//   - Namespaces. The speaker works in its process's network namespace:
//     GoBGP dials from arbitrary goroutines and threads, so running it from
//     a thread switched into another namespace would dial from the wrong
//     one. Tests therefore run each speaker as a separate process under `ip
//     netns exec`, as the lab runs agents.
//   - Status lists sessions (peer, type, state, since, routes received,
//     accepted, advertised) for `brindlectl node status`; PeerStatus and
//     Stats serialise to JSON for the agent's local API.
//
// Daemon contract (what brindle node runs):
//   - It watches Nodes, BGPPeers, BGPConfigurations, every IPAM block and
//     the node's own affinities (WatchOptions), and after every change
//     (debounced) applies Plan of its view. Blocks are the node's
//     confirmed (or state-less) affinities; Borrowed are addresses
//     allocated to the node (attribute "node", not cooling down) outside
//     its own blocks.
//   - Nothing is applied before the watch is in sync and, when
//     DaemonConfig.Ready is set, before it first says yes. An unchanged
//     plan is not applied again; a failed Apply is retried with backoff.
//   - Stop is the speaker's graceful Stop; Status (also served as JSON at
//     StatusPath by ServeHTTP) reports progress, sessions and the plan.
//
// Concurrency: Apply, Stop and Status are safe from any goroutine; one
// mutex guards the speaker's record of peers and paths, and the kernel
// reconciler has its own (taken after the speaker's, never before). GoBGP's
// watcher goroutine calls into the kernel reconciler; the speaker's loop
// goroutine handles convergence and periodic resync and ends with Stop.
//
// Not done yet: IPv6, BGP passwords, BGPFilters, communities, service
// advertisement, export filtering to pool CIDRs.
package routing
