package routing

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/google/go-cmp/cmp"
)

// fakeSource is a Source fed by the test.
type fakeSource struct{ ch chan []datastore.Update }

func (f *fakeSource) Updates() <-chan []datastore.Update { return f.ch }
func (f *fakeSource) Stop()                              {}

// recorder is the daemon's apply, recording every Desired.
type recorder struct {
	mu   sync.Mutex
	got  []Desired
	fail atomic.Int32 // fail this many more applies
}

func (r *recorder) apply(d Desired) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
	if r.fail.Load() > 0 {
		r.fail.Add(-1)
		return errors.New("injected")
	}
	return nil
}

func (r *recorder) applied() []Desired {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Desired(nil), r.got...)
}

func nodeUpdate(name, ip string) datastore.Update {
	n := node(name, ip, nil)
	return datastore.Update{Type: datastore.UpdateSet, Kind: "Node", Name: name, Object: &n}
}

// startTestDaemon runs the daemon's loop on a fake source with a recording
// apply; no speaker, no kernel.
func startTestDaemon(t *testing.T, ready func() bool) (*Daemon, *fakeSource, *recorder) {
	t.Helper()
	d, err := NewDaemon(DaemonConfig{NodeName: "a", NewSource: func(context.Context) (Source, error) { return nil, nil }, Debounce: 20 * time.Millisecond, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{ch: make(chan []datastore.Update)}
	rec := &recorder{}
	d.src, d.apply = src, rec.apply
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, src, rec
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDaemonAppliesOnlyWhenInSync: nothing before the snapshot is
// complete; then one apply; a burst of changes is one more apply; an
// unchanged plan is not applied again.
func TestDaemonAppliesOnlyWhenInSync(t *testing.T) {
	d, src, rec := startTestDaemon(t, nil)
	src.ch <- []datastore.Update{nodeUpdate("a", "10.0.0.1"), nodeUpdate("b", "10.0.0.2"), set(aff+"10.244.1.0-26", conf)}
	time.Sleep(100 * time.Millisecond)
	if n := len(rec.applied()); n != 0 {
		t.Fatalf("%d applies before in-sync", n)
	}
	if st := d.Status(); st.State != "waiting for datastore" {
		t.Errorf("state before in-sync: %q", st.State)
	}
	src.ch <- []datastore.Update{{Type: datastore.UpdateInSync, Revision: 7}}
	waitFor(t, "first apply", func() bool { return len(rec.applied()) == 1 })
	first := rec.applied()[0]
	want := mustPlan(t, Inputs{NodeName: "a", Nodes: []api.Node{node("a", "10.0.0.1", nil), node("b", "10.0.0.2", nil)}, Blocks: pfxs("10.244.1.0/26")})
	if diff := cmp.Diff(want, first, cmpNetip); diff != "" {
		t.Errorf("first Desired (-want +got)\n%s", diff)
	}
	// A burst within the debounce: one apply with the end result.
	src.ch <- []datastore.Update{set(aff+"10.244.2.0-26", conf)}
	src.ch <- []datastore.Update{set(aff+"10.244.3.0-26", conf)}
	src.ch <- []datastore.Update{del(aff + "10.244.2.0-26")}
	waitFor(t, "second apply", func() bool { return len(rec.applied()) == 2 })
	time.Sleep(100 * time.Millisecond)
	got := rec.applied()
	if len(got) != 2 {
		t.Fatalf("%d applies after the burst, want 2", len(got))
	}
	if diff := cmp.Diff(pfxs("10.244.1.0/26", "10.244.3.0/26"), got[1].Prefixes, cmpNetip); diff != "" {
		t.Errorf("prefixes after the burst (-want +got)\n%s", diff)
	}
	// A change that plans the same: no apply.
	src.ch <- []datastore.Update{set(aff+"10.244.1.0-26", `{"state":"confirmed"}`)}
	time.Sleep(100 * time.Millisecond)
	if n := len(rec.applied()); n != 2 {
		t.Errorf("%d applies after a no-op change, want 2", n)
	}
	st := d.Status()
	if st.State != "running" || st.Applies != 2 || st.Desired == nil || len(st.Desired.Peers) != 1 {
		t.Errorf("status: %+v", st)
	}
	// The HTTP handler serves the same status.
	rr := httptest.NewRecorder()
	d.ServeHTTP(rr, httptest.NewRequest("GET", StatusPath, nil))
	var served DaemonStatus
	if err := json.Unmarshal(rr.Body.Bytes(), &served); err != nil {
		t.Fatalf("decode %s: %v", rr.Body.String(), err)
	}
	if served.State != "running" || served.Node != "a" || served.Desired == nil || served.Desired.Peers[0].Name != "Mesh_10_0_0_2" {
		t.Errorf("served status: %+v", served)
	}
}

// TestDaemonWaitsForReady: in sync but Ready false → nothing; Ready true →
// apply.
func TestDaemonWaitsForReady(t *testing.T) {
	var ready atomic.Bool
	d, src, rec := startTestDaemon(t, ready.Load)
	src.ch <- []datastore.Update{nodeUpdate("a", "10.0.0.1"), {Type: datastore.UpdateInSync}}
	time.Sleep(300 * time.Millisecond)
	if n := len(rec.applied()); n != 0 {
		t.Fatalf("%d applies before Ready", n)
	}
	if st := d.Status(); st.State != "waiting for policy" {
		t.Errorf("state: %q", st.State)
	}
	ready.Store(true)
	waitFor(t, "apply after Ready", func() bool { return len(rec.applied()) == 1 })
}

// TestDaemonRetriesFailedApply: a failed apply is retried (same Desired)
// until it succeeds; the status shows the error meanwhile.
func TestDaemonRetriesFailedApply(t *testing.T) {
	d, src, rec := startTestDaemon(t, nil)
	rec.fail.Store(1)
	src.ch <- []datastore.Update{nodeUpdate("a", "10.0.0.1"), {Type: datastore.UpdateInSync}}
	waitFor(t, "first apply", func() bool { return len(rec.applied()) == 1 })
	waitFor(t, "status shows the error", func() bool { return d.Status().LastApplyError == "injected" })
	waitFor(t, "retry", func() bool { return len(rec.applied()) == 2 })
	got := rec.applied()
	if diff := cmp.Diff(got[0], got[1], cmpNetip); diff != "" {
		t.Errorf("retry applied something else (-first +retry)\n%s", diff)
	}
	waitFor(t, "error cleared", func() bool { st := d.Status(); return st.LastApplyError == "" && st.ApplyErrors == 1 })
}

// TestDaemonOffWithoutNodeIP: a node without spec.bgp.ipv4Address applies
// a disabled Desired and says why.
func TestDaemonOffWithoutNodeIP(t *testing.T) {
	d, src, rec := startTestDaemon(t, nil)
	n := api.Node{}
	n.Name = "a"
	src.ch <- []datastore.Update{{Type: datastore.UpdateSet, Kind: "Node", Name: "a", Object: &n}, {Type: datastore.UpdateInSync}}
	waitFor(t, "apply", func() bool { return len(rec.applied()) == 1 })
	st := d.Status()
	if st.State != "off" || st.Reason != "Node a: spec.bgp.ipv4Address is not set; BGP is off" || rec.applied()[0].Enabled {
		t.Errorf("status: %+v", st)
	}
}
