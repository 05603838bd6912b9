package netprobe

import (
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestICMP: echo and timestamp requests to loopback are answered; a type
// the kernel does not answer is refused with an error before sending.
func TestICMP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw ICMP sockets need root")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for _, typ := range []uint8{8, 13} {
		if !ICMPAnswered(typ) {
			t.Fatalf("ICMPAnswered(%d) = false", typ)
		}
		ok, err := ICMP(lo, typ, 0, 2*time.Second)
		if err != nil || !ok {
			t.Errorf("ICMP type %d to loopback = %v, %v; want an answer", typ, ok, err)
		}
	}
	if ICMPAnswered(3) {
		t.Error("ICMPAnswered(3) = true; destination unreachable gets no reply")
	}
	if _, err := ICMP(lo, 3, 1, time.Second); err == nil {
		t.Error("ICMP type 3 gave no error")
	}
}
