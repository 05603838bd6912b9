package kubernetes_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkResync: a controller starting against an API server holding
// 10,000 pods (in 10 namespaces, one service account each) and 1,000
// NetworkPolicies, with a datastore holding the pods' 10,000 endpoints as
// a CNI without pod lookups writes them (no pod labels) and nothing else.
// One op is a controller start until it reports ready (the inline full
// resync done: every profile and policy written, every endpoint
// updated). Reported: resync-s, peak-heap-MB (Go heap in use above the
// level before the start) and peak-rss-growth-MB (the process's resident
// memory above its level before the start), both sampled every 20 ms, and
// the owned objects found afterwards.
//
// Setup (creating the objects) takes a few minutes; run it with
// -benchtime=1x.
func BenchmarkResync(b *testing.B) {
	const nNS, podsPerNS, policiesPerNS = 10, 1000, 100
	e := newEnv(b)
	ctx := context.Background()
	var nss []string
	for i := range nNS {
		ns := e.name(fmt.Sprintf("bench%d", i))
		nss = append(nss, ns)
		e.createNS(ns, map[string]string{"team": fmt.Sprint(i % 3)})
		e.createSA(ns, "app", map[string]string{"tier": "web"})
	}
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	work := make(chan func())
	for range 16 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	for _, ns := range nss {
		for j := range podsPerNS {
			work <- func() {
				p := podObject(ns, fmt.Sprintf("pod-%d", j), "bench-node", "app", map[string]string{"app": fmt.Sprintf("a%d", j%50), "tier": fmt.Sprint(j % 4)})
				if _, err := e.kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					failed.Store(err)
				}
			}
		}
		for j := range policiesPerNS {
			work <- func() {
				np := allowFrom(ns, fmt.Sprintf("np-%d", j), map[string]string{"app": fmt.Sprintf("a%d", j%50)}, map[string]string{"tier": fmt.Sprint(j % 4)}, int32(1000+j))
				if _, err := e.kube.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
					failed.Store(err)
				}
			}
		}
	}
	close(work)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d pods and %d policies created in %s", nNS*podsPerNS, nNS*policiesPerNS, time.Since(start).Round(time.Second))

	writeEndpoints := func() {
		var objs []api.Object
		for i, ns := range nss {
			for j := range podsPerNS {
				name, _ := api.WorkloadEndpointName("bench-node", "k8s", fmt.Sprintf("pod-%d", j), "eth0")
				objs = append(objs, &api.WorkloadEndpoint{
					TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "WorkloadEndpoint"},
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{api.LabelNamespace: ns, api.LabelOrchestrator: "k8s", api.LabelServiceAccount: "default"}},
					Spec: api.WorkloadEndpointSpec{Orchestrator: "k8s", Node: "bench-node", Pod: fmt.Sprintf("pod-%d", j), Endpoint: "eth0",
						ServiceAccountName: "default", IPNetworks: []string{fmt.Sprintf("10.%d.%d.%d/32", 100+i, j/250, j%250+1)},
						Profiles: []string{"kns." + ns, "ksa." + ns + ".default"}, InterfaceName: "cali00000000000"},
				})
			}
		}
		if _, err := e.ds.WriteBatch(ctx, datastore.OpApply, objs); err != nil {
			b.Fatal(err)
		}
	}
	wipe := func() {
		for _, kind := range []string{"Profile", "NetworkPolicy", api.KindKubernetesNetworkPolicy} {
			k, _ := api.LookupKind(kind)
			objs, _, err := e.ds.List(ctx, k, datastore.ListOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if len(objs) > 0 {
				if _, err := e.ds.WriteBatch(ctx, datastore.OpDelete, objs); err != nil {
					b.Fatal(err)
				}
			}
		}
	}

	var total time.Duration
	var peakMB, rssMB float64
	var writes int
	for b.Loop() {
		b.StopTimer()
		wipe()
		writeEndpoints()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		rssBase := rssBytes()
		var peak, peakRSS atomic.Uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					var m runtime.MemStats
					runtime.ReadMemStats(&m)
					if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
						peak.Store(m.HeapInuse - base)
					}
					if r := rssBytes(); r > rssBase && r-rssBase > peakRSS.Load() {
						peakRSS.Store(r - rssBase)
					}
				}
			}
		}()
		b.StartTimer()
		t0 := time.Now()
		r := e.start(k8sint.Config{ResyncPeriod: -1, Datastore: e.ds})
		d := time.Since(t0)
		b.StopTimer()
		close(stop)
		<-sampled
		total += d
		peakMB = max(peakMB, float64(peak.Load())/(1<<20))
		rssMB = max(rssMB, float64(peakRSS.Load())/(1<<20))
		// It must really have converged.
		writes = countOwned(b, e)
		r.stop(b)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "resync-s")
	b.ReportMetric(peakMB, "peak-heap-MB")
	b.ReportMetric(rssMB, "peak-rss-growth-MB")
	b.ReportMetric(float64(writes), "objects")
}

// countOwned checks that the datastore holds every expected object after
// a resync and returns how many owned objects there are.
func countOwned(b *testing.B, e *env) int {
	b.Helper()
	ctx := context.Background()
	n := 0
	pk, _ := api.LookupKind("Profile")
	profiles, _, err := e.ds.List(ctx, pk, datastore.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n += len(profiles)
	nk, _ := api.LookupKind("NetworkPolicy")
	pols, _, err := e.ds.List(ctx, nk, datastore.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n += len(pols)
	nps, err := e.kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if len(pols) != len(nps.Items) {
		b.Fatalf("%d knp policies in the datastore, %d NetworkPolicies in the API server", len(pols), len(nps.Items))
	}
	wk, _ := api.LookupKind("WorkloadEndpoint")
	weps, _, err := e.ds.List(ctx, wk, datastore.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range weps {
		w := o.(*api.WorkloadEndpoint)
		if w.Labels["app"] == "" || w.Spec.ServiceAccountName != "app" {
			b.Fatalf("endpoint %s/%s not updated: %v sa=%s", w.Namespace, w.Name, w.Labels, w.Spec.ServiceAccountName)
		}
	}
	return n + len(weps)
}

// rssBytes is the process's resident set size (VmRSS), or 0.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
