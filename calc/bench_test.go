package calc

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

// benchWorld is a cluster for the benchmarks: 1,000 namespaces of 100 pods
// (100,000 workload endpoints on 400 hosts, so 250 on this one), 5,000
// policies (4 NetworkPolicies per namespace and 1,000 GlobalNetworkPolicies
// in a second tier), 100 GlobalNetworkSets, kns./ksa. profiles. Updates
// come in the order a datastore lists kinds (api.Kinds): tiers, profiles,
// network sets, endpoints, then policies.
type benchWorld struct {
	updates []Update
	// flip is a remote pod in a namespace with a local pod, whose tier
	// label moves it between two active sets.
	flipA, flipB Update
	// remoteFlip and localFlip move a remote and a local pod between
	// backend and db (benchFlips).
	remoteFlip, localFlip [2]Update
}

const (
	benchNamespaces   = 1000
	benchPodsPerNS    = 100
	benchHosts        = 400
	benchGNPs         = 1000
	benchNetSets      = 100
	benchThisHost     = "host-0"
	benchLocalPerHost = benchNamespaces * benchPodsPerNS / benchHosts
)

var benchTiers = []string{"frontend", "backend", "db"}

// benchNode spreads pods over the hosts so that each host has exactly
// benchLocalPerHost of them, of varied namespaces and labels.
func benchNode(i int) string { return fmt.Sprintf("host-%d", (i+i/benchHosts)%benchHosts) }

func benchPod(ns, j int, tier string) *api.WorkloadEndpoint {
	i := ns*benchPodsPerNS + j
	name := fmt.Sprintf("pod-%d", j)
	nsName := fmt.Sprintf("ns-%d", ns)
	w := &api.WorkloadEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: name, Labels: map[string]string{
			"app": fmt.Sprintf("app-%d", j%10), "tier": tier, "version": fmt.Sprintf("v%d", j%4),
		}},
		Spec: api.WorkloadEndpointSpec{
			Orchestrator: api.OrchestratorKubernetes, Node: benchNode(i),
			Pod: name, Endpoint: "eth0", ServiceAccountName: "default",
			InterfaceName: fmt.Sprintf("cali%d", i),
			IPNetworks:    []string{fmt.Sprintf("10.%d.%d.%d/32", i>>16, (i>>8)&255, i&255)},
			Profiles:      []string{"kns." + nsName, "ksa." + nsName + ".default"},
		},
	}
	if tier == "frontend" {
		w.Spec.Ports = []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolFromString("TCP"), Port: uint16(8000 + j%10)}}
	}
	return w
}

func newBenchWorld() *benchWorld {
	w := &benchWorld{}
	add := func(kind string, obj api.Object) {
		w.updates = append(w.updates, Update{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Object: obj})
	}
	f := func(v float64) *float64 { return &v }
	add(KindTier, &api.Tier{ObjectMeta: metav1.ObjectMeta{Name: "platform"}, Spec: api.TierSpec{Order: f(100)}})
	for ns := range benchNamespaces {
		name := fmt.Sprintf("ns-%d", ns)
		add(KindProfile, api.NamespaceProfile(name, map[string]string{"team": fmt.Sprintf("t%d", ns%20), "env": []string{"prod", "dev"}[ns%2]}))
		add(KindProfile, api.ServiceAccountProfile(name, "default", nil))
	}
	for i := range benchNetSets {
		add(KindGlobalNetworkSet, &api.GlobalNetworkSet{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("gns-%d", i), Labels: map[string]string{"kind": "external", "region": fmt.Sprintf("r%d", i%5)}},
			Spec:       api.GlobalNetworkSetSpec{Nets: []string{fmt.Sprintf("100.%d.0.0/16", i), fmt.Sprintf("198.18.%d.0/24", i)}},
		})
	}
	for ns := range benchNamespaces {
		for j := range benchPodsPerNS {
			add(KindWorkloadEndpoint, benchPod(ns, j, benchTiers[j%3]))
		}
	}
	tcp := api.ProtocolFromString("TCP")
	for i := range benchGNPs {
		sel := fmt.Sprintf("app == 'app-%d' && version == 'v%d'", i%10, i%4)
		add(KindGlobalNetworkPolicy, &api.GlobalNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("platform.gnp-%d", i)},
			Spec: api.GlobalNetworkPolicySpec{Tier: "platform", Order: f(float64(i)), Selector: sel,
				Types: []api.PolicyType{api.PolicyTypeIngress, api.PolicyTypeEgress},
				Ingress: []api.Rule{
					{Action: api.Allow, Source: api.EntityRule{Selector: fmt.Sprintf("version == 'v%d' && app == 'app-%d'", (i+1)%4, (i+3)%10)}},
					{Action: api.Deny, Source: api.EntityRule{Selector: fmt.Sprintf("kind == 'external' && region == 'r%d'", i%5)}},
					{Action: api.Pass},
				},
				Egress: []api.Rule{
					{Action: api.Deny, Destination: api.EntityRule{Nets: []string{fmt.Sprintf("192.0.%d.0/24", i%256)}}},
					{Action: api.Pass},
				}},
		})
	}
	for ns := range benchNamespaces {
		nsName := fmt.Sprintf("ns-%d", ns)
		np := func(name, sel string, in []api.Rule, eg []api.Rule) {
			types := []api.PolicyType{api.PolicyTypeIngress}
			if len(eg) > 0 {
				types = append(types, api.PolicyTypeEgress)
			}
			add(KindNetworkPolicy, &api.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: nsName, Name: name},
				Spec: api.NetworkPolicySpec{Selector: sel, Types: types, Ingress: in, Egress: eg}})
		}
		np("db", "tier == 'db'", []api.Rule{{Action: api.Allow, Protocol: &tcp,
			Source: api.EntityRule{Selector: "tier == 'backend'"}, Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(5432)}}}}, nil)
		np("backend", "tier == 'backend'", []api.Rule{{Action: api.Allow, Protocol: &tcp,
			Source: api.EntityRule{Selector: "tier == 'frontend'"}, Destination: api.EntityRule{Ports: []api.Port{api.SinglePort(8080)}}}},
			[]api.Rule{{Action: api.Allow, Destination: api.EntityRule{Selector: "tier == 'db'"}}})
		np("team", fmt.Sprintf("app == 'app-%d'", ns%10), []api.Rule{{Action: api.Allow,
			Source: api.EntityRule{NamespaceSelector: fmt.Sprintf("team == 't%d'", ns%20)}}}, nil)
		np("frontend", "tier == 'frontend'", []api.Rule{{Action: api.Allow, Protocol: &tcp,
			Destination: api.EntityRule{Ports: []api.Port{api.NamedPort("http")}}}}, nil)
	}
	// The flip: a remote pod in the namespace of a local backend pod, moved
	// between frontend and db, leaves the (active) source set of that
	// namespace's "backend" policy and joins its egress destination set.
	for i := range benchNamespaces * benchPodsPerNS {
		ns, j := i/benchPodsPerNS, i%benchPodsPerNS
		if benchNode(i) != benchThisHost || benchTiers[j%3] != "backend" {
			continue
		}
		k := (j + 1) % benchPodsPerNS
		for benchNode(ns*benchPodsPerNS+k) == benchThisHost {
			k = (k + 1) % benchPodsPerNS
		}
		nsName := fmt.Sprintf("ns-%d", ns)
		w.flipA = Update{Kind: KindWorkloadEndpoint, Namespace: nsName, Name: fmt.Sprintf("pod-%d", k), Object: benchPod(ns, k, "frontend")}
		w.flipB = Update{Kind: KindWorkloadEndpoint, Namespace: nsName, Name: fmt.Sprintf("pod-%d", k), Object: benchPod(ns, k, "db")}
		break
	}
	w.remoteFlip, w.localFlip = benchFlips()
	return w
}

// benchFlips finds a namespace with a local db pod and returns the
// backend/db flips of one of its remote backend pods (which leaves and
// rejoins the source set of the namespace's db policy: one namespaced set
// of tens of members changes) and of the local db pod (its policies
// change, and with them which sets are active). Zero if there is none.
func benchFlips() (remote, local [2]Update) {
	flip := func(ns, j int, from, to string) [2]Update {
		nsName, name := fmt.Sprintf("ns-%d", ns), fmt.Sprintf("pod-%d", j)
		return [2]Update{
			{Kind: KindWorkloadEndpoint, Namespace: nsName, Name: name, Object: benchPod(ns, j, to)},
			{Kind: KindWorkloadEndpoint, Namespace: nsName, Name: name, Object: benchPod(ns, j, from)},
		}
	}
	for ns := range benchNamespaces {
		localDB, remoteBackend := -1, -1
		for j := range benchPodsPerNS {
			switch local := benchNode(ns*benchPodsPerNS+j) == benchThisHost; {
			case local && benchTiers[j%3] == "db":
				localDB = j
			case !local && benchTiers[j%3] == "backend":
				remoteBackend = j
			}
		}
		if localDB >= 0 && remoteBackend >= 0 {
			return flip(ns, remoteBackend, "backend", "db"), flip(ns, localDB, "db", "backend")
		}
	}
	return remote, local
}

func (w *benchWorld) load(b *testing.B) *Calc {
	c := New(Config{Hostname: benchThisHost})
	for _, u := range w.updates {
		if err := c.OnUpdate(u); err != nil {
			b.Fatalf("OnUpdate(%s %s): %v", u.Kind, joinName(u.Namespace, u.Name), err)
		}
	}
	c.InSync()
	return c
}

// heapSampler records the largest heap-object size seen while it runs.
type heapSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startHeapSampler() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > h.peak.Load() {
			h.peak.Store(v)
		}
	}
	read()
	go func() {
		defer close(h.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// cpuTime is the process's user+system CPU time: under a loaded machine
// it measures the work better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkStartOfDay feeds the whole benchWorld to a new Calc and takes
// its State. Targets: ≤ 2 s per op and ≤ 300 MB peak heap growth.
func BenchmarkStartOfDay(b *testing.B) {
	w := newBenchWorld()
	var c *Calc
	base := heapInUse()
	var peak uint64
	var cpu time.Duration
	n := 0
	for b.Loop() {
		c = nil
		b.StopTimer()
		runtime.GC()
		h := startHeapSampler()
		t0 := cpuTime()
		b.StartTimer()
		c = w.load(b)
		s := c.State()
		b.StopTimer()
		cpu += cpuTime() - t0
		n++
		if p := h.Stop(); p > peak {
			peak = p
		}
		if s.Endpoints.Len() != benchLocalPerHost {
			b.Fatalf("%d local endpoints, want %d", s.Endpoints.Len(), benchLocalPerHost)
		}
		b.StartTimer()
	}
	retained := heapInUse() - base
	s := c.State()
	members := 0
	for _, set := range s.IPSets.All() {
		members += set.Members.Len()
	}
	b.ReportMetric(cpu.Seconds()/float64(n), "cpu-s/op")
	b.ReportMetric(float64(peak-base)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(retained)/(1<<20), "retained-heap-MB")
	b.ReportMetric(float64(s.Policies.Len()), "active-policies")
	b.ReportMetric(float64(s.IPSets.Len()), "ipsets")
	b.ReportMetric(float64(members), "members")
	runtime.KeepAlive(c)
	runtime.KeepAlive(w)
}

// BenchmarkLabelChange changes one remote endpoint's labels with the
// benchWorld loaded (it leaves one namespace's backend set and joins its db
// set): "update" is OnUpdate alone, "update+state" also takes the State, as
// the agent does after each batch.
func BenchmarkLabelChange(b *testing.B) {
	w := newBenchWorld()
	c := w.load(b)
	before := c.State()
	if err := c.OnUpdate(w.flipA); err != nil {
		b.Fatal(err)
	}
	after := c.State()
	if before.Equal(&after) {
		b.Fatal("the label change did not change the desired state")
	}
	us := [2]Update{w.flipB, w.flipA}
	for _, withState := range []bool{false, true} {
		name := "update"
		if withState {
			name = "update+state"
		}
		b.Run(name, func(b *testing.B) {
			i := 0
			t0 := cpuTime()
			for b.Loop() {
				if err := c.OnUpdate(us[i%2]); err != nil {
					b.Fatal(err)
				}
				i++
				if withState {
					c.State()
				}
			}
			b.ReportMetric(float64((cpuTime()-t0).Nanoseconds())/float64(i), "cpu-ns/op")
		})
	}
}

// BenchmarkState is one change and the State after it, with the benchWorld
// loaded: "unchanged" takes the State after no change, "remote-label"
// and "local-label" after benchFlips' remote and local pod flips.
func BenchmarkState(b *testing.B) {
	w := newBenchWorld()
	c := w.load(b)
	for _, bc := range []struct {
		name string
		us   [2]Update
	}{
		{"unchanged", [2]Update{}},
		{"remote-label", w.remoteFlip},
		{"local-label", w.localFlip},
	} {
		before := c.State()
		if bc.name != "unchanged" {
			if bc.us[0].Object == nil {
				b.Fatalf("%s: the benchWorld has no namespace with a local db pod", bc.name)
			}
			mustBenchUpdate(b, c, bc.us[0])
			if after := c.State(); after.Equal(&before) {
				b.Fatalf("%s: the flip did not change the desired state", bc.name)
			}
			mustBenchUpdate(b, c, bc.us[1])
			c.State()
		}
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if u := bc.us[i%2]; u.Object != nil {
					mustBenchUpdate(b, c, u)
				}
				i++
				c.State()
			}
			if i%2 == 1 && bc.us[1].Object != nil {
				mustBenchUpdate(b, c, bc.us[1]) // back to the loaded world
			}
		})
	}
}

func mustBenchUpdate(b *testing.B, c *Calc, u Update) {
	b.Helper()
	if err := c.OnUpdate(u); err != nil {
		b.Fatalf("OnUpdate(%s %s): %v", u.Kind, joinName(u.Namespace, u.Name), err)
	}
}

// BenchmarkSetAcquire adds, then deletes, a GlobalNetworkPolicy that
// selects local pods and whose ingress rule's source selector has no set
// yet, with the benchWorld loaded: each op makes the selector's set
// active (its members computed over all 100,000 endpoints) and takes the
// State, or releases it. "exact" is tier == 'db' (about 33,000 members,
// every indexed candidate a match); "and" is tier == 'db' && version ==
// 'v1' (about 8,300 members among the same candidates).
func BenchmarkSetAcquire(b *testing.B) {
	w := newBenchWorld()
	c := w.load(b)
	c.State()
	for _, bc := range []struct{ name, src string }{
		{"exact", "tier == 'db'"},
		{"and", "tier == 'db' && version == 'v1'"},
	} {
		p := &api.GlobalNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "bench-acquire"},
			Spec: api.GlobalNetworkPolicySpec{Selector: "tier == 'frontend'",
				Ingress: []api.Rule{{Action: api.Allow, Source: api.EntityRule{Selector: bc.src}}}}}
		api.Default(p)
		us := [2]Update{{Kind: KindGlobalNetworkPolicy, Name: p.Name, Object: p}, {Kind: KindGlobalNetworkPolicy, Name: p.Name}}
		sets := c.State().IPSets.Len()
		mustBenchUpdate(b, c, us[0])
		if c.State().IPSets.Len() != sets+1 {
			b.Fatalf("%s: the policy did not add one IP set", bc.name)
		}
		mustBenchUpdate(b, c, us[1])
		c.State()
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				mustBenchUpdate(b, c, us[i%2])
				i++
				c.State()
			}
			if i%2 == 1 {
				mustBenchUpdate(b, c, us[1])
			}
		})
	}
}
