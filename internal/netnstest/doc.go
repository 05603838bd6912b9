// Package netnstest gives privileged tests real, throwaway Linux network
// namespaces: a host namespace, workloads attached to it by veth pairs the
// way the CNI plugin attaches pods, echo servers inside workloads, and probes
// that send real packets.
//
// Contract:
//   - Every helper takes the test's testing.TB and registers its own cleanup
//     with t.Cleanup, so namespaces, links and sockets are removed even when
//     the test fails. Cleanup runs in reverse order of creation: servers
//     close, then host-side veths are deleted, then namespaces are unmounted.
//   - Namespace names are unique per call: "brt-<name>-<6 hex>", bind-mounted
//     under /run/netns like `ip netns add`, so `ip netns exec` works on them
//     while a test runs. Tests using the kit can run in parallel.
//   - Nothing here touches the namespace the test process itself runs in,
//     apart from the bind mounts under /run/netns.
//   - Callers of privileged helpers must call RequireRoot first (NewNS calls
//     it too); without root the test is skipped with a message.
//
// A workload (AddWorkload) matches the Calico-compatible CNI layout (compat
// §5.2): host side <IfName> with MAC ee:ee:ee:ee:ee:ee, up; container side
// eth0 with the IPs as /32 (/128, no DAD), a link-scoped route to
// 169.254.1.1 and a default route through it (IPv6: through the host veth's
// link-local address fe80::ecee:eeff:feee:eeee, derived from the fixed MAC).
// A host namespace should come from NewHostNS, which adds a route for
// 169.254.1.1 through lo: proxy ARP only answers for a gateway the host can
// route elsewhere (a real host's default route does that).
// The host-side routes and sysctls are deliberately NOT programmed: that is
// the route dataplane's job. Tests of other packages that just need
// connectivity opt in with (*Workload).HostRoutes and EnableForwarding.
//
// Probe sends real packets from a namespace: TCP connects and checks a
// one-byte echo, UDP checks a datagram echo, SCTP connects and checks an echo
// or returns ErrSCTPUnavailable when the kernel has no SCTP, so callers can
// t.Skip with that reason. A negative probe costs its timeout
// (DefaultProbeTimeout when 0 is passed). The probes themselves and their
// verdicts are package internal/netprobe's, which the lab shares.
package netnstest
