package routing

import (
	"bufio"
	"encoding/binary"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// abandonSessions shuts down (SHUT_RDWR, which sends a FIN and no BGP
// NOTIFICATION) every TCP socket of this process that is a BGP session
// with one of addrs: remote port or local port among ports. GoBGP has no
// API to drop a session silently; this is what process exit does, done
// early so that StopBgp's Cease can no longer reach the peers and they
// treat the drop as a graceful restart (RFC 4724). It returns how many
// sockets it shut down.
func abandonSessions(addrs []netip.Addr, ports []uint16) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	inodes, err := socketFDs()
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/net/tcp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		_, lport, ok1 := parseProcAddr(fields[1])
		remote, rport, ok2 := parseProcAddr(fields[2])
		if !ok1 || !ok2 || !slices.Contains(addrs, remote) {
			continue
		}
		if !slices.Contains(ports, rport) && !slices.Contains(ports, lport) {
			continue
		}
		ino, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			continue
		}
		for _, fd := range inodes[ino] {
			if err := unix.Shutdown(fd, unix.SHUT_RDWR); err == nil {
				n++
			}
		}
	}
	return n, sc.Err()
}

// socketFDs maps socket inodes to this process's descriptors.
func socketFDs() (map[uint64][]int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	out := map[uint64][]int{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		if err != nil {
			continue
		}
		out[ino] = append(out[ino], fd)
	}
	return out, nil
}

// parseProcAddr parses /proc/net/tcp's "0100007F:00B3": the kernel prints
// the address's 32-bit word in native byte order with %08X.
func parseProcAddr(s string) (netip.Addr, uint16, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || len(h) != 8 {
		return netip.Addr{}, 0, false
	}
	v, err := strconv.ParseUint(h, 16, 32)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, false
	}
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], uint32(v))
	return netip.AddrFrom4(a), uint16(port), true
}
