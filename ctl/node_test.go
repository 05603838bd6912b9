package ctl

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/routing"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// serveUnix serves h on a unix socket in a temporary directory.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return path
}

var nodeStatusFixture = routing.DaemonStatus{
	Node:  "m1",
	State: "running",
	Peers: []routing.PeerStatus{
		{Name: "Mesh_10_123_0_12", Address: netip.MustParseAddr("10.123.0.12"), ASNumber: 64512, Type: routing.PeerMesh, Passive: true,
			State: "Established", Since: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), RoutesReceived: 1, RoutesAdvertised: 2},
		{Name: "Global_10_0_0_1", Address: netip.MustParseAddr("10.0.0.1"), Port: 1179, ASNumber: 65000, Type: routing.PeerGlobal,
			State: "Active", Since: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)},
		{Name: "Mesh_10_123_0_13", Address: netip.MustParseAddr("10.123.0.13"), ASNumber: 64512, Type: routing.PeerMesh, Passive: true,
			RouteReflectorClient: true, State: "Idle"},
	},
	Desired: &routing.Desired{
		Enabled: true, ASNumber: 64512, RouterID: netip.MustParseAddr("10.123.0.11"), ListenPort: 179,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/26"), netip.MustParsePrefix("10.244.2.50/32")},
		Problems: []string{"BGPPeer p: spec.password: not supported; skipped"},
	},
	Routes: "10.244.2.0/26 via 10.123.0.12 proto 99\nblackhole 10.244.1.0/26 proto 99",
}

// TestNodeStatus: the table and -o json from a served status; a missing
// socket is exit 1 with a clear message; a node without BGP says so.
func TestNodeStatus(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+routing.StatusPath, func(w http.ResponseWriter, _ *http.Request) { routing.ServeStatus(w, nodeStatusFixture) })
	sock := serveUnix(t, mux)

	// The table, at a fixed time (printNodeStatus), ...
	var buf bytes.Buffer
	now := time.Date(2026, 11, 26, 10, 2, 3, 0, time.UTC)
	if err := printNodeStatus(&buf, nodeStatusFixture, now); err != nil {
		t.Fatal(err)
	}
	want := `BGP on node m1: running (AS 64512, router ID 10.123.0.11, port 179)

IPv4 BGP sessions
PEER ADDRESS        PEER TYPE                                  STATE    SINCE                          INFO         ROUTES RECEIVED  ROUTES ADVERTISED
10.123.0.12         node-to-node mesh                          up       10:00:00 (2m3s)                Established  1                2
10.0.0.1 port 1179  global                                     down     2026-11-25 09:00:00 (25h2m3s)  Active       0                0
10.123.0.13         node-to-node mesh, route reflector client  passive  -                              Idle         0                0

Advertised prefixes
  10.244.1.0/26
  10.244.2.50/32
  skipped: BGPPeer p: spec.password: not supported; skipped

Kernel routes from BGP
  10.244.2.0/26 via 10.123.0.12 proto 99
  blackhole 10.244.1.0/26 proto 99
`
	if d := cmp.Diff(want, buf.String()); d != "" {
		t.Errorf("table (-want +got)\n%s", d)
	}

	// ... and through the command and the socket.
	out, code := runCtl(t, "node", "status", "--socket", sock)
	if code != 0 || !strings.Contains(out, "10.123.0.12         node-to-node mesh") || !strings.Contains(out, "Kernel routes from BGP") {
		t.Errorf("node status: exit %d\n%s", code, out)
	}
	out, code = runCtl(t, "node", "status", "--socket", sock, "-o", "json")
	var got routing.DaemonStatus
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("-o json: exit %d, %v\n%s", code, err, out)
	}
	if d := cmp.Diff(nodeStatusFixture, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
		t.Errorf("-o json round trip (-want +got)\n%s", d)
	}

	// No node.
	missing := filepath.Join(t.TempDir(), "none.sock")
	out, code = runCtl(t, "node", "status", "--socket", missing)
	if code != 1 || !strings.Contains(out, "error: brindle node is not running (or not reachable) at "+missing) {
		t.Errorf("missing socket: exit %d\n%s", code, out)
	}
	// A node whose local API has no BGP status (an older node).
	old := serveUnix(t, http.NewServeMux())
	out, code = runCtl(t, "node", "status", "--socket", old)
	if code != 1 || !strings.Contains(out, "/v1/bgp/status 404 Not Found") {
		t.Errorf("no handler: exit %d\n%s", code, out)
	}
	// BGP disabled.
	dmux := http.NewServeMux()
	dmux.HandleFunc("GET "+routing.StatusPath, func(w http.ResponseWriter, _ *http.Request) {
		routing.ServeStatus(w, routing.DisabledStatus("h2", "started with --no-bgp"))
	})
	out, code = runCtl(t, "node", "status", "--socket", serveUnix(t, dmux))
	if code != 0 || out != "BGP on node h2: disabled\n  started with --no-bgp\n" {
		t.Errorf("disabled: exit %d\n%q", code, out)
	}
	// Bad flag.
	if out, code := runCtl(t, "node", "status", "-o", "yaml"); code != 1 || !strings.Contains(out, `--output "yaml": want text or json`) {
		t.Errorf("bad -o: exit %d\n%s", code, out)
	}
}
