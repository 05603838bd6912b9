// Package netprobe sends one real connection attempt from the calling
// thread's network namespace and says whether the network let it through.
// It is shared by the lab (brindle lab run) and the privileged test kit
// (internal/netnstest); callers enter the namespace themselves.
//
// Contract:
//   - Every probe returns (true, nil) when the far side answered (a TCP or
//     SCTP connection that echoes one byte, a UDP datagram echoed back),
//     (false, nil) when the network said no (timeout, refused, reset,
//     unreachable, dropped on output: see Verdict), and an error only when
//     the probe itself could not run.
//   - SCTP needs kernel support: SCTPAvailable and SCTP return ErrNoSCTP
//     when the kernel cannot open an SCTP socket, so callers can skip.
//   - EchoUDP and EchoConn are the far side the probes expect: they send
//     back what they receive. Starting, stopping and waiting for them is
//     the caller's (tests tie them to t.Cleanup, the lab to its run).
//   - Nothing here keeps state between calls; probes may run in parallel
//     (each on its own locked thread when namespaces are involved).
package netprobe
