package netprobe

import (
	"errors"
	"io"
	"net"
	"time"
)

// EchoUDP answers every datagram pc receives with the same bytes, to its
// sender, and returns once pc is closed. Read errors other than a closed
// socket (an ICMP error queued on it) are skipped.
func EchoUDP(pc net.PacketConn) {
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
}

// EchoConn sends back what c sends until c is closed by its peer or
// timeout has passed, then closes c.
func EchoConn(c net.Conn, timeout time.Duration) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	_, _ = io.Copy(c, c)
}
