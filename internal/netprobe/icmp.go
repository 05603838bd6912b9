package netprobe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// icmpReply maps the reply type to the request types the kernel answers.
var icmpReply = map[uint8]uint8{8: 0, 13: 14}

// ICMPAnswered reports whether the kernel answers ICMP requests of type
// typ (echo 8, timestamp 13), so ICMP can probe them.
func ICMPAnswered(typ uint8) bool { _, ok := icmpReply[typ]; return ok }

// ICMP sends one IPv4 ICMP request of the given type and code on a raw
// socket, from the calling thread's network namespace, and waits for the
// matching reply from dst.
func ICMP(dst netip.Addr, typ, code uint8, timeout time.Duration) (bool, error) {
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
		return Verdict(err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for {
		if !PollFD(fd, unix.POLLIN, time.Until(deadline)) {
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
