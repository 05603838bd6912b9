package netnstest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/internal/netprobe"
)

// SCTPAvailable reports ErrSCTPUnavailable when the kernel cannot open an
// SCTP socket in namespace n, nil when it can.
func SCTPAvailable(n *NS) error {
	return sctpErr(n.Do(netprobe.SCTPAvailable))
}

// sctpErr turns netprobe.ErrNoSCTP into this package's ErrSCTPUnavailable.
func sctpErr(err error) error {
	if errors.Is(err, netprobe.ErrNoSCTP) {
		return ErrSCTPUnavailable
	}
	return err
}

// ServeSCTP starts an SCTP echo server on port (IPv6 socket accepting both
// families) inside the workload. It returns ErrSCTPUnavailable when the
// kernel has no SCTP; other failures end the test. It stops on cleanup.
func (w *Workload) ServeSCTP(port uint16) error {
	w.t.Helper()
	var fd int
	err := w.Do(func() error {
		var err error
		fd, err = netprobe.SCTPSocket(unix.AF_INET6)
		err = sctpErr(err)
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
			if !netprobe.PollFD(fd, unix.POLLIN, 50*time.Millisecond) {
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
					if !netprobe.PollFD(c, unix.POLLIN, 50*time.Millisecond) {
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
