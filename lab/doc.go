// Package lab builds a real multi-host Brindle network on one machine out of
// Linux network namespaces, and runs policy scenarios against it with real
// packets. `brindle lab` is its command line.
//
// A lab named N is:
//   - a routed fabric: namespace N-router joins two subnets (172.30.1.0/24
//     and 172.30.2.0/24, each an L2 segment: a bridge in the router) and an
//     outside segment (172.30.99.0/24, namespace N-outside, which stands for
//     the world outside the cluster);
//   - hosts N-host1 … N-hostK, alternating between the two subnets, each
//     running one `brindle node` (under `ip netns exec`, so its BGP speaker
//     lives in the host's namespace) with its local API socket under the
//     state directory;
//   - one `brindle datastore` (embedded etcd) in the machine's own
//     namespace, listening on the root end of a veth (169.254.210.x) that
//     links the machine to the router; the router masquerades the hosts'
//     traffic to it;
//   - the router takes part in BGP so it learns every host's blocks: by
//     default it runs a `brindle node` without workloads (a member of the
//     node-to-node mesh, AS 64512); with --tor it runs BIRD 2 instead (AS
//     64513) as a top-of-rack router: the mesh is off, host N is AS 6500N
//     with a BGPPeer to its gateway, and BIRD passes every block on;
//   - an IPPool 10.244.0.0/16 (/26 blocks, vxlanMode from --vxlan);
//   - pods: namespaces N-pod-<ns>-<name> attached through the real CNI
//     plugin (libcni, brindle-cni, the host agent's CNI service).
//
// Everything a lab owns is named with its prefix, so two labs coexist. The
// state (processes, addresses, pods) is kept in StateDir/N/state.json; Down
// removes processes, namespaces, the root veth and the directory, and is
// safe to run on a half-built lab. Up cleans up after itself when it fails.
//
// Run evaluates a policy scenario (package policy/scenario) on real
// packets: pods spread over the hosts, policies applied through the
// datastore, a server on every listed and probed port, probes in parallel,
// and the same matrix and exit codes as `brindlectl policy check`, plus
// where the dataplane and the reference evaluator disagree.
package lab
