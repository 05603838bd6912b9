package routing

import (
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// watchRoute polls a host's routes every 50 ms and records whether route
// was ever missing; stop returns that.
func watchRoute(t *testing.T, h *labHost, route string) (stop func() (missing bool)) {
	var mu sync.Mutex
	missing := false
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if !slices.Contains(ourRoutes(t, h.ns), route) {
				mu.Lock()
				missing = true
				mu.Unlock()
			}
		}
	}()
	return func() bool {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return missing
	}
}

// TestPrivilegedGracefulRestart: a speaker stopped gracefully and started
// again within the restart time. Its peer keeps its routes the whole time;
// the restarted host keeps the routes it had learned, and sweeps a stale
// route of ours only once BGP has converged.
func TestPrivilegedGracefulRestart(t *testing.T) {
	t.Parallel()
	hc := helperConfig{HoldTime: 3 * time.Second, RestartTime: 20 * time.Second}
	l := newLab(t)
	h1, h2 := l.host("g1", "10.123.0.21"), l.host("g2", "10.123.0.22")
	nodes := []api.Node{node("g1", "10.123.0.21", nil), node("g2", "10.123.0.22", nil)}
	d1 := mustPlan(t, Inputs{NodeName: "g1", Nodes: nodes, Blocks: pfxs("10.244.1.0/26")})
	d2 := mustPlan(t, Inputs{NodeName: "g2", Nodes: nodes, Blocks: pfxs("10.244.2.0/26")})
	p1, p2 := startSpeaker(t, h1.ns, hc), startSpeaker(t, h2.ns, hc)
	p1.apply(d1)
	p2.apply(d2)
	wantRoutes(t, h1, []string{"10.244.2.0/26 via 10.123.0.22", "blackhole 10.244.1.0/26"}, 30*time.Second)
	wantRoutes(t, h2, []string{"10.244.1.0/26 via 10.123.0.21", "blackhole 10.244.2.0/26"}, 10*time.Second)

	stop1 := watchRoute(t, h1, "10.244.2.0/26 via 10.123.0.22")
	stop2 := watchRoute(t, h2, "10.244.1.0/26 via 10.123.0.21")

	if r := p2.call(helperCmd{Op: "stop"}); r.Err != "" {
		t.Fatalf("graceful stop: %s", r.Err)
	}
	// A learned route of ours that no peer advertises any more, as an
	// earlier run could have left behind.
	stale := &netlink.Route{
		Dst:      &net.IPNet{IP: net.IP{10, 250, 0, 0}, Mask: net.CIDRMask(24, 32)},
		Gw:       net.IP{10, 123, 0, 21},
		Table:    unix.RT_TABLE_MAIN,
		Protocol: DefaultRouteProtocol,
	}
	if err := h2.ns.Handle().RouteAdd(stale); err != nil {
		t.Fatalf("plant stale route: %v", err)
	}
	time.Sleep(2 * hc.HoldTime) // down longer than the hold time
	p2b := startSpeaker(t, h2.ns, hc)
	r := p2b.apply(d2)
	if r.Stats.Converged {
		t.Fatalf("converged right after the first Apply")
	}
	if !slices.Contains(ourRoutes(t, h2.ns), "10.250.0.0/24 via 10.123.0.21") {
		t.Fatalf("stale route swept before convergence: %v", ourRoutes(t, h2.ns))
	}
	eventually(t, 15*time.Second, "g2 converged", func() string {
		if !p2b.call(helperCmd{Op: "status"}).Stats.Converged {
			return "not converged"
		}
		return ""
	})
	wantRoutes(t, h2, []string{"10.244.1.0/26 via 10.123.0.21", "blackhole 10.244.2.0/26"}, 5*time.Second)
	if stop1() {
		t.Errorf("g1 lost g2's block during g2's graceful restart")
	}
	if stop2() {
		t.Errorf("g2's kernel lost g1's block during its own restart")
	}
	st := p1.call(helperCmd{Op: "status"}).Status
	if len(st) != 1 || st[0].State != "Established" {
		t.Errorf("g1 status after restart: %+v", st)
	}
}

// TestPrivilegedHostDeath: a speaker killed with SIGKILL never comes back.
// Its peer keeps its routes, as stale, for the restart time (the kernel
// closed the TCP session without a NOTIFICATION, which is a graceful
// restart by RFC 4724), then removes them; the dead host's own kernel
// routes stay.
func TestPrivilegedHostDeath(t *testing.T) {
	t.Parallel()
	hc := helperConfig{HoldTime: 3 * time.Second, RestartTime: 5 * time.Second}
	l := newLab(t)
	h1, h2 := l.host("k1", "10.123.0.31"), l.host("k2", "10.123.0.32")
	nodes := []api.Node{node("k1", "10.123.0.31", nil), node("k2", "10.123.0.32", nil)}
	p1, p2 := startSpeaker(t, h1.ns, hc), startSpeaker(t, h2.ns, hc)
	p1.apply(mustPlan(t, Inputs{NodeName: "k1", Nodes: nodes, Blocks: pfxs("10.244.1.0/26")}))
	p2.apply(mustPlan(t, Inputs{NodeName: "k2", Nodes: nodes, Blocks: pfxs("10.244.2.0/26")}))
	wantRoutes(t, h1, []string{"10.244.2.0/26 via 10.123.0.32", "blackhole 10.244.1.0/26"}, 30*time.Second)
	wantRoutes(t, h2, []string{"10.244.1.0/26 via 10.123.0.31", "blackhole 10.244.2.0/26"}, 10*time.Second)

	p2.kill(syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(time.Second)
	if !slices.Contains(ourRoutes(t, h1.ns), "10.244.2.0/26 via 10.123.0.32") {
		t.Errorf("k1 dropped k2's block 1s after k2 died; graceful restart should keep it for %s", hc.RestartTime)
	}
	wantRoutes(t, h1, []string{"blackhole 10.244.1.0/26"}, hc.RestartTime+hc.HoldTime+5*time.Second)
	if el := time.Since(killed); el < hc.RestartTime-time.Second {
		t.Errorf("k2's routes went after %s, before the restart time %s", el, hc.RestartTime)
	}
	wantRoutes(t, h2, []string{"10.244.1.0/26 via 10.123.0.31", "blackhole 10.244.2.0/26"}, time.Second)
}

// TestPrivilegedHostDeathNoGR: with graceful restart off, a killed
// speaker's routes are withdrawn at its peer at once, and a speaker that
// freezes (SIGSTOP, a host that vanished without closing its sessions)
// loses them when the hold time expires.
func TestPrivilegedHostDeathNoGR(t *testing.T) {
	t.Parallel()
	hc := helperConfig{HoldTime: 3 * time.Second, DisableGracefulRestart: true}
	l := newLab(t)
	h1, h2, h3 := l.host("n1", "10.123.0.41"), l.host("n2", "10.123.0.42"), l.host("n3", "10.123.0.43")
	nodes := []api.Node{node("n1", "10.123.0.41", nil), node("n2", "10.123.0.42", nil), node("n3", "10.123.0.43", nil)}
	p1, p2, p3 := startSpeaker(t, h1.ns, hc), startSpeaker(t, h2.ns, hc), startSpeaker(t, h3.ns, hc)
	p1.apply(mustPlan(t, Inputs{NodeName: "n1", Nodes: nodes, Blocks: pfxs("10.244.1.0/26")}))
	p2.apply(mustPlan(t, Inputs{NodeName: "n2", Nodes: nodes, Blocks: pfxs("10.244.2.0/26")}))
	p3.apply(mustPlan(t, Inputs{NodeName: "n3", Nodes: nodes, Blocks: pfxs("10.244.3.0/26")}))
	wantRoutes(t, h1, []string{"10.244.2.0/26 via 10.123.0.42", "10.244.3.0/26 via 10.123.0.43", "blackhole 10.244.1.0/26"}, 30*time.Second)

	p2.kill(syscall.SIGKILL)
	wantRoutes(t, h1, []string{"10.244.3.0/26 via 10.123.0.43", "blackhole 10.244.1.0/26"}, 2*time.Second)

	if err := p3.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p3.cmd.Process.Signal(syscall.SIGCONT) })
	stopped := time.Now()
	wantRoutes(t, h1, []string{"blackhole 10.244.1.0/26"}, hc.HoldTime+3*time.Second)
	if el := time.Since(stopped); el < hc.HoldTime-time.Second {
		t.Errorf("n3's routes went after %s, before the hold time", el)
	}
}
