package nft

import (
	"testing"
	"time"

	"github.com/brindle-net/brindle/internal/netnstest"
)

func TestPrivilegedDebugTiming(t *testing.T) {
	ns := netnstest.NewNS(t, "nftdbg")
	s := bigState(5000, 200)
	dp, err := New(Config{NetNSFd: int(ns.NsHandle())}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	m := dp.b.build(s)
	t2 := time.Now()
	have, _ := dp.k.read()
	t3 := time.Now()
	b := dp.k.plan(m, have)
	t4 := time.Now()
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	t5 := time.Now()
	t.Logf("validate %v build %v read %v plan %v flush %v ops %d", t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t5.Sub(t4), b.ops)
}
