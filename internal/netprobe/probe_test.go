package netprobe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestVerdict(t *testing.T) {
	other := errors.New("something else")
	for _, tc := range []struct {
		err     error
		wantErr error
	}{
		{os.ErrDeadlineExceeded, nil},
		{context.DeadlineExceeded, nil},
		{io.EOF, nil},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), nil},
		{syscall.ECONNRESET, nil},
		{syscall.EHOSTUNREACH, nil},
		{syscall.ENETUNREACH, nil},
		{syscall.EPERM, nil},
		{syscall.ETIMEDOUT, nil},
		{syscall.EINVAL, syscall.EINVAL},
		{other, other},
	} {
		ok, err := Verdict(tc.err)
		if ok || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("Verdict(%v) = %v, %v; want false, %v", tc.err, ok, err, tc.wantErr)
		}
	}
}

// closedPort returns a loopback port nothing listens on (for network).
func closedPort(t *testing.T, network string) uint16 {
	t.Helper()
	pc, err := net.ListenPacket(network, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return uint16(port)
}

// serveTCPEcho starts a loopback TCP echo server (EchoConn) that stops
// when the test ends, and returns its address.
func serveTCPEcho(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go EchoConn(c, 5*time.Second)
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestTCP(t *testing.T) {
	open := serveTCPEcho(t)
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name    string
		network string
		src     netip.Addr
		dst     netip.AddrPort
		want    bool
	}{
		{"echo", "tcp", netip.Addr{}, open, true},
		{"echo from source", "tcp4", lo, open, true},
		{"refused", "tcp4", netip.Addr{}, netip.AddrPortFrom(lo, closedPort(t, "udp4")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := TCP(tc.network, tc.src, tc.dst, time.Second)
			if err != nil || ok != tc.want {
				t.Errorf("TCP(%s, %v) = %v, %v; want %v, nil", tc.network, tc.dst, ok, err, tc.want)
			}
		})
	}
}

func TestUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte("noise"), from) // not the echo: ignored
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	open := netip.MustParseAddrPort(pc.LocalAddr().String())
	lo := netip.MustParseAddr("127.0.0.1")
	refused := netip.AddrPortFrom(lo, closedPort(t, "udp4"))
	for _, tc := range []struct {
		name     string
		src      netip.Addr
		dst      netip.AddrPort
		attempts int
		want     bool
	}{
		{"echo", netip.Addr{}, open, 1, true},
		{"echo from source, retries", lo, open, 3, true},
		{"refused", netip.Addr{}, refused, 1, false},
		{"refused, retries", netip.Addr{}, refused, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := UDP("udp4", tc.src, tc.dst, time.Second, tc.attempts)
			if err != nil || ok != tc.want {
				t.Errorf("UDP(%v, %d attempts) = %v, %v; want %v, nil", tc.dst, tc.attempts, ok, err, tc.want)
			}
		})
	}
}

// TestSCTP checks availability agrees with a probe: without kernel SCTP
// both say ErrNoSCTP; with it, a closed loopback port is refused.
func TestSCTP(t *testing.T) {
	avail := SCTPAvailable()
	ok, err := SCTP(netip.MustParseAddrPort("127.0.0.1:9"), 300*time.Millisecond)
	switch {
	case errors.Is(avail, ErrNoSCTP):
		if !errors.Is(err, ErrNoSCTP) {
			t.Errorf("SCTP without kernel SCTP = %v, %v; want ErrNoSCTP", ok, err)
		}
	case avail != nil:
		t.Fatalf("SCTPAvailable: %v", avail)
	case ok || err != nil:
		t.Errorf("SCTP to a closed port = %v, %v; want false, nil", ok, err)
	}
}

func TestPollFDNoTime(t *testing.T) {
	if PollFD(0, 1, 0) {
		t.Error("PollFD with no time left = true")
	}
}

// TestEcho: the echo servers answer the probes, and EchoUDP returns once
// its socket is closed.
func TestEcho(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); EchoUDP(pc) }()
	if ok, err := UDP("udp4", netip.Addr{}, netip.MustParseAddrPort(pc.LocalAddr().String()), time.Second, 1); err != nil || !ok {
		t.Errorf("UDP probe of EchoUDP = %v, %v; want true, nil", ok, err)
	}
	pc.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("EchoUDP did not return after its socket was closed")
	}

	if ok, err := TCP("tcp4", netip.Addr{}, serveTCPEcho(t), time.Second); err != nil || !ok {
		t.Errorf("TCP probe of EchoConn = %v, %v; want true, nil", ok, err)
	}
}
