package datastore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/google/go-cmp/cmp"
)

// revLines renders updates with their revisions, for exact comparison of
// two streams.
func revLines(us []datastore.Update) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = fmt.Sprintf("%s @%d", line(u), u.Revision)
	}
	return out
}

// gather reads n updates from w; safe to call from any goroutine.
func gather(w *datastore.Watcher, n int, timeout time.Duration) ([]datastore.Update, error) {
	var got []datastore.Update
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case b, ok := <-w.Updates():
			if !ok {
				return got, fmt.Errorf("stream closed after %d updates, want %d", len(got), n)
			}
			got = append(got, b...)
		case <-deadline:
			return got, fmt.Errorf("got %d updates in %v, want %d", len(got), timeout, n)
		}
	}
	if len(got) > n {
		return got, fmt.Errorf("got %d updates, want %d", len(got), n)
	}
	return got, nil
}

// writeChurn creates n policies, rewrites the first n/2 and deletes the
// last n/4, in transactions of 100 writes behind the datastore's back:
// n + n/2 + n/4 updates in all.
func writeChurn(t *testing.T, c *datastore.Client, n int) int {
	t.Helper()
	ctx := context.Background()
	objs := manyPolicies(n)
	var ops []datastore.RawOp
	flush := func() {
		if _, _, err := c.Raw().Txn(ctx, nil, ops); err != nil {
			t.Fatal(err)
		}
		ops = ops[:0]
	}
	put := func(o api.Object) {
		_, key, _ := datastore.KeyOf(o)
		v, err := jsonOf(o)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, datastore.RawOp{Key: key, Value: v})
		if len(ops) == 100 {
			flush()
		}
	}
	for _, o := range objs {
		put(o)
	}
	for _, o := range objs[:n/2] {
		o.(*api.NetworkPolicy).Spec.Selector = "changed == 'yes'"
		put(o)
	}
	for _, o := range objs[n-n/4:] {
		_, key, _ := datastore.KeyOf(o)
		ops = append(ops, datastore.RawOp{Key: key, Delete: true})
		if len(ops) == 100 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
	return n + n/2 + n/4
}

// TestHub100Subscribers: every one of 100 subscribers gets exactly the
// stream a direct Client.Watch gets, in order, and ten subscribers that
// read nothing until the others are done hold nobody up.
func TestHub100Subscribers(t *testing.T) {
	m := datastoretest.NewWith(t, datastoretest.Options{MaxTxnOps: 1000})
	c := m.Client
	ctx := context.Background()
	np := kind(t, "NetworkPolicy")
	for _, name := range []string{"pre-1", "pre-2"} {
		p := manyPolicies(1)[0]
		p.SetName(name)
		if _, err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	ref, err := c.Watch(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{np}})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Stop()
	hub, err := c.NewHub(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{np, kind(t, "gnp")}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Stop()
	const subscribers, slow = 100, 10
	var subs []*datastore.Watcher
	for i := range subscribers {
		opts := datastore.WatchOptions{} // everything the hub serves...
		if i%2 == 1 {
			opts.Kinds = []api.KindInfo{np} // ...or just what ref watches
		}
		w, err := hub.Subscribe(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		subs = append(subs, w)
	}
	// A write of another kind the hub serves, before the churn: only the
	// subscribers without a filter see it.
	if _, err := c.Create(ctx, gnp("other-kind", "")); err != nil {
		t.Fatal(err)
	}
	n := 3 + writeChurn(t, c, 2000) // the snapshot of 2, in-sync, the churn
	want, err := gather(ref, n, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// One transaction's writes share a revision: after the snapshot the
	// order is non-decreasing, and the reference is what a direct watch
	// delivers. The snapshot is in key order, and when the churn races the
	// initial list (a loaded machine) it holds objects the churn wrote.
	start := slices.IndexFunc(want, func(u datastore.Update) bool { return u.Type == datastore.UpdateInSync })
	for i := start + 2; i < len(want); i++ {
		if want[i].Revision < want[i-1].Revision {
			t.Fatalf("reference stream: revision %d after %d", want[i].Revision, want[i-1].Revision)
		}
	}
	wantLines := revLines(want)

	check := func(i int, w *datastore.Watcher) error {
		nn := n
		if i%2 == 0 {
			nn++
		}
		got, err := gather(w, nn, time.Minute)
		if err != nil {
			return fmt.Errorf("subscriber %d: %w", i, err)
		}
		if i%2 == 0 {
			var gnpSet int
			for j, u := range got {
				if u.Kind == "GlobalNetworkPolicy" {
					gnpSet = j
				}
			}
			if got[gnpSet].Name != "other-kind" {
				return fmt.Errorf("subscriber %d: no GlobalNetworkPolicy update in %d updates", i, len(got))
			}
			got = append(got[:gnpSet:gnpSet], got[gnpSet+1:]...)
		}
		// The in-sync revision marks where a snapshot was taken, which
		// legitimately differs between an independent watch and the hub
		// when writes race the initial list; every update must still match.
		if diff := cmp.Diff(inSyncAnyRev(wantLines), inSyncAnyRev(revLines(got))); diff != "" {
			return fmt.Errorf("subscriber %d (-want +got):\n%s", i, diff)
		}
		return nil
	}
	run := func(ws []*datastore.Watcher, first int) []error {
		errs := make([]error, len(ws))
		var wg sync.WaitGroup
		for j, w := range ws {
			wg.Go(func() { errs[j] = check(first+j, w) })
		}
		wg.Wait()
		return errs
	}
	for _, err := range run(subs[slow:], slow) {
		if err != nil {
			t.Error(err)
		}
	}
	// Only now do the slow ones start reading: they still get everything.
	for _, err := range run(subs[:slow], 0) {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestHubLateSubscriber: a subscriber that joins after changes gets the
// current state in key order, in-sync at a revision no older than any of
// it, then the changes after it; a subset subscription sees only its part.
func TestHubLateSubscriber(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	const hostPrefix = "/calico/ipam/v2/host/"
	hub, err := c.NewHub(ctx, datastore.WatchOptions{
		Kinds:       []api.KindInfo{kind(t, "gnp"), kind(t, "NetworkPolicy")},
		RawPrefixes: []string{datastore.IPAMPrefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Stop()
	early, err := hub.Subscribe(ctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Stop()
	if got := collect(t, early, 1); line(got[0]) != "in-sync" {
		t.Fatalf("empty store: %v", lines(got))
	}
	for _, name := range []string{"c", "a", "b"} {
		if _, err := c.Create(ctx, gnp(name, "v == '1'")); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := c.Get(ctx, kind(t, "gnp"), "", "b")
	b.(*api.GlobalNetworkPolicy).Spec.Selector = "v == '2'"
	if _, err := c.Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, kind(t, "gnp"), "", "c", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, manyPolicies(1)[0]); err != nil {
		t.Fatal(err)
	}
	raw := c.Raw()
	if _, err := raw.Create(ctx, hostPrefix+"node1/ipv4/block/10.0.0.0-26", []byte("h")); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(ctx, datastore.IPAMPrefix+"handle/h1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, u := range collect(t, early, 8) { // the hub has applied everything
		if u.Received.IsZero() {
			t.Errorf("live change %s has no receive time", line(u))
		}
	}

	late, err := hub.Subscribe(ctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Stop()
	part, err := hub.Subscribe(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}, RawPrefixes: []string{hostPrefix}})
	if err != nil {
		t.Fatal(err)
	}
	defer part.Stop()
	snap := collect(t, late, 6)
	want := []string{ // key order: IPAM keys sort before resources
		`set /calico/ipam/v2/handle/h1 "{}"`,
		`set /calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26 "h"`,
		`set GlobalNetworkPolicy /a sel=v == '1'`,
		`set GlobalNetworkPolicy /b sel=v == '2'`,
		`set NetworkPolicy ns-0/allow-00000 sel=app == 'svc-0'`,
		"in-sync",
	}
	if diff := cmp.Diff(want, lines(snap)); diff != "" {
		t.Fatalf("late snapshot (-want +got):\n%s", diff)
	}
	rev, _ := c.Revision(ctx)
	if snap[5].Revision != rev {
		t.Errorf("in-sync at revision %d, store at %d", snap[5].Revision, rev)
	}
	for _, u := range snap[:5] {
		if !u.Received.IsZero() {
			t.Errorf("%s: a snapshot update has a receive time", u.Key)
		}
		if u.Object != nil && u.Object.GetResourceVersion() != fmt.Sprint(u.Revision) {
			t.Errorf("%s: resourceVersion %q, revision %d", u.Key, u.Object.GetResourceVersion(), u.Revision)
		}
	}
	partSnap := collect(t, part, 4)
	wantPart := []string{want[1], want[2], want[3], "in-sync"}
	if diff := cmp.Diff(wantPart, lines(partSnap)); diff != "" {
		t.Fatalf("subset snapshot (-want +got):\n%s", diff)
	}

	// Changes after joining.
	if _, err := c.Delete(ctx, kind(t, "gnp"), "", "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := raw.Delete(ctx, datastore.IPAMPrefix+"handle/h1", 0); err != nil {
		t.Fatal(err)
	}
	if err := raw.Delete(ctx, hostPrefix+"node1/ipv4/block/10.0.0.0-26", 0); err != nil {
		t.Fatal(err)
	}
	got := collect(t, late, 3)
	if diff := cmp.Diff([]string{
		"delete GlobalNetworkPolicy /a",
		`delete /calico/ipam/v2/handle/h1 ""`,
		`delete /calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26 ""`,
	}, lines(got)); diff != "" {
		t.Fatalf("late changes (-want +got):\n%s", diff)
	}
	checkOrdered(t, append(snap, got...))
	got = collect(t, part, 2)
	if diff := cmp.Diff([]string{"delete GlobalNetworkPolicy /a", `delete /calico/ipam/v2/host/node1/ipv4/block/10.0.0.0-26 ""`}, lines(got)); diff != "" {
		t.Fatalf("subset changes (-want +got):\n%s", diff)
	}
}

// TestHubCompactedResumeRelists: as TestWatchCompactedResumeRelists, through
// a hub: subscribers get exactly the difference, and one that joins after
// the re-list sees the re-listed state.
func TestHubCompactedResumeRelists(t *testing.T) {
	m, hc := compactedResumeClient(t)
	c, ctx := m.Client, context.Background()
	hub, err := hc.NewHub(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Stop()
	w, err := hub.Subscribe(ctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	checkCompactedResume(t, w)
	late, err := hub.Subscribe(ctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Stop()
	if diff := cmp.Diff([]string{
		"set GlobalNetworkPolicy /change sel=v == '2'",
		"set GlobalNetworkPolicy /keep sel=v == '1'",
		"set GlobalNetworkPolicy /new sel=v == '3'",
		"in-sync",
	}, lines(collect(t, late, 4))); diff != "" {
		t.Fatalf("late snapshot after resync (-want +got):\n%s", diff)
	}
	if _, err := c.Delete(ctx, kind(t, "gnp"), "", "keep", ""); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*datastore.Watcher{w, late} {
		if got := collect(t, s, 1); line(got[0]) != "delete GlobalNetworkPolicy /keep" {
			t.Fatalf("after resync: %v", lines(got))
		}
	}
}

func TestHubSubscribeChecksSubset(t *testing.T) {
	m := datastoretest.New(t)
	ctx := context.Background()
	hub, err := m.Client.NewHub(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}, RawPrefixes: []string{"/calico/ipam/v2/host/"}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Stop()
	for _, tc := range []struct {
		opts datastore.WatchOptions
		want string
	}{
		{datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "NetworkPolicy")}}, `hub: subscribe: kind "NetworkPolicy" is not served by this hub`},
		{datastore.WatchOptions{RawPrefixes: []string{"/calico/ipam/v2/"}}, `hub: subscribe: raw prefix "/calico/ipam/v2/" is not inside one this hub serves (/calico/ipam/v2/host/)`},
		{datastore.WatchOptions{RawPrefixes: []string{""}}, "hub: subscribe: empty raw prefix"},
	} {
		if _, err := hub.Subscribe(ctx, tc.opts); err == nil || err.Error() != tc.want {
			t.Errorf("Subscribe(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// TestHubStop: a subscriber's Stop unsubscribes it; stopping the hub closes
// every remaining subscription.
func TestHubStop(t *testing.T) {
	m := datastoretest.New(t)
	ctx := context.Background()
	hub, err := m.Client.NewHub(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(t, "gnp")}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := hub.Subscribe(ctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancelB := context.WithCancel(ctx)
	b, err := hub.Subscribe(bctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := hub.Subscribers(); n != 2 {
		t.Fatalf("%d subscribers, want 2", n)
	}
	a.Stop()
	cancelB()
	b.Stop()
	if n := hub.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after Stop, want 0", n)
	}
	c, err := hub.Subscribe(ctx, datastore.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hub.Stop()
	timeout := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-c.Updates():
		case <-timeout:
			t.Fatal("subscription still open 10 s after the hub stopped")
		}
	}
	c.Stop()
	if _, err := hub.Subscribe(ctx, datastore.WatchOptions{}); err == nil {
		t.Fatal("Subscribe on a stopped hub succeeded")
	}
}

// inSyncAnyRev drops the revision from in-sync lines.
func inSyncAnyRev(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if strings.HasPrefix(l, "in-sync @") {
			l = "in-sync"
		}
		out[i] = l
	}
	return out
}
