package datastore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/google/go-cmp/cmp"
)

// line renders an update for comparison.
func line(u datastore.Update) string {
	switch {
	case u.Type == datastore.UpdateInSync:
		return "in-sync"
	case u.Err != nil:
		return fmt.Sprintf("%s %s (error)", u.Type, u.Key)
	case u.Kind == "":
		return fmt.Sprintf("%s %s %q", u.Type, u.Key, u.Value)
	case u.Object != nil:
		return fmt.Sprintf("%s %s %s/%s sel=%s", u.Type, u.Kind, u.Namespace, u.Name, selectorOf(u.Object))
	}
	return fmt.Sprintf("%s %s %s/%s", u.Type, u.Kind, u.Namespace, u.Name)
}

func selectorOf(o api.Object) string {
	switch o := o.(type) {
	case *api.GlobalNetworkPolicy:
		return o.Spec.Selector
	case *api.NetworkPolicy:
		return o.Spec.Selector
	}
	return ""
}

// collect reads updates until n have arrived (or fails after a timeout).
func collect(t *testing.T, w *datastore.Watcher, n int) []datastore.Update {
	t.Helper()
	var got []datastore.Update
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case b, ok := <-w.Updates():
			if !ok {
				t.Fatalf("stream closed after %d updates", len(got))
			}
			got = append(got, b...)
		case <-timeout:
			t.Fatalf("got %d updates, want %d: %v", len(got), n, lines(got))
		}
	}
	if len(got) > n {
		t.Fatalf("got %d updates, want %d: %v", len(got), n, lines(got))
	}
	return got
}

func lines(us []datastore.Update) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = line(u)
	}
	return out
}

// checkOrdered fails if revisions go backwards after the in-sync marker.
func checkOrdered(t *testing.T, us []datastore.Update) {
	t.Helper()
	var last int64
	synced := false
	for _, u := range us {
		if u.Type == datastore.UpdateInSync {
			synced, last = true, u.Revision
			continue
		}
		if synced && u.Revision <= last {
			t.Fatalf("revision %d after %d: stream not ordered", u.Revision, last)
		}
		if synced {
			last = u.Revision
		}
	}
}

func TestWatchSnapshotInSyncThenChanges(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	for _, name := range []string{"b", "a"} {
		if _, err := c.Create(ctx, gnp(name, "v == '1'")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Create(ctx, newObj(kind(t, "Tier"), "", "not-watched")); err != nil {
		t.Fatal(err)
	}
	raw := c.Raw()
	if _, err := raw.Create(ctx, "/calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26", []byte(`{"state":"confirmed"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(ctx, "/calico/ipam/v2/handle/h1", []byte("{}")); err != nil {
		t.Fatal(err)
	}

	w, err := c.Watch(ctx, datastore.WatchOptions{
		Kinds:       []api.KindInfo{kind(t, "GlobalNetworkPolicy"), kind(t, "NetworkPolicy")},
		RawPrefixes: []string{"/calico/ipam/v2/host/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	snap := collect(t, w, 4)
	want := []string{
		`set GlobalNetworkPolicy /a sel=v == '1'`,
		`set GlobalNetworkPolicy /b sel=v == '1'`,
		`set /calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26 "{\"state\":\"confirmed\"}"`,
		"in-sync",
	}
	// Snapshot order across prefixes is key order per prefix; compare as
	// a set, then check in-sync is last.
	if diff := cmp.Diff(sorted(want[:3]), sorted(lines(snap[:3]))); diff != "" || line(snap[3]) != "in-sync" {
		t.Fatalf("snapshot (-want +got):\n%s\n%v", diff, lines(snap))
	}
	for _, u := range snap {
		if u.Object != nil && u.Object.GetResourceVersion() != fmt.Sprint(u.Revision) {
			t.Errorf("snapshot object %s has resourceVersion %q, revision %d", u.Name, u.Object.GetResourceVersion(), u.Revision)
		}
	}

	for _, u := range snap {
		if !u.Received.IsZero() {
			t.Errorf("snapshot update %s has a receive time", line(u))
		}
	}

	// Changes across kinds arrive in revision order, each stamped with
	// when the watcher received it.
	changesFrom := time.Now()
	a, _ := c.Get(ctx, kind(t, "gnp"), "", "a")
	a.(*api.GlobalNetworkPolicy).Spec.Selector = "v == '2'"
	if _, err := c.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(ctx, "/calico/ipam/v2/handle/h2", []byte("{}")); err != nil { // not watched
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, manyPolicies(1)[0]); err != nil {
		t.Fatal(err)
	}
	if err := raw.Delete(ctx, "/calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, kind(t, "gnp"), "", "b", ""); err != nil {
		t.Fatal(err)
	}
	got := collect(t, w, 4)
	want = []string{
		`set GlobalNetworkPolicy /a sel=v == '2'`,
		`set NetworkPolicy ns-0/allow-00000 sel=app == 'svc-0'`,
		`delete /calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26 ""`,
		`delete GlobalNetworkPolicy /b`,
	}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	for _, u := range got {
		if u.Received.Before(changesFrom) || u.Received.After(time.Now()) {
			t.Errorf("change %s: received %v, want between the first write (%v) and now", line(u), u.Received, changesFrom)
		}
	}
	checkOrdered(t, append(snap, got...))
}

func sorted(ss []string) []string {
	out := append([]string(nil), ss...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestWatchUndecodableValueIsReportedAsDelete(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	w, err := c.Watch(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	collect(t, w, 1) // in-sync
	key, _ := datastore.Key(kind(t, "gnp"), "", "broken")
	if _, err := c.Raw().Create(ctx, key, []byte(`{"spec": {"selector": 42}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, gnp("fine", "")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, w, 2)
	if got[0].Type != datastore.UpdateDelete || got[0].Err == nil || got[0].Name != "broken" {
		t.Fatalf("bad value gave %v (err %v), want a delete with an error", line(got[0]), got[0].Err)
	}
	if line(got[1]) != "set GlobalNetworkPolicy /fine sel=" {
		t.Fatalf("stream did not go on after the bad value: %v", line(got[1]))
	}
}

// TestWatchSlowConsumer writes while the consumer reads nothing; every
// update must still arrive, in order.
func TestWatchSlowConsumer(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	w, err := c.Watch(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "NetworkPolicy")}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	collect(t, w, 1)
	const n = 2000
	if _, err := c.WriteBatch(ctx, datastore.OpApply, manyPolicies(n)); err != nil {
		t.Fatal(err)
	}
	// Then each policy once more, one write each for a few.
	for i := range 50 {
		p := manyPolicies(i + 1)[i].(*api.NetworkPolicy)
		p.Spec.Selector = "changed == 'yes'"
		if _, err := c.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // let the backlog build up
	got := collect(t, w, n+50)
	checkOrdered(t, got)
	for i, u := range got[n:] {
		if u.Type != datastore.UpdateSet || u.Name != fmt.Sprintf("allow-%05d", i) || selectorOf(u.Object) != "changed == 'yes'" {
			t.Fatalf("update %d = %s", n+i, line(u))
		}
	}
}

// TestWatchResumesAfterRestart stops and restarts the member under a
// running watch: no update may be lost or repeated.
func TestWatchResumesAfterRestart(t *testing.T) {
	m := datastoretest.New(t)
	ctx := context.Background()
	w, err := m.Client.Watch(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	collect(t, w, 1)
	if _, err := m.Client.Create(ctx, gnp("before", "")); err != nil {
		t.Fatal(err)
	}
	collect(t, w, 1)

	m.Restart()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, name := range []string{"after-1", "after-2"} {
		for {
			_, err := m.Client.Create(wctx, gnp(name, ""))
			if err == nil {
				break
			}
			if wctx.Err() != nil {
				t.Fatalf("writing after restart: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	got := collect(t, w, 2)
	if diff := cmp.Diff([]string{"set GlobalNetworkPolicy /after-1 sel=", "set GlobalNetworkPolicy /after-2 sel="}, lines(got)); diff != "" {
		t.Fatalf("after restart (-want +got):\n%s", diff)
	}
	// Nothing more (e.g. a replayed "before").
	select {
	case b := <-w.Updates():
		t.Fatalf("unexpected extra updates %v", lines(b))
	case <-time.After(300 * time.Millisecond):
	}
}

// compactedResumeClient stores three policies and returns a client whose
// first watch, between its list and its watch, changes one, deletes one,
// creates one and compacts history, so that the watch must re-list.
func compactedResumeClient(t *testing.T) (m *datastoretest.Member, wc *datastore.Client) {
	t.Helper()
	m = datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	for _, n := range []string{"keep", "change", "remove"} {
		if _, err := c.Create(ctx, gnp(n, "v == '1'")); err != nil {
			t.Fatal(err)
		}
	}
	wc = m.Connect(datastore.Config{})
	first := true
	datastore.SetBeforeWatch(wc, func(rev int64) {
		if !first {
			return
		}
		first = false
		ch, _ := c.Get(ctx, kind(t, "gnp"), "", "change")
		ch.(*api.GlobalNetworkPolicy).Spec.Selector = "v == '2'"
		if _, err := c.Update(ctx, ch); err != nil {
			t.Error(err)
		}
		if _, err := c.Delete(ctx, kind(t, "gnp"), "", "remove", ""); err != nil {
			t.Error(err)
		}
		if _, err := c.Create(ctx, gnp("new", "v == '3'")); err != nil {
			t.Error(err)
		}
		cur, _ := c.Revision(ctx)
		if err := c.Compact(ctx, cur); err != nil {
			t.Error(err)
		}
	})
	return m, wc
}

// checkCompactedResume reads the snapshot of w, started on a
// compactedResumeClient, and then exactly the difference the re-list found.
func checkCompactedResume(t *testing.T, w *datastore.Watcher) {
	t.Helper()
	snap := collect(t, w, 4)
	if line(snap[3]) != "in-sync" {
		t.Fatalf("snapshot %v", lines(snap))
	}
	got := collect(t, w, 3)
	want := []string{
		"set GlobalNetworkPolicy /change sel=v == '2'",
		"set GlobalNetworkPolicy /new sel=v == '3'",
		"delete GlobalNetworkPolicy /remove",
	}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Fatalf("resync (-want +got):\n%s", diff)
	}
}

// TestWatchCompactedResumeRelists holds a watcher between its list and its
// watch while the keys change and history is compacted: it must re-list and
// deliver exactly the difference.
func TestWatchCompactedResumeRelists(t *testing.T) {
	m, wc := compactedResumeClient(t)
	c, ctx := m.Client, context.Background()
	w, err := wc.Watch(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	checkCompactedResume(t, w)
	// And the watch goes on after the re-list.
	if _, err := c.Delete(ctx, kind(t, "gnp"), "", "keep", ""); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, w, 1); line(got[0]) != "delete GlobalNetworkPolicy /keep" {
		t.Fatalf("after resync: %v", lines(got))
	}
}

func TestRawKV(t *testing.T) {
	m := datastoretest.New(t)
	raw := m.Client.Raw()
	ctx := context.Background()
	const key = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
	rev, err := raw.Create(ctx, key, []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(ctx, key, []byte("again")); !isErr(err, datastore.ErrAlreadyExists) {
		t.Fatalf("second create: %v", err)
	}
	kv, err := raw.Get(ctx, key)
	if err != nil || string(kv.Value) != "v1" || kv.ModRevision != rev {
		t.Fatalf("Get = %+v, %v", kv, err)
	}
	rev2, err := raw.Update(ctx, key, []byte("v2"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Update(ctx, key, []byte("stale"), rev); !isErr(err, datastore.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	ok, _, err := raw.Txn(ctx,
		[]datastore.Cond{{Key: key, ModRevision: rev2}, {Key: "/calico/ipam/v2/handle/h", ModRevision: 0}},
		[]datastore.RawOp{{Key: key, Value: []byte("v3")}, {Key: "/calico/ipam/v2/handle/h", Value: []byte("h")}})
	if err != nil || !ok {
		t.Fatalf("txn: %v %v", ok, err)
	}
	ok, _, err = raw.Txn(ctx, []datastore.Cond{{Key: key, ModRevision: rev2}}, []datastore.RawOp{{Key: key, Delete: true}})
	if err != nil || ok {
		t.Fatalf("txn with a stale condition: ok=%v %v; want not ok", ok, err)
	}
	kvs, _, err := raw.List(ctx, "/calico/ipam/v2/")
	if err != nil || len(kvs) != 2 || string(kvs[0].Value) != "v3" || string(kvs[1].Value) != "h" {
		t.Fatalf("List = %+v, %v", kvs, err)
	}
	if err := raw.Delete(ctx, key, rev2); !isErr(err, datastore.ErrConflict) {
		t.Fatalf("stale delete: %v", err)
	}
	if err := raw.Delete(ctx, key, 0); err != nil {
		t.Fatal(err)
	}
	if err := raw.Delete(ctx, key, 0); !isErr(err, datastore.ErrNotFound) {
		t.Fatalf("delete of missing: %v", err)
	}
}
