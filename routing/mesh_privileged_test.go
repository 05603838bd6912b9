package routing

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fastTimers keeps privileged tests short: 3 s hold time.
var fastTimers = helperConfig{HoldTime: 3 * time.Second, RestartTime: 6 * time.Second}

func node(name, ip string, labels map[string]string) api.Node {
	return api.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: ip + "/24"}},
	}
}

func mustPlan(t *testing.T, in Inputs) Desired {
	t.Helper()
	d, err := Plan(in)
	if err != nil {
		t.Fatalf("plan %s: %v", in.NodeName, err)
	}
	if !d.Enabled {
		t.Fatalf("plan %s: BGP disabled: %v", in.NodeName, d.Problems)
	}
	return d
}

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func wantRoutes(t *testing.T, h *labHost, want []string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "routes on "+h.ns.Name(), func() string {
		if d := cmp.Diff(want, ourRoutes(t, h.ns)); d != "" {
			return "(-want +got)\n" + d
		}
		return ""
	})
}

// TestPrivilegedMesh: three hosts in a full mesh learn each other's blocks
// and a borrowed /32; a withdrawn block disappears everywhere; Apply is
// idempotent; StopAndWithdraw removes a host's routes at once.
func TestPrivilegedMesh(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	h1, h2, h3 := l.host("m1", "10.123.0.11"), l.host("m2", "10.123.0.12"), l.host("m3", "10.123.0.13")
	nodes := []api.Node{node("m1", "10.123.0.11", nil), node("m2", "10.123.0.12", nil), node("m3", "10.123.0.13", nil)}
	in := func(name string, blocks []netip.Prefix, borrowed ...string) Inputs {
		var b []netip.Addr
		for _, s := range borrowed {
			b = append(b, netip.MustParseAddr(s))
		}
		return Inputs{NodeName: name, Nodes: nodes, Blocks: blocks, Borrowed: b}
	}
	d1 := mustPlan(t, in("m1", pfxs("10.244.1.0/26"), "10.244.2.50"))
	d2 := mustPlan(t, in("m2", pfxs("10.244.2.0/26")))
	d3 := mustPlan(t, in("m3", pfxs("10.244.3.0/26", "10.244.3.64/26")))
	p1, p2, p3 := startSpeaker(t, h1.ns, fastTimers), startSpeaker(t, h2.ns, fastTimers), startSpeaker(t, h3.ns, fastTimers)
	p1.apply(d1)
	p2.apply(d2)
	p3.apply(d3)

	wantRoutes(t, h1, []string{
		"10.244.2.0/26 via 10.123.0.12",
		"10.244.3.0/26 via 10.123.0.13",
		"10.244.3.64/26 via 10.123.0.13",
		"blackhole 10.244.1.0/26",
	}, 30*time.Second)
	wantRoutes(t, h2, []string{
		"10.244.1.0/26 via 10.123.0.11",
		"10.244.2.50/32 via 10.123.0.11",
		"10.244.3.0/26 via 10.123.0.13",
		"10.244.3.64/26 via 10.123.0.13",
		"blackhole 10.244.2.0/26",
	}, 10*time.Second)
	wantRoutes(t, h3, []string{
		"10.244.1.0/26 via 10.123.0.11",
		"10.244.2.0/26 via 10.123.0.12",
		"10.244.2.50/32 via 10.123.0.11",
		"blackhole 10.244.3.0/26",
		"blackhole 10.244.3.64/26",
	}, 10*time.Second)

	// Status on m1: both mesh sessions up; m1 has the lowest address, so
	// both peers dial it (it is passive towards them).
	var st []PeerStatus
	eventually(t, 10*time.Second, "m1 status", func() string {
		st = p1.call(helperCmd{Op: "status"}).Status
		if len(st) != 2 {
			return fmt.Sprintf("%d sessions", len(st))
		}
		for _, s := range st {
			if s.State != "Established" || s.RoutesReceived == 0 {
				return fmt.Sprintf("%+v", s)
			}
		}
		return ""
	})
	type row struct {
		Name, Type, State    string
		Passive              bool
		Received, Advertised uint64
		HasSince             bool
	}
	var got []row
	for _, s := range st {
		got = append(got, row{s.Name, s.TypeString(), s.State, s.Passive, s.RoutesReceived, s.RoutesAdvertised, !s.Since.IsZero()})
	}
	want := []row{
		{"Mesh_10_123_0_12", "node-to-node mesh", "Established", true, 1, 2, true},
		{"Mesh_10_123_0_13", "node-to-node mesh", "Established", true, 2, 2, true},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("m1 status (-want +got)\n%s", d)
	}

	// Apply of the same Desired changes nothing.
	before := p1.call(helperCmd{Op: "status"}).Stats
	after := p1.apply(d1).Stats
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("second Apply moved counters (-before +after)\n%s", d)
	}

	// m3 withdraws one block: gone on every host, blackhole too.
	d3b := mustPlan(t, in("m3", pfxs("10.244.3.0/26")))
	p3.apply(d3b)
	wantRoutes(t, h1, []string{
		"10.244.2.0/26 via 10.123.0.12",
		"10.244.3.0/26 via 10.123.0.13",
		"blackhole 10.244.1.0/26",
	}, 10*time.Second)
	wantRoutes(t, h3, []string{
		"10.244.1.0/26 via 10.123.0.11",
		"10.244.2.0/26 via 10.123.0.12",
		"10.244.2.50/32 via 10.123.0.11",
		"blackhole 10.244.3.0/26",
	}, 10*time.Second)

	// m2 leaves for good: its routes go at once (well within the hold
	// time: the Cease is a hard reset), and it removes its own routes.
	start := time.Now()
	if r := p2.call(helperCmd{Op: "withdraw"}); r.Err != "" {
		t.Fatalf("withdraw: %s", r.Err)
	}
	wantRoutes(t, h1, []string{
		"10.244.3.0/26 via 10.123.0.13",
		"blackhole 10.244.1.0/26",
	}, 2*time.Second)
	if el := time.Since(start); el >= fastTimers.HoldTime {
		t.Errorf("withdrawal took %s, want less than the hold time %s", el, fastTimers.HoldTime)
	}
	wantRoutes(t, h2, nil, time.Second)
}
