package netprobe

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Verdict turns a socket error into a probe result: errors that mean the
// network said no (timeouts, EOF, refused, reset, unreachable, EPERM from a
// netfilter drop on output) are (false, nil); anything else is returned.
func Verdict(err error) (bool, error) {
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
		errors.Is(err, syscall.EPERM), // dropped by netfilter on output
		errors.Is(err, syscall.ETIMEDOUT):
		return false, nil
	}
	return false, err
}

// dialer dials network ("tcp", "tcp4", "udp", "udp4", ...) from src when
// src is valid, within timeout.
func dialer(network string, src netip.Addr, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if src.IsValid() {
		switch network {
		case "tcp", "tcp4", "tcp6":
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		case "udp", "udp4", "udp6":
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
	}
	return d
}

// TCP connects to dst over network ("tcp", "tcp4" or "tcp6"), from src
// when it is valid, sends one byte and reports whether it comes back, all
// within timeout.
func TCP(network string, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (bool, error) {
	c, err := dialer(network, src, timeout).Dial(network, dst.String())
	if err != nil {
		return Verdict(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{'p'}); err != nil {
		return Verdict(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return Verdict(err)
	}
	return b[0] == 'p', nil
}

// UDP sends a random datagram to dst over network ("udp", "udp4" or
// "udp6"), from src when it is valid, and reports whether it is echoed
// back within timeout. With attempts > 1 the datagram is sent again after
// each timeout/attempts without an answer (a first packet may meet an
// unresolved neighbour); a refusal (ICMP port unreachable) ends the probe
// at once. Datagrams that are not the echo are ignored.
func UDP(network string, src netip.Addr, dst netip.AddrPort, timeout time.Duration, attempts int) (bool, error) {
	attempts = max(attempts, 1)
	c, err := dialer(network, src, timeout).Dial(network, dst.String())
	if err != nil {
		return Verdict(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := make([]byte, 16)
	_, _ = rand.Read(msg)
	buf := make([]byte, 64)
	for range attempts {
		if _, err := c.Write(msg); err != nil {
			return Verdict(err)
		}
		if attempts > 1 {
			_ = c.SetReadDeadline(time.Now().Add(timeout / time.Duration(attempts)))
		}
		for {
			n, err := c.Read(buf)
			if err == nil {
				if string(buf[:n]) == string(msg) {
					return true, nil
				}
				continue
			}
			if ok, verr := Verdict(err); verr != nil || errors.Is(err, syscall.ECONNREFUSED) {
				return ok, verr
			}
			break // no answer in time: try again
		}
	}
	return false, nil
}
