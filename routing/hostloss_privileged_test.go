package routing

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestPrivilegedHostLoss is the host-loss test, on daemons (as
// brindle node runs them) with the node's timer rule: restart time shorter
// than the hold time (here 12 s and 20 s; brindle node's defaults are 60 s
// and 90 s). The restart time must also leave room for GoBGP's idle hold:
// after a session drops, a GoBGP peer refuses connections for 5 s (a fixed
// holdtimeIdle), so a restart time under ~10 s expires before a restarted
// host can get back in.
//
//  1. A killed daemon restarted at once: its peers never lose its block
//     (graceful restart), and its own kernel never loses theirs.
//  2. A killed daemon that stays down: peers keep its block for the restart
//     time, then withdraw it, within the hold time of the kill.
//  3. Restarted with its policy not yet programmed (the Ready gate closed):
//     it advertises nothing, so no traffic is drawn to a host without
//     policy; once ready, its block is back everywhere.
//  4. A silent host (SIGSTOP: no TCP close): its peers' hold timers expire
//     (within the hold time of its last keepalive) and they drop its routes
//     then — GoBGP alone would keep them as stale for the restart time more
//     (RFC 8538 behaviour, GoBGP issue 2174); the speaker's dropSilentPeers
//     prevents that. Woken up, it comes back.
func TestPrivilegedHostLoss(t *testing.T) {
	t.Parallel()
	const hold, restart = 20 * time.Second, 12 * time.Second
	l := NewDaemonLab(t, hold, restart)
	h1, h2, h3 := l.Host("l1", "10.123.0.61"), l.Host("l2", "10.123.0.62"), l.Host("l3", "10.123.0.63")
	b1, b2, b3 := l.Claim("l1").Masked(), l.Claim("l2").Masked(), l.Claim("l3").Masked()
	for _, h := range []*DaemonHost{h1, h2, h3} {
		h.Start(true)
	}
	r := func(b fmt.Stringer, h *DaemonHost) string { return b.String() + " via " + h.IP.String() }
	all := func(ss ...string) []string { return slices.Sorted(slices.Values(ss)) }
	h1.WantRoutes(all("blackhole "+b1.String(), r(b2, h2), r(b3, h3)), 30*time.Second)
	h2.WantRoutes(all(r(b1, h1), "blackhole "+b2.String(), r(b3, h3)), 10*time.Second)
	h3.WantRoutes(all(r(b1, h1), r(b2, h2), "blackhole "+b3.String()), 10*time.Second)
	established := func(h *DaemonHost, n int) func() string {
		return func() string {
			st, err := h.Status()
			if err != nil {
				return err.Error()
			}
			up := 0
			for _, p := range st.Peers {
				if p.State == "Established" {
					up++
				}
			}
			if up != n || !st.Stats.Converged {
				return fmt.Sprintf("%d of %d sessions up, converged %v: %+v", up, n, st.Stats.Converged, st.Peers)
			}
			return ""
		}
	}
	Eventually(t, 20*time.Second, "l1 sessions", established(h1, 2))

	t.Log("1: kill l2 and restart it at once")
	stop1 := watchRoute(t, h1.h, r(b2, h2))
	stop3 := watchRoute(t, h3.h, r(b2, h2))
	stop2 := watchRoute(t, h2.h, r(b1, h1))
	h2.Kill(syscall.SIGKILL)
	h2.Start(true)
	Eventually(t, 20*time.Second, "l2 back and converged", established(h2, 2))
	Eventually(t, 10*time.Second, "l1 sessions after l2's restart", established(h1, 2))
	time.Sleep(restart + time.Second) // past the restart time: stale routes would be gone by now
	if stop1() {
		t.Errorf("l1 lost l2's block while l2 restarted")
	}
	if stop3() {
		t.Errorf("l3 lost l2's block while l2 restarted")
	}
	if stop2() {
		t.Errorf("l2's kernel lost l1's block while l2 restarted")
	}
	h1.WantRoutes(all("blackhole "+b1.String(), r(b2, h2), r(b3, h3)), time.Second)

	t.Log("2: kill l2 for good")
	h2.Kill(syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(time.Second)
	if !h1.HasRoute(r(b2, h2)) {
		t.Errorf("l1 dropped l2's block 1s after the kill; graceful restart should keep it for %s", restart)
	}
	h1.WantRoutes(all("blackhole "+b1.String(), r(b3, h3)), hold)
	gone := time.Since(killed)
	h3.WantRoutes(all(r(b1, h1), "blackhole "+b3.String()), time.Second)
	if gone < restart-time.Second || gone >= hold {
		t.Errorf("l2's block left l1 %s after the kill; want between the restart time %s and the hold time %s", gone, restart, hold)
	}
	t.Logf("killed host withdrawn after %s (restart time %s, hold time %s)", gone.Round(100*time.Millisecond), restart, hold)
	// l2's own kernel keeps what it had learned: nobody is there to sweep.
	if !h2.HasRoute(r(b1, h1)) {
		t.Errorf("l2's kernel lost l1's block after its daemon was killed")
	}

	t.Log("3: restart l2 with its policy not programmed yet")
	h2.Start(false)
	Eventually(t, 10*time.Second, "l2 waiting for policy", func() string {
		st, err := h2.Status()
		if err != nil {
			return err.Error()
		}
		if st.State != "waiting for policy" {
			return "state " + st.State
		}
		return ""
	})
	time.Sleep(2 * time.Second)
	if h1.HasRoute(r(b2, h2)) || h3.HasRoute(r(b2, h2)) {
		t.Errorf("l2's block advertised before its policy was programmed")
	}
	if !h2.HasRoute(r(b1, h1)) {
		t.Errorf("l2's kernel lost l1's block while waiting for policy")
	}
	h2.SetReady()
	h1.WantRoutes(all("blackhole "+b1.String(), r(b2, h2), r(b3, h3)), 15*time.Second)
	h3.WantRoutes(all(r(b1, h1), r(b2, h2), "blackhole "+b3.String()), 5*time.Second)

	t.Log("4: l3 goes silent (SIGSTOP)")
	Eventually(t, 20*time.Second, "l1 sessions before l3 stops", established(h1, 2))
	h3.Kill(syscall.SIGSTOP)
	t.Cleanup(func() { h3.Kill(syscall.SIGCONT) })
	stopped := time.Now()
	h1.WantRoutes(all("blackhole "+b1.String(), r(b2, h2)), hold+restart+5*time.Second)
	silent := time.Since(stopped)
	// The hold timer runs from the last keepalive, sent every hold/3.
	if silent < 2*hold/3-time.Second || silent > hold+2*time.Second {
		t.Errorf("silent l3's block left l1 after %s; want within the hold time %s (at least %s)", silent, hold, 2*hold/3)
	}
	t.Logf("silent host withdrawn after %s (hold time %s)", silent.Round(100*time.Millisecond), hold)
	h2.WantRoutes(all(r(b1, h1), "blackhole "+b2.String()), 3*time.Second)
	if st, err := h1.Status(); err != nil || st.Stats.SilentPeersDropped != 1 {
		t.Errorf("l1 stats: %+v, %v; want one silent peer dropped", st.Stats, err)
	}
	h3.Kill(syscall.SIGCONT)
	h1.WantRoutes(all("blackhole "+b1.String(), r(b2, h2), r(b3, h3)), 30*time.Second)
	h2.WantRoutes(all(r(b1, h1), "blackhole "+b2.String(), r(b3, h3)), 10*time.Second)
}
