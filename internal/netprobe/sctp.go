package netprobe

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoSCTP says the kernel cannot open SCTP sockets (no sctp module).
var ErrNoSCTP = errors.New("kernel has no SCTP")

// SCTPSocket opens a non-blocking SCTP stream socket of family (AF_INET or
// AF_INET6); it returns ErrNoSCTP when the kernel has no SCTP.
func SCTPSocket(family int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return -1, ErrNoSCTP
		}
		return -1, fmt.Errorf("sctp socket: %w", err)
	}
	return fd, nil
}

// SCTPAvailable reports ErrNoSCTP when the kernel cannot open an SCTP
// socket in the current network namespace, nil when it can.
func SCTPAvailable() error {
	fd, err := SCTPSocket(unix.AF_INET)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// SCTP connects to dst (IPv4 or IPv6), sends one byte and reports whether
// it comes back, all within timeout. It returns ErrNoSCTP when the kernel
// has no SCTP.
func SCTP(dst netip.AddrPort, timeout time.Duration) (bool, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	if dst.Addr().Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	fd, err := SCTPSocket(family)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return Verdict(err)
	}
	if !PollFD(fd, unix.POLLOUT, time.Until(deadline)) {
		return false, nil
	}
	if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		return false, fmt.Errorf("sctp SO_ERROR: %w", err)
	} else if soerr != 0 {
		return Verdict(unix.Errno(soerr))
	}
	if _, err := unix.Write(fd, []byte{'p'}); err != nil {
		return Verdict(err)
	}
	if !PollFD(fd, unix.POLLIN, time.Until(deadline)) {
		return false, nil
	}
	b := make([]byte, 1)
	n, err := unix.Read(fd, b)
	if err != nil {
		return Verdict(err)
	}
	return n == 1 && b[0] == 'p', nil
}

// PollFD waits up to d for events (or an error or hang-up) on fd and
// reports whether they came; d <= 0 is false at once.
func PollFD(fd int, events int16, d time.Duration) bool {
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
