package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/dataplane/nft"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Loaded-state sizes for the label-change benchmarks. The remote endpoint
// and policy counts can be raised to the full state
// (BRINDLE_BENCH_REMOTE=100000 BRINDLE_BENCH_POLICIES=5000).
const (
	benchLocal    = 250
	benchRemote   = 3000
	benchPolicies = 300
)

// benchSize reads a positive size from the environment, else def.
func benchSize(b *testing.B, env string, def int) int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", env, v)
	}
	return n
}

// benchPace reads BRINDLE_BENCH_PACE (a duration, e.g. 20ms): the time
// between the starts of two timed changes; zero (unset) is back to back.
func benchPace(b *testing.B) time.Duration {
	v := os.Getenv("BRINDLE_BENCH_PACE")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("BRINDLE_BENCH_PACE=%q: want a duration like 20ms", v)
	}
	return d
}

// labelBench is the loaded host the label-change benchmarks share: an
// agent programming a test namespace from an embedded etcd that holds 250
// local endpoints, 3,000 remote endpoints and 300 policies (or the sizes
// from the environment), with its start of day programmed.
//
// Every endpoint has an "app" and a "role" label. Policy i selects
// app%d || role%d and its ingress rules use the selector sets of one role
// and one app, so every role's and every app's set is in use: the local
// endpoints carry every role and (at the default sizes) every app, so
// every policy is active.
type labelBench struct {
	m      *datastoretest.Member
	a      *Agent
	local  []*api.WorkloadEndpoint
	remote []*api.WorkloadEndpoint // up to benchLocal, spread over all remote endpoints
	roles  int
	apply  bool // BRINDLE_BENCH_WRITE=apply: see write
}

func newLabelBench(b *testing.B) *labelBench {
	netnstest.RequireRoot(b)
	var apply bool
	switch v := os.Getenv("BRINDLE_BENCH_WRITE"); v {
	case "", "update":
	case "apply":
		apply = true
	default:
		b.Fatalf("BRINDLE_BENCH_WRITE=%q: want update or apply", v)
	}
	host := netnstest.NewHostNS(b, "agentbench")
	// etcd runs in this process unless BRINDLE_BENCH_ETCD=separate puts it
	// in a process of its own, as beside a production node. On the 2-vCPU
	// test machine that leaves the median alone and lengthens the tail
	// (docs/benchmarks-agent.md): two processes' wakeups contend for the
	// CPUs.
	sep := os.Getenv("BRINDLE_BENCH_ETCD") == "separate"
	lb := &labelBench{m: datastoretest.NewWith(b, datastoretest.Options{MaxTxnOps: 1024, Separate: sep}), apply: apply}
	ctx := context.Background()

	remote := benchSize(b, "BRINDLE_BENCH_REMOTE", benchRemote)
	policies := benchSize(b, "BRINDLE_BENCH_POLICIES", benchPolicies)
	// Label values scale with the policy count so that each endpoint is
	// selected by about as many policies at every size (50 apps and 10
	// roles at the default 300).
	apps, roles := max(50, policies/6), max(10, policies/30)
	lb.roles = roles
	stride := max(1, remote/benchLocal)
	var objs []api.Object
	objs = append(objs, api.NamespaceProfile("bench", nil), api.ServiceAccountProfile("bench", "default", nil))
	for i := range benchLocal + remote {
		node := "remote"
		if i < benchLocal {
			node = labHost
		}
		ip := netip.AddrFrom4([4]byte{10, byte(66 + i>>16), byte(i >> 8), byte(i)})
		w := wep(podSpec{Namespace: "bench", Name: fmt.Sprintf("pod-%d", i), Node: node, Iface: fmt.Sprintf("cali%05d", i), IP: ip,
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%apps), "role": fmt.Sprintf("role%d", i%roles)}})
		switch {
		case i < benchLocal:
			lb.local = append(lb.local, w)
			addBenchLink(b, host, w.Spec.InterfaceName, fmt.Sprintf("bp%05d", i))
		case (i-benchLocal)%stride == 0 && len(lb.remote) < benchLocal:
			lb.remote = append(lb.remote, w)
		}
		objs = append(objs, w)
	}
	for i := range policies {
		order := float64(i)
		p := &api.GlobalNetworkPolicy{}
		p.Kind, p.APIVersion, p.Name = "GlobalNetworkPolicy", api.APIVersion, fmt.Sprintf("pol-%d", i)
		p.Spec = api.GlobalNetworkPolicySpec{
			Order:    &order,
			Selector: fmt.Sprintf("app == 'app%d' || role == 'role%d'", i%apps, i%roles),
			Ingress: []api.Rule{
				{Action: api.Allow, Source: api.EntityRule{Selector: fmt.Sprintf("role == 'role%d'", (i+1)%roles)}},
				{Action: api.Deny, Source: api.EntityRule{Selector: fmt.Sprintf("app == 'app%d'", (i+7)%apps)}},
			},
			Egress: []api.Rule{{Action: api.Allow}},
		}
		api.Default(p)
		objs = append(objs, p)
	}
	for len(objs) > 0 { // in batches: etcd caps a request's size
		n := min(len(objs), 5000)
		if _, err := lb.m.Client.WriteBatch(ctx, datastore.OpApply, objs[:n]); err != nil {
			b.Fatal(err)
		}
		objs = objs[n:]
	}

	var nftCfg nft.Config
	if v := os.Getenv("BRINDLE_BENCH_RETAIN_CLASSES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("BRINDLE_BENCH_RETAIN_CLASSES=%q: want an integer", v)
		}
		nftCfg.RetainClasses = n
	}
	a, err := New(Config{Hostname: labHost, Datastore: lb.m.Connect(datastore.Config{}), Netns: host.Path(),
		Logger: slog.New(slog.DiscardHandler), Nft: nftCfg})
	if err != nil {
		b.Fatal(err)
	}
	lb.a = a
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	b.Cleanup(func() { cancel(); <-done })
	rev, err := lb.m.Client.Revision(ctx)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	lb.wait(b, rev)
	st := a.Status()
	// Chains cost every transaction: the kernel walks them all at each
	// commit.
	chains, err := exec.Command("nsenter", "--net="+host.Path(), "nft", "list", "chains").Output()
	if err != nil {
		b.Fatalf("nft list chains: %v", err)
	}
	b.Logf("start of day: %s; %d local and %d remote endpoints, %d policies (%d active), %d IP sets, %d nft chains", time.Since(start).Round(time.Millisecond),
		st.LocalEndpoints, remote, policies, st.ActivePolicies, st.IPSets, bytes.Count(chains, []byte("\tchain ")))
	return lb
}

// addBenchLink adds a veth pair with both ends in the host namespace, up,
// to stand in for a workload (this kernel has no dummy links); the peer is
// up too, so the link has carrier and gets its route.
func addBenchLink(b *testing.B, host *netnstest.NS, name, peerName string) {
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName}
	if err := host.Handle().LinkAdd(d); err != nil {
		b.Fatal(err)
	}
	if err := host.Handle().LinkSetUp(d); err != nil {
		b.Fatal(err)
	}
	peer, err := host.Handle().LinkByName(peerName)
	if err != nil {
		b.Fatal(err)
	}
	if err := host.Handle().LinkSetUp(peer); err != nil {
		b.Fatal(err)
	}
}

// wait returns once the agent has programmed revision rev.
func (lb *labelBench) wait(b *testing.B, rev int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if !lb.a.WaitProgrammed(ctx, rev) {
		b.Fatalf("revision %d not programmed: %+v", rev, lb.a.Status())
	}
}

// write stores w and waits until the agent has programmed it; it returns
// how long the datastore write itself took. The write is an Update, one
// compare-and-swap on the resourceVersion w holds from its last write:
// what the Kubernetes controller does when a pod's labels change
// (integrations/kubernetes, syncPod). With BRINDLE_BENCH_WRITE=apply it is
// an Apply, a read and then a swap on the revision read, what brindlectl
// apply does (and what sessions up to 11 timed).
func (lb *labelBench) write(b *testing.B, w *api.WorkloadEndpoint) time.Duration {
	ctx := context.Background()
	store := lb.m.Client.Update
	if lb.apply {
		w.ResourceVersion = ""
		store = lb.m.Client.Apply
	}
	t0 := time.Now()
	region := trace.StartRegion(ctx, "write")
	out, err := store(ctx, w)
	region.End()
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	rv, err := datastore.ParseRevision(out.GetResourceVersion())
	if err != nil {
		b.Fatal(err)
	}
	lb.wait(b, rv)
	return took
}

// run times b.N label changes from the datastore write to the agent having
// programmed it: iteration i writes change(i). It reports the CPU per
// change of this process (agent, etcd unless it runs separately, the
// writing client and the kernel work done in our syscalls) and of a
// separate etcd process (on a shared machine, steadier than latency), the
// p50, p90, p99 and maximum latency, and the p50 and p99 of the agent's
// own part (Status.LastUpdateToProgrammed).
func (lb *labelBench) run(b *testing.B, change func(i int) *api.WorkloadEndpoint) {
	// Time a settled host (docs/agent.md): the setup's own changes may
	// have left generic classes or retained policies.
	for deadline := time.Now().Add(time.Minute); lb.a.Status().Unsettled; {
		if time.Now().After(deadline) {
			b.Fatal("the agent did not settle within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	settles := testutil.ToFloat64(lb.a.m.settles)
	var starts []time.Time
	lat, lag, wr := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	// Settles (nft generic-class batches) that ran while each change was
	// in flight, for BRINDLE_BENCH_CHANGES.
	during := make([]int, 0, b.N)
	cpu0, etcd0, faults0 := processCPU(), pidCPU(lb.m.Pid()), processFaults()
	// BRINDLE_BENCH_CPUPROFILE=file profiles the timed changes only (the
	// test binary's -test.cpuprofile also holds the start of day).
	stopProfile := recordTo(b, "BRINDLE_BENCH_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	defer stopProfile()
	// BRINDLE_BENCH_MEMPROFILE=file writes heap profiles before and after
	// the timed changes (file.base and file; the settle that follows is
	// not in them): go tool pprof -diff_base file.base
	// -sample_index=alloc_space shows what the changes allocate.
	heapProfile := func(string) {}
	memProfile := ""
	if f := os.Getenv("BRINDLE_BENCH_MEMPROFILE"); f != "" {
		heapProfile = func(name string) {
			runtime.GC() // the profile holds what was allocated up to the last GC
			out, err := os.Create(name)
			if err != nil {
				b.Fatal(err)
			}
			defer out.Close()
			if err := pprof.Lookup("allocs").WriteTo(out, 0); err != nil {
				b.Fatal(err)
			}
		}
		heapProfile(f + ".base")
		memProfile = f
	}
	// BRINDLE_BENCH_PACE=20ms starts a change every 20 ms (or as soon as
	// the last is programmed, when that takes longer) instead of back to
	// back: the latency of a change on a busy host rather than under a
	// saturating stream, whose allocations keep a collection of the whole
	// heap running a few percent of the time. ns/op then includes the
	// pause.
	pace := benchPace(b)
	rttBefore := idleRTT(b)
	floor := lb.floorWrite(b, pace)
	// BRINDLE_BENCH_TRACE=file writes an execution trace of the timed
	// changes with a region "write" around each datastore write: go tool
	// trace file, "User-defined regions", splits each write's time into
	// running, waiting to run, network wait and so on.
	stopTrace := recordTo(b, "BRINDLE_BENCH_TRACE", trace.Start, trace.Stop)
	defer stopTrace()
	next := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if pace > 0 {
			time.Sleep(time.Until(next))
			if next = next.Add(pace); next.Before(time.Now()) {
				next = time.Now()
			}
		}
		w := change(i)
		s0 := testutil.ToFloat64(lb.a.m.settles)
		t0 := time.Now()
		wr = append(wr, lb.write(b, w))
		lat = append(lat, time.Since(t0))
		during = append(during, int(testutil.ToFloat64(lb.a.m.settles)-s0))
		lag = append(lag, lb.a.Status().LastUpdateToProgrammed)
		starts = append(starts, t0)
	}
	b.StopTimer()
	stopTrace()
	if f := os.Getenv("BRINDLE_BENCH_CHANGES"); f != "" {
		writeChanges(b, f, starts, lat, lag, wr, during)
	}
	stopProfile() // only ours: -test.cpuprofile's runs on
	if memProfile != "" {
		heapProfile(memProfile)
	}
	// The settle that follows the changes (generic classes get chains of
	// their own): the loop programs nothing while it runs.
	for deadline := time.Now().Add(time.Minute); lb.a.Status().Unsettled; {
		if time.Now().After(deadline) {
			b.Fatal("the agent did not settle within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rttAfter := idleRTT(b) // the host settled: nothing of ours runs
	if n := testutil.ToFloat64(lb.a.m.settles) - settles; n > 0 {
		// Settle transactions (batches) during and after the changes,
		// and how long the last held the loop.
		b.ReportMetric(n, "settles")
		b.ReportMetric(float64(lb.a.Status().LastSettle.Microseconds())/1000, "settle-ms")
	}
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	// Page faults cost much more on some virtual machines (this one's
	// shadow paging) than the work that causes them.
	b.ReportMetric(float64(processFaults()-faults0)/float64(b.N), "faults/op")
	if pid := lb.m.Pid(); pid != 0 {
		b.ReportMetric(float64((pidCPU(pid)-etcd0).Microseconds())/1000/float64(b.N), "etcd-cpu-ms/op")
	}
	slices.Sort(lat)
	slices.Sort(lag)
	slices.Sort(wr)
	q := func(ds []time.Duration, p float64) float64 { return ms(quantile(ds, p)) }
	if pace > 0 {
		b.ReportMetric(float64(pace.Microseconds())/1000, "pace-ms")
	}
	// The machine's own latency just before and after the changes
	// (floorWrite, idleRTT): on the 2-vCPU test VM it varies tenfold
	// between phases minutes apart, and every latency here with it.
	b.ReportMetric(ms(floor), "floor-write-p99-ms")
	b.ReportMetric(ms(rttBefore), "rtt-before-p99-ms")
	b.ReportMetric(ms(rttAfter), "rtt-after-p99-ms")
	b.ReportMetric(q(lat, 0.5), "p50-ms")
	b.ReportMetric(q(lat, 0.9), "p90-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(lat, 1), "max-ms")
	// The agent's part: from its receiving the change (the watch event)
	// to the kernel having it, without the etcd write that shares this
	// machine's two CPUs.
	b.ReportMetric(q(lag, 0.5), "agent-p50-ms")
	b.ReportMetric(q(lag, 0.99), "agent-p99-ms")
	// The datastore write alone (see write: a compare-and-swap, after a
	// read with BRINDLE_BENCH_WRITE=apply), which end to end includes.
	b.ReportMetric(q(wr, 0.99), "write-p99-ms")
}

// writeChanges writes one line per timed change (BRINDLE_BENCH_CHANGES):
// its start on CLOCK_MONOTONIC in seconds, then the latency end to end,
// the agent's part and the datastore write in milliseconds, then how many
// settle batches ran while it was in flight. The start
// lines the change up with the samples of `perf record -a -k
// CLOCK_MONOTONIC`, to see what the slow ones share.
func writeChanges(b *testing.B, file string, starts []time.Time, lat, lag, wr []time.Duration, during []int) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		b.Fatal(err)
	}
	now, mono := time.Now(), time.Duration(ts.Nano())
	var buf bytes.Buffer
	for i, t := range starts {
		fmt.Fprintf(&buf, "%.6f %.3f %.3f %.3f %d\n", (mono - now.Sub(t)).Seconds(), ms(lat[i]), ms(lag[i]), ms(wr[i]), during[i])
	}
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPrivilegedLabelChange measures how long a local endpoint's label
// change takes from the datastore write to the ruleset being in the kernel
// (the agent has applied it: nftables transaction and route reconcile
// done), on the labelBench host. Each iteration flips one local endpoint's
// "role" label (to "flipped" and back), which moves it in and out of the
// policies selecting it and in and out of rule selector sets.
func BenchmarkPrivilegedLabelChange(b *testing.B) {
	lb := newLabelBench(b)
	lb.run(b, func(i int) *api.WorkloadEndpoint {
		w := lb.local[i%len(lb.local)]
		if w.Labels["role"] == "flipped" {
			w.Labels["role"] = fmt.Sprintf("role%d", i%lb.roles)
		} else {
			w.Labels["role"] = "flipped"
		}
		return w
	})
}

// BenchmarkPrivilegedLabelChangeSiblingClass: a local endpoint takes the
// labels of a sibling, the way a pod joins what the other pods of its
// deployment are, so it moves to a class (dataplane/nft, class.go) that
// exists: in the nftables dataplane only the classify table changes. Two
// anchor endpoints keep two classes alive; before timing, every other
// local endpoint takes the first anchor's labels (leaving its own class);
// then each iteration moves one of them to the other anchor's labels. Every
// local endpoint's own labels select a distinct set of policies, so
// BenchmarkPrivilegedLabelChange (a "flipped" role no other endpoint has)
// always needs a new class instead.
func BenchmarkPrivilegedLabelChangeSiblingClass(b *testing.B) {
	lb := newLabelBench(b)
	anchors := [2]map[string]string{maps.Clone(lb.local[0].Labels), maps.Clone(lb.local[1].Labels)}
	movers := lb.local[2:]
	at := make([]int, len(movers)) // which anchor's labels each mover has
	for _, w := range movers {
		w.Labels = maps.Clone(anchors[0])
		lb.write(b, w)
	}
	lb.run(b, func(i int) *api.WorkloadEndpoint {
		k := i % len(movers)
		at[k] = 1 - at[k]
		movers[k].Labels = maps.Clone(anchors[at[k]])
		return movers[k]
	})
}

// BenchmarkPrivilegedRemoteLabelChange is BenchmarkPrivilegedLabelChange
// for the common label change in a big cluster: a remote endpoint's. Each
// iteration moves one remote endpoint's "role" label to the next role and
// back, so its address leaves one role's selector set and joins the next
// one's (both in use by active policies); no local endpoint's policies
// change, only IP set members.
func BenchmarkPrivilegedRemoteLabelChange(b *testing.B) {
	lb := newLabelBench(b)
	roles := make([][2]string, len(lb.remote)) // each endpoint's own role and the next one
	for k, w := range lb.remote {
		n, err := strconv.Atoi(strings.TrimPrefix(w.Labels["role"], "role"))
		if err != nil {
			b.Fatalf("remote endpoint %s: role %q", w.Name, w.Labels["role"])
		}
		roles[k] = [2]string{w.Labels["role"], fmt.Sprintf("role%d", (n+1)%lb.roles)}
	}
	lb.run(b, func(i int) *api.WorkloadEndpoint {
		k := i % len(lb.remote)
		w := lb.remote[k]
		if w.Labels["role"] == roles[k][0] {
			w.Labels["role"] = roles[k][1]
		} else {
			w.Labels["role"] = roles[k][0]
		}
		return w
	})
}

// recordTo starts a recording (a CPU profile, an execution trace) into
// the file named by environment variable env, if set; the returned stop
// function ends it and may be called again.
func recordTo(b *testing.B, env string, start func(io.Writer) error, stop func()) func() {
	f := os.Getenv(env)
	if f == "" {
		return func() {}
	}
	out, err := os.Create(f)
	if err != nil {
		b.Fatal(err)
	}
	if err := start(out); err != nil {
		out.Close()
		b.Fatalf("%s: %v", env, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			out.Close()
		})
	}
}

// idleRTT returns the p99 of 200 round trips of a few bytes between two
// goroutines over loopback TCP, each after 10 ms of sleep: what a wakeup
// costs on this machine at the moment, with nothing of Brindle's in it.
// The benchmarks' changes are chains of such wakeups (etcd, the watch,
// the agent's loop, netlink).
func idleRTT(b *testing.B) time.Duration {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		echo := make([]byte, 64)
		for {
			n, err := c.Read(echo)
			if err != nil {
				return
			}
			if _, err := c.Write(echo[:n]); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	rtts := make([]time.Duration, 0, 200)
	for range cap(rtts) {
		time.Sleep(10 * time.Millisecond)
		t0 := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	slices.Sort(rtts)
	return quantile(rtts, 0.99)
}

// floorWrite returns the p99 of 100 datastore writes that no agent reacts
// to, one per pace (back to back without one): each swaps a
// WorkloadEndpoint's JSON into a key outside every prefix Brindle watches,
// on the revision of the last (with BRINDLE_BENCH_WRITE=apply, on a
// revision it reads first), the round trips of a change's write: what
// that write costs on this machine just before the timed changes, with
// nothing of the agent's after it. Like idleRTT it tells the machine's
// phase apart; it does not bound each change.
func (lb *labelBench) floorWrite(b *testing.B, pace time.Duration) time.Duration {
	b.Helper()
	ctx := context.Background()
	raw := lb.m.Client.Raw()
	const key = "/brindle-bench/floor"
	v, err := json.Marshal(lb.local[0])
	if err != nil {
		b.Fatal(err)
	}
	rev, err := raw.Create(ctx, key, v) // each benchmark has a store of its own
	if err != nil {
		b.Fatal(err)
	}
	ws := make([]time.Duration, 0, 100)
	for range cap(ws) {
		time.Sleep(pace)
		t0 := time.Now()
		if lb.apply {
			kv, err := raw.Get(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			rev = kv.ModRevision
		}
		if rev, err = raw.Update(ctx, key, v, rev); err != nil {
			b.Fatal(err)
		}
		ws = append(ws, time.Since(t0))
	}
	slices.Sort(ws)
	return quantile(ws, 0.99)
}

// quantile returns the p-quantile (0 to 1) of sorted durations.
func quantile(sorted []time.Duration, p float64) time.Duration {
	return sorted[int(p*float64(len(sorted)-1))]
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processFaults is this process's page faults so far (minor and major):
// the agent's, the benchmark's and, unless it runs separately, etcd's.
func processFaults() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt + ru.Majflt
}

// pidCPU returns another process's user+system CPU time (from
// /proc/<pid>/stat), or 0 when it cannot be read.
func pidCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start at state;
	// utime and stime are fields 14 and 15 of the whole line.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times (100
// on every Linux architecture Go supports).
const clockTicks = 100
