package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/internal/netprobe"
)

// ErrNoSCTP says the kernel cannot open SCTP sockets.
var ErrNoSCTP = netprobe.ErrNoSCTP

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
func SCTPAvailable() error { return netprobe.SCTPAvailable() }

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
				go netprobe.EchoConn(c, 5*time.Second)
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
			netprobe.EchoUDP(pc)
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
			ok, perr = netprobe.TCP("tcp4", src, netip.AddrPortFrom(dst, port), timeout)
		case "UDP":
			// A few datagrams in case the first meets an unresolved
			// neighbour.
			ok, perr = netprobe.UDP("udp4", src, netip.AddrPortFrom(dst, port), timeout, 3)
		case "SCTP":
			ok, perr = netprobe.SCTP(netip.AddrPortFrom(dst, port), timeout)
		case "ICMP":
			ok, perr = netprobe.ICMP(dst, icmpType, icmpCode, timeout)
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
