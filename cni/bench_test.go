package cni_test

import (
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/cni/wire"
)

// BenchmarkAdd measures ADD latency through libcni and the real plugin
// binary (fork+exec, agent round trip, IPAM on embedded etcd, endpoint
// write, policy-ready wait, veth setup) with 1 and 50 ADDs in flight at
// once. With ready=agent the real agent programs each endpoint's policy
// before ADD returns; with ready=none Ready returns at once. ns/op is one
// round of `conc` ADDs; p50-ms and p99-ms are per ADD; plugin-cpu-ms is
// the CPU (user+system) the plugin processes used per ADD, and
// test-cpu-ms what this process (etcd, service, agent, libcni) used per
// ADD. DELs run outside the timer.
func BenchmarkAdd(b *testing.B) {
	for _, ready := range []string{"none", "agent"} {
		for _, conc := range []int{1, 50} {
			b.Run(fmt.Sprintf("ready=%s/concurrent=%d", ready, conc), func(b *testing.B) {
				benchmarkAddRounds(b, ready == "agent", conc, true)
			})
		}
	}
}

// BenchmarkAdd100Pods: 100 pods added at once on one host with the real
// agent; ns/op is the time until the last ADD is done (every pod has its
// interface, address, routes and programmed policy).
func BenchmarkAdd100Pods(b *testing.B) {
	benchmarkAddRounds(b, true, 100, false)
}

func benchmarkAddRounds(b *testing.B, agent bool, conc int, percentiles bool) {
	h := newHarness(b, harnessOpts{})
	if agent {
		h.startAgentProgrammed()
	}
	h.warm(b)
	pods := make([]*pod, conc)
	for i := range pods {
		pods[i] = h.newPod(fmt.Sprintf("b%d", i), "", i%2 == 0)
	}
	var lat []time.Duration
	var mu sync.Mutex
	var childCPU, selfCPU time.Duration
	round := 0
	for b.Loop() {
		round++
		var wg sync.WaitGroup
		errs := make(chan error, conc)
		c0, s0 := cpuTimes(syscall.RUSAGE_CHILDREN), cpuTimes(syscall.RUSAGE_SELF)
		for i, p := range pods {
			p.rt.ContainerID = fmt.Sprintf("bench-%d-%d", round, i)
			if p.k8s {
				p.rt.Args[3][1] = p.rt.ContainerID
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if _, err := h.add(p); err != nil {
					errs <- err
					return
				}
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}()
		}
		wg.Wait()
		childCPU += cpuTimes(syscall.RUSAGE_CHILDREN) - c0
		selfCPU += cpuTimes(syscall.RUSAGE_SELF) - s0
		close(errs)
		for err := range errs {
			b.Fatalf("ADD: %v", err)
		}
		b.StopTimer()
		for _, p := range pods {
			if err := h.del(p); err != nil {
				b.Fatalf("DEL: %v", err)
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	if percentiles {
		reportPercentiles(b, lat)
	}
	if n := round * conc; n > 0 {
		b.ReportMetric(float64(childCPU)/float64(time.Millisecond)/float64(n), "plugin-cpu-ms")
		b.ReportMetric(float64(selfCPU)/float64(time.Millisecond)/float64(n), "test-cpu-ms")
	}
}

// cpuTimes is user plus system CPU of who (RUSAGE_SELF or
// RUSAGE_CHILDREN: waited-for children, here the plugin processes).
func cpuTimes(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// warm claims this host's block (one ADD and DEL in-process), so that
// measured ADDs see a node's steady state, not its first pod.
func (h *harness) warm(b *testing.B) {
	att := wire.Attachment{Network: testNetwork, ContainerID: "warm", IfName: "eth0"}
	if _, err := h.svc.Add(b.Context(), &wire.AddRequest{Attachment: att, AssignIPv4: true}); err != nil {
		b.Fatal(err)
	}
	if _, err := h.svc.Del(b.Context(), &wire.DelRequest{Attachment: att}); err != nil {
		b.Fatal(err)
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := int(p * float64(len(lat)-1))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkServiceAdd is the agent's share of one ADD, in-process: stale
// handle check, AutoAssign on embedded etcd, endpoint write, Ready (at
// once). DEL runs outside the timer.
func BenchmarkServiceAdd(b *testing.B) {
	h := newHarness(b, harnessOpts{})
	ctx := b.Context()
	i := 0
	for b.Loop() {
		i++
		att := wire.Attachment{Network: testNetwork, ContainerID: fmt.Sprintf("svc-%d", i), IfName: "eth0",
			K8s: &wire.K8s{Namespace: "team-a", Pod: fmt.Sprintf("p%d", i)}}
		if _, err := h.svc.Add(ctx, &wire.AddRequest{Attachment: att, AssignIPv4: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := h.svc.Del(ctx, &wire.DelRequest{Attachment: att}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkServiceAddConcurrent is the agent's share of `conc` ADDs
// arriving at once, in-process (no plugin binary, no kernel work): stale
// handle check, group-committed assignment on embedded etcd, endpoint
// write, Ready. With ready=agent, Ready is the real agent's readiness wait
// (it programs nftables for each endpoint in a host namespace; needs
// root); with ready=none it returns at once. ns/op is one round; p50-ms
// and p99-ms are per ADD. DELs run outside the timer.
func BenchmarkServiceAddConcurrent(b *testing.B) {
	for _, ready := range []string{"none", "agent"} {
		for _, conc := range []int{1, 50} {
			b.Run(fmt.Sprintf("ready=%s/concurrent=%d", ready, conc), func(b *testing.B) {
				h := newHarness(b, harnessOpts{})
				if ready == "agent" {
					h.startAgentProgrammed()
				}
				h.warm(b)
				ctx := b.Context()
				var lat []time.Duration
				var mu sync.Mutex
				round := 0
				for b.Loop() {
					round++
					atts := make([]wire.Attachment, conc)
					var wg sync.WaitGroup
					errs := make(chan error, conc)
					for i := range atts {
						atts[i] = wire.Attachment{Network: testNetwork, ContainerID: fmt.Sprintf("svc-%d-%d", round, i), IfName: "eth0",
							K8s: &wire.K8s{Namespace: "team-a", Pod: fmt.Sprintf("p%d", i)}}
						wg.Add(1)
						go func() {
							defer wg.Done()
							start := time.Now()
							if _, err := h.svc.Add(ctx, &wire.AddRequest{Attachment: atts[i], AssignIPv4: true}); err != nil {
								errs <- err
								return
							}
							d := time.Since(start)
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
						}()
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						b.Fatal(err)
					}
					b.StopTimer()
					for _, att := range atts {
						if _, err := h.svc.Del(ctx, &wire.DelRequest{Attachment: att}); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				b.StopTimer()
				reportPercentiles(b, lat)
			})
		}
	}
}
