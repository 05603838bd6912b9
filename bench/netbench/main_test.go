package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestOnceAgainstServe(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { _ = serveOn(l) }()
	d := &net.Dialer{Timeout: time.Second}
	for i := range 20 {
		if err := once(d, l.Addr().String()); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
}

func TestOnceFailsWithoutServer(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := once(&net.Dialer{Timeout: time.Second}, addr); err == nil {
		t.Fatalf("once(%s) with no listener: want an error", addr)
	}
}

func TestReachCountsRefusedAsAnswered(t *testing.T) {
	// A closed port answers with RST: reach must return, not time out.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := reach([]string{"-to", addr, "-timeout", "5s"}); err != nil {
		t.Fatalf("reach %s: %v", addr, err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func([]string) error
		args []string
		want string
	}{
		{"rate without -to", rate, nil, "-to is required"},
		{"rate with no workers", rate, []string{"-to", "127.0.0.1:1", "-workers", "0"}, "-workers 0"},
		{"reach without -to", reach, nil, "-to is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
