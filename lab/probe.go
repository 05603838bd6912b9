package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// ErrNoSCTP says the kernel cannot open SCTP sockets.
var ErrNoSCTP = errors.New("kernel has no SCTP")

// DefaultProbeTimeout is how long one attempt of a probe waits for an
// answer; a blocked probe makes two attempts.
const DefaultProbeTimeout = 700 * time.Millisecond

func nsPath(name string) string { return filepath.Join("/run/netns", name) }

// inNetns runs fn on a thread inside a named namespace; sockets opened in
// fn stay in it.
func inNetns(name string, fn func() error) error {
	return ns.WithNetNSPath(nsPath(name), func(ns.NetNS) error { return fn() })
}

// SCTPAvailable reports ErrNoSCTP when the kernel cannot open an SCTP
// socket.
func SCTPAvailable() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return ErrNoSCTP
		}
		return fmt.Errorf("sctp socket: %w", err)
	}
	unix.Close(fd)
	return nil
}

// servers are echo servers in pods; Close stops them all.
type servers struct {
	mu      sync.Mutex
	closers []func()
	wg      sync.WaitGroup
}

func (s *servers) add(c func()) {
	s.mu.Lock()
	s.closers = append(s.closers, c)
	s.mu.Unlock()
}

// Close stops every server and waits for their goroutines.
func (s *servers) Close() {
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range cs {
		c()
	}
	s.wg.Wait()
}

// serve starts an echo server on port/proto (TCP, UDP or SCTP) inside
// namespace netns, on every address.
func (s *servers) serve(netns string, port uint16, proto string) error {
	switch proto {
	case "TCP":
		var ln net.Listener
		if err := inNetns(netns, func() (err error) { ln, err = net.Listen("tcp4", ":"+strconv.Itoa(int(port))); return }); err != nil {
			return fmt.Errorf("TCP server on %d in %s: %w", port, netns, err)
		}
		s.add(func() { ln.Close() })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(c, c)
				}()
			}
		}()
	case "UDP":
		var pc net.PacketConn
		if err := inNetns(netns, func() (err error) { pc, err = net.ListenPacket("udp4", ":"+strconv.Itoa(int(port))); return }); err != nil {
			return fmt.Errorf("UDP server on %d in %s: %w", port, netns, err)
		}
		s.add(func() { pc.Close() })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
	case "SCTP":
		var fd int
		err := inNetns(netns, func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
			if err != nil {
				return ErrNoSCTP
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port)}); err != nil {
				unix.Close(fd)
				return err
			}
			return unix.Listen(fd, 64)
		})
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), "sctp")
		s.add(func() { _ = unix.Shutdown(fd, unix.SHUT_RDWR); f.Close() })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, _, err := unix.Accept(fd)
				if err != nil {
					if errors.Is(err, unix.EINTR) {
						continue
					}
					return
				}
				go func() {
					defer unix.Close(c)
					b := make([]byte, 64)
					n, err := unix.Read(c, b)
					if err == nil && n > 0 {
						_, _ = unix.Write(c, b[:n])
					}
				}()
			}
		}()
	default:
		return fmt.Errorf("no server for protocol %s", proto)
	}
	return nil
}

// probe reports whether a connection from namespace netns (from source
// address src when valid) to dst gets an answer. Refused, reset,
// unreachable or silent is false; an error means the probe could not run.
func probe(netns string, src, dst netip.Addr, port uint16, proto string, icmpType, icmpCode uint8, timeout time.Duration) (bool, error) {
	var ok bool
	var perr error
	err := inNetns(netns, func() error {
		switch proto {
		case "TCP":
			ok, perr = probeTCP(src, netip.AddrPortFrom(dst, port), timeout)
		case "UDP":
			ok, perr = probeUDP(src, netip.AddrPortFrom(dst, port), timeout)
		case "SCTP":
			ok, perr = probeSCTP(netip.AddrPortFrom(dst, port), timeout)
		case "ICMP":
			ok, perr = probeICMP(dst, icmpType, icmpCode, timeout)
		default:
			perr = fmt.Errorf("cannot probe protocol %s", proto)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return ok, perr
}

func dialer(src netip.Addr, timeout time.Duration, network string) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if src.IsValid() {
		switch network {
		case "tcp4":
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		case "udp4":
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
	}
	return d
}

func probeTCP(src netip.Addr, ap netip.AddrPort, timeout time.Duration) (bool, error) {
	c, err := dialer(src, timeout, "tcp4").Dial("tcp4", ap.String())
	if err != nil {
		return verdict(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{'p'}); err != nil {
		return verdict(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return verdict(err)
	}
	return b[0] == 'p', nil
}

func probeUDP(src netip.Addr, ap netip.AddrPort, timeout time.Duration) (bool, error) {
	c, err := dialer(src, timeout, "udp4").Dial("udp4", ap.String())
	if err != nil {
		return verdict(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	// A few datagrams in case the first meets an unresolved neighbour.
	msg := []byte("probe")
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		if _, err := c.Write(msg); err != nil {
			return verdict(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout / 3))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]) == string(msg), nil
		}
		if ok, verr := verdict(err); verr != nil || errors.Is(err, syscall.ECONNREFUSED) {
			return ok, verr
		}
	}
	return false, nil
}

func probeSCTP(ap netip.AddrPort, timeout time.Duration) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		return false, ErrNoSCTP
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return verdict(err)
	}
	if !pollFd(fd, unix.POLLOUT, time.Until(deadline)) {
		return false, nil
	}
	if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
		return false, nil
	}
	if _, err := unix.Write(fd, []byte{'p'}); err != nil {
		return verdict(err)
	}
	if !pollFd(fd, unix.POLLIN, time.Until(deadline)) {
		return false, nil
	}
	b := make([]byte, 1)
	n, err := unix.Read(fd, b)
	if err != nil {
		return verdict(err)
	}
	return n == 1 && b[0] == 'p', nil
}

func pollFd(fd int, events int16, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		n, err := unix.Poll(fds, int(d.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&(events|unix.POLLERR|unix.POLLHUP) != 0
	}
}

// icmpReply is the reply type to the request types the kernel answers.
var icmpReply = map[uint8]uint8{8: 0, 13: 14}

func canProbeICMP(typ uint8) bool { _, ok := icmpReply[typ]; return ok }

// probeICMP sends one ICMP request of the given type and code on a raw
// socket and waits for the matching reply from dst.
func probeICMP(dst netip.Addr, typ, code uint8, timeout time.Duration) (bool, error) {
	want, ok := icmpReply[typ]
	if !ok {
		return false, fmt.Errorf("ICMP type %d gets no reply, so it cannot be probed", typ)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return false, fmt.Errorf("raw ICMP socket: %w", err)
	}
	defer unix.Close(fd)
	id := uint16(os.Getpid()) ^ uint16(time.Now().UnixNano())
	msg := make([]byte, 8)
	if typ == 13 {
		msg = make([]byte, 20)
	}
	msg[0], msg[1] = typ, code
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], 1)
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	sa := &unix.SockaddrInet4{Addr: dst.As4()}
	if err := unix.Sendto(fd, msg, 0, sa); err != nil {
		return verdict(err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for {
		if !pollFd(fd, unix.POLLIN, time.Until(deadline)) {
			return false, nil
		}
		n, from, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		f, ok := from.(*unix.SockaddrInet4)
		if !ok || netip.AddrFrom4(f.Addr) != dst || n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+8 {
			continue
		}
		m := buf[ihl:n]
		if m[0] == want && binary.BigEndian.Uint16(m[4:]) == id {
			return true, nil
		}
	}
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// verdict turns a socket error into a probe result: the network saying no
// is (false, nil); anything else is an error.
func verdict(err error) (bool, error) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EPERM),
		errors.Is(err, syscall.ETIMEDOUT):
		return false, nil
	}
	return false, err
}
