package datastore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Benchmarks run against a real embedded member with fsync on, as in
// production; docs/benchmarks-datastore.md records the numbers.

// BenchmarkApply10000Policies applies a file of 10,000 NetworkPolicies to an
// empty store through etcd's default limits (128 ops per transaction).
func BenchmarkApply10000Policies(b *testing.B) {
	objs := manyPolicies(10000)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		m := datastoretest.NewWith(b, datastoretest.Options{Fsync: true})
		for _, o := range objs {
			o.SetResourceVersion("")
			o.SetUID("")
		}
		b.StartTimer()
		if _, err := m.Client.WriteBatch(ctx, datastore.OpApply, objs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		m.Stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(objs))*float64(b.N)/b.Elapsed().Seconds(), "policies/s")
}

// writeUpdates writes n changes to policy objects in transactions of
// batch puts, from two writers, adding each committed transaction's size to
// committed.
func writeUpdates(b *testing.B, c *datastore.Client, n, batch int, round int, committed *atomic.Int64) {
	objs := manyPolicies(n)
	for _, o := range objs {
		o.SetLabels(map[string]string{"round": fmt.Sprint(round)})
	}
	raw := c.Raw()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := w * batch; start < n; start += 2 * batch {
				var ops []datastore.RawOp
				for _, o := range objs[start:min(start+batch, n)] {
					_, key, _ := datastore.KeyOf(o)
					v, err := jsonOf(o)
					if err != nil {
						b.Error(err)
						return
					}
					ops = append(ops, datastore.RawOp{Key: key, Value: v})
				}
				if _, _, err := raw.Txn(context.Background(), nil, ops); err != nil {
					b.Error(err)
					return
				}
				committed.Add(int64(len(ops)))
			}
		}()
	}
	wg.Wait()
}

// benchWatch measures delivery of n updates to each of consumers watchers:
// separate Client.Watch watchers, or subscribers of one Hub.
func benchWatch(b *testing.B, consumers, n int, useHub bool) {
	m := datastoretest.NewWith(b, datastoretest.Options{Fsync: true, MaxTxnOps: 1000})
	ctx := context.Background()
	opts := datastore.WatchOptions{Kinds: []api.KindInfo{kind(b, "NetworkPolicy")}}
	watch := m.Client.Watch
	if useHub {
		hub, err := m.Client.NewHub(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer hub.Stop()
		watch = hub.Subscribe
	}
	var ws []*datastore.Watcher
	for range consumers {
		w, err := watch(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer w.Stop()
		for u := range w.Updates() {
			if u[len(u)-1].Type == datastore.UpdateInSync {
				break
			}
		}
		ws = append(ws, w)
	}
	var maxLag, endLag int64
	var drain time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		counts := make([]atomic.Int64, consumers)
		var committed atomic.Int64
		var wg sync.WaitGroup
		for ci, w := range ws {
			wg.Go(func() {
				for got := 0; got < n; {
					batch := <-w.Updates()
					got += len(batch)
					counts[ci].Store(int64(got))
				}
			})
		}
		slowest := func() int64 {
			low := int64(n)
			for ci := range counts {
				low = min(low, counts[ci].Load())
			}
			return low
		}
		// Sample how far the slowest consumer is behind what etcd has
		// committed, every 5 ms while the writers run.
		stopSampling := make(chan struct{})
		sampled := make(chan int64)
		go func() {
			var worst int64
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					worst = max(worst, committed.Load()-slowest())
				case <-stopSampling:
					sampled <- worst
					return
				}
			}
		}()
		writeUpdates(b, m.Client, n, 500, i, &committed)
		writersDone := time.Now()
		endLag = max(endLag, int64(n)-slowest())
		close(stopSampling)
		maxLag = max(maxLag, <-sampled, int64(n)-slowest())
		wg.Wait()
		drain = max(drain, time.Since(writersDone))
	}
	b.StopTimer()
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "updates/s/consumer")
	b.ReportMetric(float64(maxLag), "max-lag-updates")
	b.ReportMetric(float64(endLag), "end-lag-updates")
	b.ReportMetric(float64(drain.Milliseconds()), "drain-ms")
}

// BenchmarkWatchOneConsumer: 20,000 updates to one Client.Watch consumer
// per iteration.
func BenchmarkWatchOneConsumer(b *testing.B) { benchWatch(b, 1, 20000, false) }

// BenchmarkWatch100Consumers: 2,000 updates to each of 100 separate
// Client.Watch watchers per iteration (each decodes every object itself).
// max-lag-updates is the most the slowest consumer was behind the
// committed writes (sampled every 5 ms), end-lag-updates how far behind it
// was when the writers finished, drain-ms how long it then took to catch
// up.
func BenchmarkWatch100Consumers(b *testing.B) { benchWatch(b, 100, 2000, false) }

// BenchmarkHubOneSubscriber: 20,000 updates to one subscriber of a Hub.
func BenchmarkHubOneSubscriber(b *testing.B) { benchWatch(b, 1, 20000, true) }

// BenchmarkHub100Subscribers: 20,000 updates to each of 100 subscribers of
// one Hub per iteration (one etcd watch, one decode per update).
func BenchmarkHub100Subscribers(b *testing.B) { benchWatch(b, 100, 20000, true) }

// BenchmarkSnapshot100000Endpoints: a watcher's snapshot of 100,000
// WorkloadEndpoints, from Watch to UpdateInSync.
func BenchmarkSnapshot100000Endpoints(b *testing.B) {
	const n = 100000
	m := loadEndpoints(b, n)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		w, err := m.Client.Watch(ctx, datastore.WatchOptions{Kinds: []api.KindInfo{kind(b, "WorkloadEndpoint")}})
		if err != nil {
			b.Fatal(err)
		}
		if got := untilInSync(w); got != n+1 {
			b.Fatalf("snapshot had %d updates, want %d", got, n+1)
		}
		w.Stop()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "endpoints/s")
}

// BenchmarkHubLateSubscriber100000Endpoints: a subscriber joining a hub
// that holds 100,000 WorkloadEndpoints, from Subscribe to UpdateInSync.
func BenchmarkHubLateSubscriber100000Endpoints(b *testing.B) {
	const n = 100000
	m := loadEndpoints(b, n)
	ctx := context.Background()
	opts := datastore.WatchOptions{Kinds: []api.KindInfo{kind(b, "WorkloadEndpoint")}}
	hub, err := m.Client.NewHub(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Stop()
	first, err := hub.Subscribe(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	untilInSync(first)
	first.Stop()
	b.ResetTimer()
	for b.Loop() {
		w, err := hub.Subscribe(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if got := untilInSync(w); got != n+1 {
			b.Fatalf("snapshot had %d updates, want %d", got, n+1)
		}
		w.Stop()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "endpoints/s")
}

// untilInSync reads w up to and including UpdateInSync and returns how
// many updates that was.
func untilInSync(w *datastore.Watcher) int {
	got := 0
	for batch := range w.Updates() {
		got += len(batch)
		if batch[len(batch)-1].Type == datastore.UpdateInSync {
			break
		}
	}
	return got
}

// loadEndpoints starts a member (no fsync) holding n WorkloadEndpoints.
func loadEndpoints(b *testing.B, n int) *datastoretest.Member {
	m := datastoretest.NewWith(b, datastoretest.Options{MaxTxnOps: 1000})
	ctx := context.Background()
	raw := m.Client.Raw()
	for start := 0; start < n; start += 1000 {
		var ops []datastore.RawOp
		for i := start; i < start+1000; i++ {
			wep := endpoint(i)
			_, key, _ := datastore.KeyOf(wep)
			v, err := jsonOf(wep)
			if err != nil {
				b.Fatal(err)
			}
			ops = append(ops, datastore.RawOp{Key: key, Value: v})
		}
		if _, _, err := raw.Txn(ctx, nil, ops); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

func endpoint(i int) *api.WorkloadEndpoint {
	node := fmt.Sprintf("node-%03d", i%500)
	pod := fmt.Sprintf("pod-%06d", i)
	return &api.WorkloadEndpoint{
		TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersion, Kind: "WorkloadEndpoint"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      node + "-k8s-" + pod + "-eth0",
			Namespace: fmt.Sprintf("ns-%d", i%50),
			Labels: map[string]string{
				"app":                            fmt.Sprintf("app-%d", i%200),
				"projectcalico.org/namespace":    fmt.Sprintf("ns-%d", i%50),
				"projectcalico.org/orchestrator": "k8s",
			},
		},
		Spec: api.WorkloadEndpointSpec{
			Orchestrator:  "k8s",
			Node:          node,
			Pod:           pod,
			Endpoint:      "eth0",
			IPNetworks:    []string{fmt.Sprintf("10.%d.%d.%d/32", i>>16&255, i>>8&255, i&255)},
			Profiles:      []string{fmt.Sprintf("kns.ns-%d", i%50), "ksa.default"},
			InterfaceName: fmt.Sprintf("cali%011x", i),
			MAC:           "ee:ee:ee:ee:ee:ee",
		},
	}
}

func jsonOf(o api.Object) ([]byte, error) { return datastore.Encode(o) }
