package netnstest

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SCTPAvailable reports ErrSCTPUnavailable when the kernel cannot open an
// SCTP socket in namespace n, nil when it can.
func SCTPAvailable(n *NS) error {
	return n.Do(func() error {
		fd, err := sctpSocket(unix.AF_INET)
		if err != nil {
			return err
		}
		unix.Close(fd)
		return nil
	})
}

func sctpSocket(family int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_SCTP)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT) {
			return -1, ErrSCTPUnavailable
		}
		return -1, fmt.Errorf("sctp socket: %w", err)
	}
	return fd, nil
}

// ServeSCTP starts an SCTP echo server on port (IPv6 socket accepting both
// families) inside the workload. It returns ErrSCTPUnavailable when the
// kernel has no SCTP; other failures end the test. It stops on cleanup.
func (w *Workload) ServeSCTP(port uint16) error {
	w.t.Helper()
	var fd int
	err := w.Do(func() error {
		var err error
		fd, err = sctpSocket(unix.AF_INET6)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Port: int(port)}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind: %w", err)
		}
		if err := unix.Listen(fd, 16); err != nil {
			unix.Close(fd)
			return fmt.Errorf("listen: %w", err)
		}
		return nil
	})
	if errors.Is(err, ErrSCTPUnavailable) {
		return err
	}
	if err != nil {
		w.t.Fatalf("netnstest: ServeSCTP %d in %s: %v", port, w.Name(), err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !pollFd(fd, unix.POLLIN, 50*time.Millisecond) {
				continue
			}
			c, _, err := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer unix.Close(c)
				buf := make([]byte, 512)
				for i := 0; i < 100; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if !pollFd(c, unix.POLLIN, 50*time.Millisecond) {
						continue
					}
					n, err := unix.Read(c, buf)
					if err != nil || n == 0 {
						return
					}
					_, _ = unix.Write(c, buf[:n])
				}
			}()
		}
	}()
	w.t.Cleanup(func() {
		close(stop)
		wg.Wait()
		unix.Close(fd)
	})
	return nil
}

func probeSCTP(ap netip.AddrPort, timeout time.Duration) (bool, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if ap.Addr().Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := sctpSocket(family)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return verdict(err)
	}
	if !pollFd(fd, unix.POLLOUT, time.Until(deadline)) {
		return false, nil
	}
	if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		return false, fmt.Errorf("sctp SO_ERROR: %w", err)
	} else if soerr != 0 {
		return verdict(unix.Errno(soerr))
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

// pollFd waits up to d for events on fd.
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
