package datastoretest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	ServeIfChild()
	os.Exit(m.Run())
}

// TestSeparateMemberServesFromAnotherProcess starts a member in a child
// process: the client works, no member runs in this process, and cleanup
// stops the child (its data directory is then free to remove, which
// t.TempDir's cleanup does and fails on if a process still writes there).
func TestSeparateMemberServesFromAnotherProcess(t *testing.T) {
	m := NewWith(t, Options{Separate: true})
	if m.server != nil || m.Pid() == 0 || m.Pid() == os.Getpid() {
		t.Fatalf("a Separate member runs in the test's process (pid %d)", m.Pid())
	}
	ctx := context.Background()
	raw := m.Client.Raw()
	if _, err := raw.Create(ctx, "/calico/test/separate", []byte("v")); err != nil {
		t.Fatal(err)
	}
	kv, err := raw.Get(ctx, "/calico/test/separate")
	if err != nil || string(kv.Value) != "v" {
		t.Fatalf("read back %q, %v", kv.Value, err)
	}
	// The member's client port is served by a process other than this
	// one: nothing in this process listens on it.
	port := m.Endpoints[0][strings.LastIndex(m.Endpoints[0], ":")+1:]
	if listening(t, port) {
		t.Fatalf("this process listens on the member's port %s", port)
	}
}

// listening reports whether this process has a listening TCP socket on
// port (from /proc/net/tcp and this process's socket inodes).
func listening(t *testing.T, port string) bool {
	t.Helper()
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil {
		t.Fatal(err)
	}
	tcp, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(":%04X", p)
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(tcp), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], want) && f[3] == "0A" { // 0A: LISTEN
			inodes[f[9]] = true
		}
	}
	if len(inodes) == 0 {
		t.Fatalf("nothing listens on port %d at all", p)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") && inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			return true
		}
	}
	return false
}
