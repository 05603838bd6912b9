package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/dataplane/route"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/desired"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSource is a datastore stream fed by the test. Batches are queued
// (like the real watcher) so a test can push while the loop is busy.
type fakeSource struct{ ch chan []datastore.Update }

func (s *fakeSource) Updates() <-chan []datastore.Update { return s.ch }
func (s *fakeSource) Stop()                              {}

// recorder is a fake pair of dataplanes that records every Apply.
type recorder struct {
	mu       sync.Mutex // guards every field below
	opened   int
	params   Params
	nft      []desired.State
	routes   []route.Routes
	failNft  int           // fail this many more nft applies
	gate     chan struct{} // when set, nft Apply waits for a receive from it
	entered  chan struct{} // when set, nft Apply sends on it before waiting on gate
	resyncs  int
	failNext error
	// failRouteResync fails this many more route resyncs;
	// routeResyncs counts them.
	failRouteResync, routeResyncs int
	// genericPerApply is how many generic classes each nft Apply leaves
	// (Settle clears them); settles records when Settle ran.
	genericPerApply, generic int
	settles                  []time.Time
	// settleBatch, when set, is the most generic classes one Settle
	// clears (nft.Config.SettleBatch); applied records when each nft
	// Apply returned.
	settleBatch int
	applied     []time.Time
	// retainFor, when set, makes each nft Apply retain a policy until
	// that long after it (RetainedUntil); a Settle from then on
	// releases it.
	retainFor     time.Duration
	retainedUntil time.Time
}

type fakeNft struct{ r *recorder }

func (f fakeNft) Apply(s *desired.State) error {
	f.r.mu.Lock()
	gate, entered := f.r.gate, f.r.entered
	f.r.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	f.r.nft = append(f.r.nft, *s) // calc never modifies a State it returned
	f.r.generic = f.r.genericPerApply
	f.r.applied = append(f.r.applied, time.Now())
	if f.r.retainFor > 0 {
		f.r.retainedUntil = time.Now().Add(f.r.retainFor)
	}
	if f.r.failNft > 0 {
		f.r.failNft--
		return errors.New("injected nft failure")
	}
	return nil
}
func (f fakeNft) Resync() error { f.r.mu.Lock(); f.r.resyncs++; f.r.mu.Unlock(); return nil }
func (f fakeNft) Settle() (bool, error) {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	f.r.settles = append(f.r.settles, time.Now())
	did := f.r.generic > 0
	if f.r.settleBatch > 0 {
		f.r.generic -= min(f.r.generic, f.r.settleBatch)
	} else {
		f.r.generic = 0
	}
	if !f.r.retainedUntil.IsZero() && !time.Now().Before(f.r.retainedUntil) {
		f.r.retainedUntil, did = time.Time{}, true
	}
	return did, nil
}
func (f fakeNft) RetainedUntil() time.Time {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return f.r.retainedUntil
}
func (f fakeNft) GenericClasses() int { f.r.mu.Lock(); defer f.r.mu.Unlock(); return f.r.generic }
func (f fakeNft) Unsettled() bool     { return f.GenericClasses() > 0 }
func (f fakeNft) Close() error        { return nil }

type fakeRoute struct{ r *recorder }

func (f fakeRoute) Apply(rs route.Routes) error {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	f.r.routes = append(f.r.routes, rs)
	return nil
}
func (f fakeRoute) Resync() error {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	f.r.routeResyncs++
	if f.r.failRouteResync > 0 {
		f.r.failRouteResync--
		return errors.New("injected route resync failure")
	}
	return nil
}
func (f fakeRoute) Close() error { return nil }

func (r *recorder) newDataplanes(p Params) (PolicyDataplane, RouteDataplane, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opened++
	r.params = p
	return fakeNft{r}, fakeRoute{r}, nil
}

func (r *recorder) applies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.nft)
}

func (r *recorder) last() desired.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nft[len(r.nft)-1]
}

// harness runs an agent with a fake source and fake dataplanes.
type harness struct {
	t    *testing.T
	a    *Agent
	src  *fakeSource
	rec  *recorder
	done chan error
	sock string
}

func newHarness(t *testing.T, layers ...Layer) *harness {
	t.Helper()
	return newHarnessWith(t, nil, layers...)
}

// newHarnessWith is newHarness with the agent's Config adjusted by mut.
func newHarnessWith(t *testing.T, mut func(*Config), layers ...Layer) *harness {
	t.Helper()
	h := &harness{t: t, src: &fakeSource{ch: make(chan []datastore.Update, 100)}, rec: &recorder{}, done: make(chan error, 1)}
	h.sock = filepath.Join(t.TempDir(), "agent.sock")
	cfg := Config{
		Hostname:      "host-1",
		LocalLayers:   layers,
		SocketPath:    h.sock,
		RetryMin:      time.Millisecond,
		RetryMax:      5 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
		NewSource:     func(context.Context) (Source, error) { return h.src, nil },
		NewDataplanes: h.rec.newDataplanes,
	}
	if mut != nil {
		mut(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return h
}

func (h *harness) push(us ...datastore.Update) { h.src.ch <- us }

// waitProgrammed waits until the agent programmed revision rev.
func (h *harness) waitProgrammed(rev int64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !h.a.WaitProgrammed(ctx, rev) {
		h.t.Fatalf("revision %d not programmed; status %+v", rev, h.a.Status())
	}
}

func basicWorld(t *testing.T) []datastore.Update {
	ns := api.NamespaceProfile("ns1", nil)
	sa := api.ServiceAccountProfile("ns1", "default", nil)
	w := wep(podSpec{Namespace: "ns1", Name: "a", Node: "host-1", Iface: "cali1", IP: netip.MustParseAddr("10.65.0.1"),
		Labels: map[string]string{"app": "a"}})
	remote := remoteB("")
	return []datastore.Update{set(t, ns, 1), set(t, sa, 2), set(t, w, 3), set(t, remote, 4)}
}

func TestLoopNothingBeforeInSync(t *testing.T) {
	h := newHarness(t)
	h.push(basicWorld(t)...)
	// The channel is buffered; a second, empty batch is taken only after
	// the first was fed and the loop decided whether to apply.
	h.push()
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) && len(h.src.ch) > 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	h.rec.mu.Lock()
	opened, applied := h.rec.opened, len(h.rec.nft)
	h.rec.mu.Unlock()
	if opened != 0 || applied != 0 {
		t.Fatalf("before in-sync: dataplanes opened %d times, %d applies; want none", opened, applied)
	}
	if st := h.a.Status(); st.InSync || st.Programmed {
		t.Fatalf("status before in-sync: %+v", st)
	}
	h.push(inSync(4))
	h.waitProgrammed(4)
	if n := h.rec.applies(); n != 1 {
		t.Fatalf("applies after in-sync: %d, want 1", n)
	}
	s := h.rec.last()
	if got := slices.Sorted(s.Endpoints.Keys()); !cmp.Equal(got, []string{"cali1"}) {
		t.Errorf("endpoints %v, want [cali1] (the remote endpoint is not local)", got)
	}
	h.rec.mu.Lock()
	rs := h.rec.routes[len(h.rec.routes)-1]
	h.rec.mu.Unlock()
	want := route.Routes{"cali1": {netip.MustParsePrefix("10.65.0.1/32")}}
	if diff := cmp.Diff(want, rs, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	st := h.a.Status()
	if !st.InSync || !st.Programmed || st.LocalEndpoints != 1 || st.ProgrammedRevision != 4 {
		t.Errorf("status after in-sync: %+v", st)
	}
}

// TestLoopRoutes: routes are applied when local endpoints change, not for
// a remote endpoint's change, and again after a failed route resync.
func TestLoopRoutes(t *testing.T) {
	h := newHarness(t, Layer{"test", map[string]string{ParamRouteRefreshInterval: "0.05"}})
	routeApplies := func() int {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		return len(h.rec.routes)
	}
	h.push(append(basicWorld(t), inSync(4))...)
	h.waitProgrammed(4)
	if n := routeApplies(); n != 1 {
		t.Fatalf("route applies after the start of day: %d, want 1", n)
	}
	remote := remoteB("moved")
	h.push(set(t, remote, 5))
	h.waitProgrammed(5)
	if n := routeApplies(); n != 1 {
		t.Errorf("route applies after a remote endpoint's label change: %d, want 1", n)
	}
	local := wep(podSpec{Namespace: "ns1", Name: "c", Node: "host-1", Iface: "cali3", IP: netip.MustParseAddr("10.65.0.3")})
	h.push(set(t, local, 6))
	h.waitProgrammed(6)
	if n := routeApplies(); n != 2 {
		t.Errorf("route applies after a new local endpoint: %d, want 2", n)
	}
	h.rec.mu.Lock()
	h.rec.failRouteResync = 1
	h.rec.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for routeApplies() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no route apply after a failed route resync: %d applies", routeApplies())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLoopSettlesGenericClasses: generic classes are settled once no
// apply has run for SettleDelay, and no later than SettleMaxDelay after
// the first of them while applies keep coming.
func TestLoopSettlesGenericClasses(t *testing.T) {
	h := newHarnessWith(t, func(c *Config) { c.SettleDelay, c.SettleMaxDelay = 50*time.Millisecond, 400*time.Millisecond })
	settles := func() []time.Time {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		return slices.Clone(h.rec.settles)
	}
	waitSettles := func(n int) []time.Time {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(settles()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d settles, want %d", len(settles()), n)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return settles()
	}
	h.push(append(basicWorld(t), inSync(4))...)
	h.waitProgrammed(4)
	time.Sleep(120 * time.Millisecond)
	if n := len(settles()); n != 0 {
		t.Fatalf("%d settles with no generic class, want 0", n)
	}

	// Quiet after one apply that left generic classes: settled after
	// SettleDelay.
	h.rec.mu.Lock()
	h.rec.genericPerApply = 3
	h.rec.mu.Unlock()
	remote := remoteB("x")
	h.push(set(t, remote, 5))
	h.waitProgrammed(5)
	applied := time.Now()
	if got := waitSettles(1)[0].Sub(applied); got < 40*time.Millisecond {
		t.Errorf("settled %s after the apply, want about SettleDelay (50ms)", got)
	}
	if v := testutil.ToFloat64(h.a.m.genericClasses); v != 0 {
		t.Errorf("brindle_nft_generic_classes %v after settling, want 0", v)
	}
	if h.a.Status().Unsettled {
		t.Error("Status.Unsettled after settling")
	}

	// Busy: an apply every 20ms never leaves SettleDelay of quiet, but
	// SettleMaxDelay bounds the wait.
	first := time.Time{}
	rev := int64(6)
	for end := time.Now().Add(900 * time.Millisecond); time.Now().Before(end); rev++ {
		remote.Labels["app"] = fmt.Sprintf("x%d", rev)
		h.push(set(t, remote, rev))
		h.waitProgrammed(rev)
		if first.IsZero() {
			first = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := settles()
	if len(got) < 2 {
		t.Fatalf("no settle while applies kept coming for 900ms (SettleMaxDelay 400ms)")
	}
	if d := got[1].Sub(first); d > 700*time.Millisecond {
		t.Errorf("the first settle under load came %s after the first generic class, want about SettleMaxDelay (400ms)", d)
	}
}

// TestLoopSettleBatchesFollowApplies: when SettleMaxDelay forces a
// settle that takes several batches while applies keep coming, each
// batch runs right after an apply (the loop has just gone idle), never
// on a timer of its own between two applies, where it would delay the
// second; once the applies stop, the rest follow within SettleDelay.
func TestLoopSettleBatchesFollowApplies(t *testing.T) {
	// SettleDelay is long, so that a stall of the test under load does
	// not look like a quiet host.
	h := newHarnessWith(t, func(c *Config) { c.SettleDelay, c.SettleMaxDelay = time.Second, 100*time.Millisecond })
	h.push(append(basicWorld(t), inSync(4))...)
	h.waitProgrammed(4)
	h.rec.mu.Lock()
	h.rec.genericPerApply, h.rec.settleBatch = 50, 1
	h.rec.mu.Unlock()
	remote := remoteB("x")
	rev := int64(5)
	for end := time.Now().Add(800 * time.Millisecond); time.Now().Before(end); rev++ {
		remote.Labels["app"] = fmt.Sprintf("x%d", rev)
		h.push(set(t, remote, rev))
		h.waitProgrammed(rev)
		time.Sleep(40 * time.Millisecond)
	}
	stopped := time.Now()
	h.rec.mu.Lock()
	applied, settles := slices.Clone(h.rec.applied), slices.Clone(h.rec.settles)
	h.rec.mu.Unlock()
	if len(settles) < 3 {
		t.Fatalf("%d settles in 800ms of applies every 40ms (SettleMaxDelay 100ms), want at least 3", len(settles))
	}
	for i, s := range settles {
		// The last apply before this settle, and whether another
		// settle came after it before s.
		j, _ := slices.BinarySearchFunc(applied, s, func(a, s time.Time) int { return a.Compare(s) })
		if j == 0 {
			t.Fatalf("settle %d at %s came before any apply", i, s.Format("05.000"))
		}
		if d := s.Sub(applied[j-1]); d > 35*time.Millisecond {
			t.Errorf("settle %d came %s after the last apply, want right after it", i, d)
		}
		if i > 0 && settles[i-1].After(applied[j-1]) {
			t.Errorf("settles %d and %d both between the applies at %s and after", i-1, i, applied[j-1].Format("05.000"))
		}
	}
	// Quiet now: the rest in batches, SettleDelay after the last apply.
	for deadline := stopped.Add(10 * time.Second); h.a.Status().Unsettled; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still unsettled 10s after the applies stopped")
		}
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("settled %s after the applies stopped, want about SettleDelay (1s) and a batch every 5ms", d)
	}
}

// TestLoopReleasesRetainedPolicies: with no generic class but a policy
// the nftables dataplane retains, the loop settles when it is due (not
// sooner than SettleDelay), once, and not again with nothing retained.
func TestLoopReleasesRetainedPolicies(t *testing.T) {
	h := newHarnessWith(t, func(c *Config) { c.SettleDelay, c.SettleMaxDelay = 50*time.Millisecond, 400*time.Millisecond })
	h.push(append(basicWorld(t), inSync(4))...)
	h.waitProgrammed(4)
	h.rec.mu.Lock()
	h.rec.retainFor = 300 * time.Millisecond
	h.rec.mu.Unlock()
	remote := remoteB("x")
	h.push(set(t, remote, 5))
	h.waitProgrammed(5)
	applied := time.Now()
	h.rec.mu.Lock()
	h.rec.retainFor = 0
	h.rec.mu.Unlock()
	var settles []time.Time
	for deadline := time.Now().Add(5 * time.Second); len(settles) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no settle within 5s of a retained policy being due in 300ms")
		}
		h.rec.mu.Lock()
		settles = slices.Clone(h.rec.settles)
		h.rec.mu.Unlock()
	}
	if d := settles[0].Sub(applied); d < 250*time.Millisecond {
		t.Errorf("settled %s after the apply, want once the retained policy is due (300ms)", d)
	}
	time.Sleep(200 * time.Millisecond)
	h.rec.mu.Lock()
	n, until := len(h.rec.settles), h.rec.retainedUntil
	h.rec.mu.Unlock()
	if n != 1 || !until.IsZero() {
		t.Errorf("%d settles, retained until %v; want one settle that released it", n, until)
	}
}

func TestLoopBatchesWhileApplying(t *testing.T) {
	h := newHarness(t)
	h.push(append(basicWorld(t), inSync(4))...)
	h.waitProgrammed(4)
	if st := h.a.Status(); st.LastUpdateToProgrammed != 0 {
		t.Errorf("update-to-programmed after the start of day: %v, want none (the start of day is not a change)", st.LastUpdateToProgrammed)
	}

	gate, entered := make(chan struct{}), make(chan struct{}, 10)
	h.rec.mu.Lock()
	h.rec.gate, h.rec.entered = gate, entered
	h.rec.mu.Unlock()
	// First change: its apply blocks on the gate.
	w := wep(podSpec{Namespace: "ns1", Name: "c", Node: "host-1", Iface: "cali3", IP: netip.MustParseAddr("10.65.0.3")})
	h.push(set(t, w, 5))
	<-entered
	// Five more changes arrive while that apply runs.
	for i := range 5 {
		w := wep(podSpec{Namespace: "ns1", Name: "d", Node: "host-1", Iface: "cali4", IP: netip.MustParseAddr("10.65.0.4"),
			Labels: map[string]string{"gen": string(rune('a' + i))}})
		u := set(t, w, int64(6+i))
		u.Received = time.Now() // as the datastore watcher stamps it
		h.push(u)
	}
	const held = 30 * time.Millisecond
	time.Sleep(held)
	gate <- struct{}{} // release the apply of revision 5
	gate <- struct{}{} // and exactly one more, for revisions 6-10
	h.waitProgrammed(10)
	// Both applies waited at least as long as the gate was held: revision
	// 5's for the whole of it, revisions 6-10's from their arrival.
	if st := h.a.Status(); st.LastUpdateToProgrammed < held {
		t.Errorf("update-to-programmed of revisions 6-10: %v, want at least %v", st.LastUpdateToProgrammed, held)
	}
	var hm dto.Metric
	if err := h.a.m.updateToProgrammed.Write(&hm); err != nil {
		t.Fatal(err)
	}
	if n, sum := hm.GetHistogram().GetSampleCount(), hm.GetHistogram().GetSampleSum(); n != 2 || sum < 2*held.Seconds() {
		t.Errorf("brindle_update_to_programmed_seconds: %d samples, sum %.3fs; want 2 applies, at least %.3fs", n, sum, 2*held.Seconds())
	}
	h.rec.mu.Lock()
	h.rec.gate, h.rec.entered = nil, nil
	h.rec.mu.Unlock()
	if n := h.rec.applies(); n != 3 {
		t.Fatalf("applies: %d, want 3 (initial, revision 5, one for the five queued changes)", n)
	}
	if eps := h.rec.last().Endpoints; eps.Len() != 3 {
		t.Errorf("last applied state has %d endpoints, want 3", eps.Len())
	}
}

func TestLoopRetriesFailedApply(t *testing.T) {
	h := newHarness(t)
	h.rec.mu.Lock()
	h.rec.failNft = 2
	h.rec.mu.Unlock()
	h.push(append(basicWorld(t), inSync(4))...)
	h.waitProgrammed(4)
	if n := h.rec.applies(); n != 3 {
		t.Errorf("applies: %d, want 3 (two failures, then success)", n)
	}
	st := h.a.Status()
	if st.ApplyErrors != 2 || st.LastApplyError != "" || !st.Programmed {
		t.Errorf("status: %+v; want 2 apply errors, programmed, no last error", st)
	}
	if got := counterValue(t, h.a.m.applyErrors.WithLabelValues(dataplaneNft)); got != 2 {
		t.Errorf("brindle_apply_errors_total{dataplane=nft} = %v, want 2", got)
	}
}

func TestLoopConfigFromFelixConfiguration(t *testing.T) {
	h := newHarness(t)
	fc := objects(t, `
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept, interfacePrefix: cali}
`)[0]
	h.push(append(basicWorld(t), set(t, fc, 5), inSync(5))...)
	h.waitProgrammed(5)
	if got := h.rec.last().Config.DefaultEndpointToHostAction; got != desired.EndpointToHostAccept {
		t.Fatalf("endpoint-to-host action %v, want Accept", got)
	}
	// A live change: node.host-1 says Return.
	node := objects(t, `
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: node.host-1}
spec: {defaultEndpointToHostAction: Return}
`)[0]
	h.push(set(t, node, 6))
	h.waitProgrammed(6)
	if got := h.rec.last().Config.DefaultEndpointToHostAction; got != desired.EndpointToHostReturn {
		t.Fatalf("after node config: endpoint-to-host action %v, want Return", got)
	}
	// A restart-required change ends Run with ErrRestart.
	fc2 := objects(t, `
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept, interfacePrefix: tap}
`)[0]
	h.push(set(t, fc2, 7))
	select {
	case err := <-h.done:
		if !errors.Is(err, ErrRestart) {
			t.Fatalf("Run returned %v, want ErrRestart", err)
		}
		h.done <- err // for cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after an interfacePrefix change")
	}
}

func TestLoopLocalLayerBeatsDatastore(t *testing.T) {
	h := newHarness(t, Layer{Name: "environment", Values: map[string]string{"DefaultEndpointToHostAction": "Drop"}})
	fc := objects(t, `
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {defaultEndpointToHostAction: Accept}
`)[0]
	h.push(append(basicWorld(t), set(t, fc, 5), inSync(5))...)
	h.waitProgrammed(5)
	if got := h.rec.last().Config.DefaultEndpointToHostAction; got != desired.EndpointToHostDrop {
		t.Fatalf("endpoint-to-host action %v, want Drop (environment beats the datastore)", got)
	}
}

func TestLocalAPI(t *testing.T) {
	h := newHarness(t)
	c := NewClient(h.sock)
	ctx := context.Background()
	// The socket is up before in-sync; the endpoint is not ready.
	var r EndpointReady
	var err error
	for i := 0; i < 100; i++ {
		if r, err = c.EndpointReady(ctx, "ns1", "a", 0, 20*time.Millisecond); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil || r.Ready {
		t.Fatalf("before in-sync: %+v, %v; want not ready", r, err)
	}
	if r.Reason == "" {
		t.Errorf("not-ready answer has no reason")
	}
	// A waiter that starts now returns once the endpoint is programmed.
	type res struct {
		r   EndpointReady
		err error
	}
	waiting := make(chan res, 1)
	go func() {
		r, err := c.EndpointReady(ctx, "ns1", "a", 3, 10*time.Second)
		waiting <- res{r, err}
	}()
	time.Sleep(20 * time.Millisecond)
	h.push(append(basicWorld(t), inSync(4))...)
	got := <-waiting
	if got.err != nil || !got.r.Ready || got.r.Interface != "cali1" || got.r.ProgrammedRevision < 3 {
		t.Fatalf("waiter: %+v, %v; want ready on cali1 at revision >= 3", got.r, got.err)
	}
	// A remote endpoint never becomes ready here.
	if r, err := c.EndpointReady(ctx, "ns1", "b", 0, 30*time.Millisecond); err != nil || r.Ready {
		t.Errorf("remote endpoint: %+v, %v; want not ready", r, err)
	}
	// A revision not yet programmed is not ready.
	if r, err := c.EndpointReady(ctx, "ns1", "a", 99, 30*time.Millisecond); err != nil || r.Ready {
		t.Errorf("future revision: %+v, %v; want not ready", r, err)
	}
	if _, err := c.EndpointReady(ctx, "ns1", "a", 0, time.Hour); err == nil {
		t.Errorf("timeout of an hour: want a bad-request error")
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.InSync || !st.Programmed || st.LocalEndpoints != 1 || st.Hostname != "host-1" {
		t.Errorf("status: %+v", st)
	}
	if st.Config[ParamInterfacePrefix] != "cali (default)" {
		t.Errorf("status config InterfacePrefix = %q, want \"cali (default)\"", st.Config[ParamInterfacePrefix])
	}
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// settle waits until the loop has taken every queued batch and decided
// whether to apply: an empty batch is taken only after the one before it.
func (h *harness) settle() {
	h.t.Helper()
	h.push()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.src.ch) > 0 {
		if time.Now().After(deadline) {
			h.t.Fatal("the loop did not take its queued batches")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}

func clusterInfo(t *testing.T, ready bool) api.Object {
	return objects(t, fmt.Sprintf(`
apiVersion: projectcalico.org/v3
kind: ClusterInformation
metadata: {name: default}
spec: {datastoreReady: %t}
`, ready))[0]
}

// TestLoopDatastoreNotReady: ClusterInformation datastoreReady: false
// pauses programming (nothing opened, applied or resynced; /readyz 503)
// until it is true again or the object goes; then the current state is
// applied at once.
func TestLoopDatastoreNotReady(t *testing.T) {
	h := newHarness(t)
	readyz := func() int {
		rec := httptest.NewRecorder()
		h.a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	counts := func() (opened, applies int) {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		return h.rec.opened, len(h.rec.nft)
	}
	h.push(append(basicWorld(t), set(t, clusterInfo(t, false), 5), inSync(5))...)
	h.settle()
	if o, n := counts(); o != 0 || n != 0 {
		t.Fatalf("not ready at start: dataplanes opened %d times, %d applies; want none", o, n)
	}
	if st := h.a.Status(); !st.InSync || !st.DatastoreNotReady || st.Programmed {
		t.Fatalf("status while not ready: %+v", st)
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while not ready: %d, want 503", code)
	}
	if got := gaugeValue(t, h.a.m.datastoreNotReady); got != 1 {
		t.Errorf("brindle_datastore_not_ready = %v, want 1", got)
	}

	h.push(set(t, clusterInfo(t, true), 6))
	h.waitProgrammed(6)
	if _, n := counts(); n != 1 {
		t.Fatalf("applies after ready: %d, want 1", n)
	}
	if st := h.a.Status(); st.DatastoreNotReady || readyz() != http.StatusOK {
		t.Fatalf("after ready: status %+v, /readyz %d", st, readyz())
	}

	// Paused again: a new local endpoint is not programmed.
	h.push(set(t, clusterInfo(t, false), 7))
	w := wep(podSpec{Namespace: "ns1", Name: "c", Node: "host-1", Iface: "cali3", IP: netip.MustParseAddr("10.65.0.3")})
	h.push(set(t, w, 8))
	h.settle()
	if _, n := counts(); n != 1 {
		t.Fatalf("applies while paused: %d, want still 1", n)
	}
	if st := h.a.Status(); st.ProgrammedRevision != 6 || st.Programmed || !st.DatastoreNotReady {
		t.Fatalf("status while paused: %+v", st)
	}

	// Deleting the ClusterInformation counts as ready.
	h.push(del(KindClusterInformation, "", "default", 9))
	h.waitProgrammed(9)
	if eps := h.rec.last().Endpoints; eps.Len() != 2 {
		t.Errorf("after resuming: %d endpoints applied, want 2", eps.Len())
	}
	if got := gaugeValue(t, h.a.m.datastoreNotReady); got != 0 {
		t.Errorf("brindle_datastore_not_ready = %v, want 0", got)
	}
}

func gaugeValue(t *testing.T, g interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestLoopStreamEnd: a datastore stream that closes on its own is an
// error; one that closes because Run's context ended (the watch shares
// it, so the channel may close before the loop sees ctx.Done) is a clean
// stop.
func TestLoopStreamEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if err := streamEnded(ctx); err == nil || !strings.Contains(err.Error(), "stream ended") {
		t.Errorf("live context: %v, want a stream-ended error", err)
	}
	cancel()
	if err := streamEnded(ctx); err != nil {
		t.Errorf("cancelled context: %v, want nil", err)
	}

	for _, cancelFirst := range []bool{false, true} {
		src := &fakeSource{ch: make(chan []datastore.Update)}
		a, err := New(Config{
			Hostname: "host-1", Logger: slog.New(slog.DiscardHandler),
			NewSource: func(context.Context) (Source, error) { return src, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		if cancelFirst {
			cancel()
		}
		close(src.ch)
		select {
		case err := <-done:
			if cancelFirst && err != nil {
				t.Errorf("stream closed after cancel: Run = %v, want nil", err)
			}
			if !cancelFirst && (err == nil || !strings.Contains(err.Error(), "stream ended")) {
				t.Errorf("stream closed by itself: Run = %v, want a stream-ended error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		cancel()
	}
}

// remoteB is basicWorld's endpoint on another host, with label app=app
// (none when empty).
func remoteB(app string) *api.WorkloadEndpoint {
	var labels map[string]string
	if app != "" {
		labels = map[string]string{"app": app}
	}
	return wep(podSpec{Namespace: "ns1", Name: "b", Node: "host-2", Iface: "cali2", IP: netip.MustParseAddr("10.65.0.2"), Labels: labels})
}
