package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
)

// Loaded-state sizes for BenchmarkPrivilegedLabelChange. The remote
// endpoint and policy counts can be raised to the full state
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

// BenchmarkPrivilegedLabelChange measures how long a label change takes
// from the datastore write to the ruleset being in the kernel (the agent
// has applied it: nftables transaction and route reconcile done), on a host
// with 250 local endpoints, 3,000 remote endpoints and 300 policies. Each
// iteration flips one local endpoint's "role" label, which moves it in and
// out of the policies selecting it and in and out of rule selector sets.
// It reports p50 and p99 latency.
func BenchmarkPrivilegedLabelChange(b *testing.B) {
	netnstest.RequireRoot(b)
	host := netnstest.NewHostNS(b, "agentbench")
	m := datastoretest.NewWith(b, datastoretest.Options{MaxTxnOps: 1024})
	ctx := context.Background()

	remote := benchSize(b, "BRINDLE_BENCH_REMOTE", benchRemote)
	policies := benchSize(b, "BRINDLE_BENCH_POLICIES", benchPolicies)
	// Label values scale with the policy count so that each endpoint is
	// selected by about as many policies at every size (50 apps and 10
	// roles at the default 300).
	apps, roles := max(50, policies/6), max(10, policies/30)
	var objs []api.Object
	objs = append(objs, api.NamespaceProfile("bench", nil), api.ServiceAccountProfile("bench", "default", nil))
	weps := make([]*api.WorkloadEndpoint, 0, benchLocal)
	for i := range benchLocal + remote {
		node := "remote"
		if i < benchLocal {
			node = labHost
		}
		ip := netip.AddrFrom4([4]byte{10, byte(66 + i>>16), byte(i >> 8), byte(i)})
		w := wep(podSpec{Namespace: "bench", Name: fmt.Sprintf("pod-%d", i), Node: node, Iface: fmt.Sprintf("cali%05d", i), IP: ip,
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%apps), "role": fmt.Sprintf("role%d", i%roles)}})
		if i < benchLocal {
			weps = append(weps, w)
			// A veth pair with both ends in the host namespace stands in
			// for a workload (this kernel has no dummy links).
			d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: w.Spec.InterfaceName}, PeerName: fmt.Sprintf("bp%05d", i)}
			if err := host.Handle().LinkAdd(d); err != nil {
				b.Fatal(err)
			}
			if err := host.Handle().LinkSetUp(d); err != nil {
				b.Fatal(err)
			}
			// The peer up too, so the link has carrier and gets its route.
			peer, err := host.Handle().LinkByName(d.PeerName)
			if err != nil {
				b.Fatal(err)
			}
			if err := host.Handle().LinkSetUp(peer); err != nil {
				b.Fatal(err)
			}
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
		if _, err := m.Client.WriteBatch(ctx, datastore.OpApply, objs[:n]); err != nil {
			b.Fatal(err)
		}
		objs = objs[n:]
	}

	a, err := New(Config{Hostname: labHost, Datastore: m.Connect(datastore.Config{}), Netns: host.Path(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	b.Cleanup(func() { cancel(); <-done })
	wait := func(rev int64) {
		wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
		defer wcancel()
		if !a.WaitProgrammed(wctx, rev) {
			b.Fatalf("revision %d not programmed: %+v", rev, a.Status())
		}
	}
	rev, err := m.Client.Revision(ctx)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	wait(rev)
	st := a.Status()
	b.Logf("start of day: %s; %d local and %d remote endpoints, %d policies (%d active), %d IP sets", time.Since(start).Round(time.Millisecond),
		st.LocalEndpoints, remote, policies, st.ActivePolicies, st.IPSets)

	lat := make([]time.Duration, 0, b.N)
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := weps[i%len(weps)]
		if w.Labels["role"] == "flipped" {
			w.Labels["role"] = fmt.Sprintf("role%d", i%roles)
		} else {
			w.Labels["role"] = "flipped"
		}
		w.ResourceVersion = ""
		t0 := time.Now()
		out, err := m.Client.Apply(ctx, w)
		if err != nil {
			b.Fatal(err)
		}
		rv, err := datastore.ParseRevision(out.GetResourceVersion())
		if err != nil {
			b.Fatal(err)
		}
		wait(rv)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	// Process CPU (agent, embedded etcd and the kernel work done in our
	// syscalls) per change: on a shared machine, steadier than latency.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.9), "p90-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
