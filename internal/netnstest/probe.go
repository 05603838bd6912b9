package netnstest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/brindle-net/brindle/internal/netprobe"
)

// DefaultProbeTimeout is how long a probe waits when given a timeout of 0.
// It is what a negative (blocked) probe costs.
const DefaultProbeTimeout = 300 * time.Millisecond

// ErrSCTPUnavailable is returned by SCTP probes and servers when the kernel
// cannot open SCTP sockets (no sctp module). Callers should t.Skip with it.
var ErrSCTPUnavailable = errors.New("netnstest: the kernel has no SCTP support (socket(IPPROTO_SCTP) failed)")

// ServeTCP starts a TCP echo server on port (all addresses, both families)
// inside the workload and returns the bound port (useful with port 0). It
// stops on cleanup.
func (w *Workload) ServeTCP(port uint16) uint16 {
	w.t.Helper()
	var ln net.Listener
	err := w.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(int(port)))
		return err
	})
	if err != nil {
		w.t.Fatalf("netnstest: ServeTCP %d in %s: %v", port, w.Name(), err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				netprobe.EchoConn(c, 10*time.Second)
			}()
		}
	}()
	w.t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// ServeUDP starts a UDP echo server on port (all addresses, both families)
// inside the workload and returns the bound port. It stops on cleanup.
func (w *Workload) ServeUDP(port uint16) uint16 {
	w.t.Helper()
	var pc net.PacketConn
	err := w.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", ":"+strconv.Itoa(int(port)))
		return err
	})
	if err != nil {
		w.t.Fatalf("netnstest: ServeUDP %d in %s: %v", port, w.Name(), err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		netprobe.EchoUDP(pc)
	}()
	w.t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

// Probe reports whether a connection from namespace from to dst:port gets
// through: "TCP" connects and checks a one-byte echo; "UDP" sends a datagram
// and waits for its echo; "SCTP" connects and checks a one-byte echo, or
// returns ErrSCTPUnavailable. A blocked, refused, reset or unreachable probe
// is (false, nil); an error means the probe itself could not run. timeout 0
// means DefaultProbeTimeout.
func Probe(from *NS, dst netip.Addr, port uint16, proto string, timeout time.Duration) (bool, error) {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	if !dst.IsValid() {
		return false, fmt.Errorf("netnstest: probe: invalid destination address")
	}
	ap := netip.AddrPortFrom(dst.Unmap(), port)
	var ok bool
	var perr error
	err := from.Do(func() error {
		switch proto {
		case "TCP", "tcp":
			ok, perr = netprobe.TCP("tcp", netip.Addr{}, ap, timeout)
		case "UDP", "udp":
			ok, perr = netprobe.UDP("udp", netip.Addr{}, ap, timeout, 1)
		case "SCTP", "sctp":
			ok, perr = netprobe.SCTP(ap, timeout)
			perr = sctpErr(perr)
		default:
			perr = fmt.Errorf("netnstest: probe: protocol %q: want TCP, UDP or SCTP", proto)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("netnstest: probe from %s: %w", from.Name(), err)
	}
	return ok, perr
}
