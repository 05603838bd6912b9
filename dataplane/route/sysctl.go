package route

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// sysctl is one per-interface setting; path has one %s for the name.
type sysctl struct {
	path, value string
}

// The host-side settings of a workload interface (compat §5.2), in the
// order they are written. IPv6: RAs are refused before IPv6 is enabled.
var (
	ipv4Sysctls = []sysctl{
		{"/proc/sys/net/ipv4/conf/%s/proxy_arp", "1"},      // answer ARP for 169.254.1.1
		{"/proc/sys/net/ipv4/neigh/%s/proxy_delay", "0"},   // ...at once
		{"/proc/sys/net/ipv4/conf/%s/forwarding", "1"},     // route what the workload sends
		{"/proc/sys/net/ipv4/conf/%s/route_localnet", "1"}, // allow DNAT to 127.0.0.0/8
	}
	ipv6Sysctls = []sysctl{
		{"/proc/sys/net/ipv6/conf/%s/accept_ra", "0"},
		{"/proc/sys/net/ipv6/conf/%s/proxy_ndp", "1"},
		{"/proc/sys/net/ipv6/conf/%s/forwarding", "1"},
		{"/proc/sys/net/ipv6/conf/%s/disable_ipv6", "0"},
	}
)

// syncSysctls sets the workload sysctls on every workload interface not
// checked since it appeared (all of them when recheck). It reads before
// writing, so settled values cost no writes. d.mu must be held.
func (d *Dataplane) syncSysctls(links []netlink.Link, recheck bool) error {
	present := make(map[int]bool, len(links))
	var todo []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if !d.cfg.isWorkloadIface(a.Name) {
			continue
		}
		present[a.Index] = true
		if recheck || d.sysctlsDone[a.Index] != a.Name {
			todo = append(todo, l)
		}
	}
	for idx := range d.sysctlsDone {
		if !present[idx] {
			delete(d.sysctlsDone, idx)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	var errs []error
	var writes uint64
	done := make([]bool, len(todo))
	err := d.inNS(func() error {
		_, err := os.Stat("/proc/sys/net/ipv6")
		haveIPv6 := err == nil
		for i, l := range todo {
			name := l.Attrs().Name
			n, gone, err := ensureSysctls(name, ipv4Sysctls)
			writes += n
			if err == nil && haveIPv6 && !gone {
				n, gone, err = ensureSysctls(name, ipv6Sysctls)
				writes += n
			}
			switch {
			case gone: // deleted since we listed it; nothing to do
			case err != nil:
				errs = append(errs, err)
			default:
				done[i] = true
			}
		}
		return nil
	})
	d.stats.SysctlWrites += writes
	if err != nil {
		return fmt.Errorf("route: enter netns for sysctls: %w", err)
	}
	for i, l := range todo {
		if done[i] {
			d.sysctlsDone[l.Attrs().Index] = l.Attrs().Name
		}
	}
	return errors.Join(errs...)
}

// ensureSysctls reads each setting of iface and writes those that differ.
// gone reports that the interface no longer exists. Raw system calls: a
// resync reads thousands of these, and os.File's poller registration would
// double the cost.
func ensureSysctls(iface string, list []sysctl) (writes uint64, gone bool, err error) {
	var buf [32]byte
	for _, s := range list {
		p := fmt.Sprintf(s.path, iface)
		n, err := readSmall(p, buf[:])
		if errors.Is(err, unix.ENOENT) {
			return writes, true, nil
		}
		if err != nil {
			return writes, false, fmt.Errorf("route: read %s: %w", p, err)
		}
		if string(bytes.TrimSpace(buf[:n])) == s.value {
			continue
		}
		if err := writeSmall(p, s.value); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return writes, true, nil
			}
			return writes, false, fmt.Errorf("route: write %s=%s: %w", p, s.value, err)
		}
		writes++
	}
	return writes, false, nil
}

func readSmall(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func writeSmall(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, werr := unix.Write(fd, []byte(value))
	if cerr := unix.Close(fd); werr == nil {
		werr = cerr
	}
	return werr
}
