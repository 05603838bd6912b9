package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/dataplane/nft"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/policy/scenario"
)

// lab is a test host namespace with workloads attached by veth, an
// embedded etcd holding their WorkloadEndpoints, and an agent (in this
// process) programming the host namespace.
type lab struct {
	t    testing.TB
	host *netnstest.NS
	etcd *datastoretest.Member
	ds   *datastore.Client
	pods map[string]*netnstest.Workload // by "namespace/name"
	// served ports per pod, "6379/TCP"
	served map[string]map[string]bool
	agent  *runningAgent
	sock   string
	// nft configures the agent's nftables dataplane (zero: defaults).
	nft nft.Config
	// settle, when set, is the agent's SettleDelay and SettleMaxDelay.
	settle time.Duration
}

const labHost = "node-1"

func newLab(t testing.TB) *lab {
	t.Helper()
	netnstest.RequireRoot(t)
	l := &lab{t: t, pods: map[string]*netnstest.Workload{}, served: map[string]map[string]bool{}}
	l.host = netnstest.NewHostNS(t, "agent")
	l.etcd = datastoretest.New(t)
	l.ds = l.etcd.Client
	l.sock = filepath.Join(t.TempDir(), "agent.sock")
	t.Cleanup(func() {
		if l.agent != nil {
			l.agent.stop()
		}
	})
	return l
}

type runningAgent struct {
	a      *Agent
	cancel context.CancelFunc
	done   chan error
}

func (r *runningAgent) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("agent did not stop in 20s")
	}
}

// start runs an agent programming the lab's host namespace.
func (l *lab) start(layers ...Layer) *runningAgent {
	l.t.Helper()
	a, err := New(Config{
		Hostname:    labHost,
		Datastore:   l.etcd.Connect(datastore.Config{}),
		LocalLayers: layers,
		Netns:       l.host.Path(),
		Nft:         l.nft,
		SocketPath:  l.sock,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		RetryMin:    10 * time.Millisecond,
		RetryMax:    time.Second,
		SettleDelay: l.settle, SettleMaxDelay: l.settle,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	l.agent = r
	return r
}

// sync waits until the agent has programmed everything written so far.
func (l *lab) sync() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rev, err := l.ds.Revision(ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	if !l.agent.a.WaitProgrammed(ctx, rev) {
		l.t.Fatalf("agent did not program revision %d; status %+v", rev, l.agent.a.Status())
	}
}

func (l *lab) apply(objs ...api.Object) {
	l.t.Helper()
	if len(objs) == 0 {
		return
	}
	if _, err := l.ds.WriteBatch(context.Background(), datastore.OpApply, objs); err != nil {
		l.t.Fatalf("writing %d objects: %v", len(objs), err)
	}
}

func (l *lab) delete(objs ...api.Object) {
	l.t.Helper()
	if _, err := l.ds.WriteBatch(context.Background(), datastore.OpDelete, objs); err != nil {
		l.t.Fatalf("deleting %d objects: %v", len(objs), err)
	}
}

func ifaceFor(id string) string {
	return fmt.Sprintf("cali%08x", crc32.ChecksumIEEE([]byte(id)))
}

// pod creates (once) the workload namespace for pod id with address ip.
func (l *lab) pod(id string, ip netip.Addr) *netnstest.Workload {
	if w, ok := l.pods[id]; ok {
		if w.IPs[0] != ip {
			l.t.Fatalf("pod %s already has address %s, not %s", id, w.IPs[0], ip)
		}
		return w
	}
	name := strings.ReplaceAll(strings.ReplaceAll(id, "/", "-"), ".", "-")
	if len(name) > 20 {
		name = name[:20]
	}
	w := netnstest.AddWorkload(l.t, l.host, netnstest.WorkloadOpts{Name: strings.ToLower(name), IfName: ifaceFor(id), IPs: []netip.Addr{ip}})
	l.pods[id] = w
	l.served[id] = map[string]bool{}
	return w
}

// serve starts an echo server for port/proto in pod id (once).
func (l *lab) serve(id string, port uint16, proto string) {
	key := fmt.Sprintf("%d/%s", port, proto)
	if l.served[id][key] {
		return
	}
	w := l.pods[id]
	switch proto {
	case "TCP":
		w.ServeTCP(port)
	case "UDP":
		w.ServeUDP(port)
	case "SCTP":
		if err := w.ServeSCTP(port); err != nil && !errors.Is(err, netnstest.ErrSCTPUnavailable) {
			l.t.Fatal(err)
		}
	}
	l.served[id][key] = true
}

// probe sends one real probe from pod from to pod to.
func (l *lab) probe(from, to string, port uint16, proto string) (bool, error) {
	return netnstest.Probe(l.pods[from].NS, l.pods[to].IPs[0], port, proto, 400*time.Millisecond)
}

// world is a scenario's objects as the datastore holds them.
type world struct {
	built   *scenario.Built
	objects []api.Object // profiles, endpoints, tiers, policies, sets
}

// worldOf turns a built scenario into datastore objects: one
// WorkloadEndpoint per pod (on this lab's host, Kubernetes style), the
// kns./ksa. profiles, and the scenario's policy documents as decoded by
// api.DecodeAndValidate.
func worldOf(t testing.TB, b *scenario.Built) world {
	t.Helper()
	w := world{built: b}
	s := b.Scenario
	nsLabels := map[string]map[string]string{}
	for name, ns := range s.Namespaces {
		nsLabels[name] = ns.Labels
	}
	sas := map[[2]string]map[string]string{}
	for _, sa := range s.ServiceAccounts {
		sas[[2]string{sa.Namespace, sa.Name}] = sa.Labels
	}
	for _, p := range s.Pods {
		sa := p.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		if _, ok := nsLabels[p.Namespace]; !ok {
			nsLabels[p.Namespace] = nil
		}
		if _, ok := sas[[2]string{p.Namespace, sa}]; !ok {
			sas[[2]string{p.Namespace, sa}] = nil
		}
		id := p.Namespace + "/" + p.Name
		var ports []api.WorkloadEndpointPort
		for _, pp := range p.Ports {
			proto := pp.Protocol
			if proto == "" {
				proto = "TCP"
			}
			if pp.Name != "" {
				ports = append(ports, api.WorkloadEndpointPort{Name: pp.Name, Protocol: api.ProtocolFromString(proto), Port: pp.Port})
			}
		}
		w.objects = append(w.objects, wep(podSpec{Namespace: p.Namespace, Name: p.Name, Node: labHost, Iface: ifaceFor(id),
			IP: b.PodIP[id], Labels: p.Labels, Ports: ports, ServiceAccount: sa}))
	}
	names := make([]string, 0, len(nsLabels))
	for n := range nsLabels {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w.objects = append(w.objects, api.NamespaceProfile(n, nsLabels[n]))
	}
	for k, labels := range sas {
		w.objects = append(w.objects, api.ServiceAccountProfile(k[0], k[1], labels))
	}
	for i, raw := range s.Policies {
		objs, err := api.DecodeAndValidate(raw)
		if err != nil {
			t.Fatalf("scenario %s: policies[%d]: %v", s.Name, i, err)
		}
		w.objects = append(w.objects, objs...)
	}
	return w
}

// probeCase is one probe with the evaluator's verdict.
type probeCase struct {
	from, to string
	port     uint16
	proto    string
	want     bool
	explain  string
}

func (p probeCase) String() string {
	return fmt.Sprintf("%s -> %s %d/%s", p.from, p.to, p.port, p.proto)
}

// evaluate asks the reference evaluator about a probe.
func evaluate(t testing.TB, b *scenario.Built, from, to string, port uint16, proto string) probeCase {
	t.Helper()
	pk, err := b.Packet(&scenario.Probe{From: from, To: to, Port: port, Protocol: proto}, false)
	if err != nil {
		t.Fatal(err)
	}
	r := b.Evaluator.Evaluate(pk)
	return probeCase{from: from, to: to, port: port, proto: proto, want: r.Allowed,
		explain: "egress: " + r.Egress.String() + "\n    ingress: " + r.Ingress.String()}
}

// load creates the scenario's pods (namespaces, servers for the probe
// ports) and writes its world.
func (l *lab) load(w world, ports []string) {
	l.t.Helper()
	for _, id := range w.built.PodOrder {
		l.pod(id, w.built.PodIP[id])
		for _, pp := range ports {
			port, proto, err := scenario.ParsePortProtocol(pp)
			if err != nil {
				l.t.Fatal(err)
			}
			l.serve(id, port, strings.ToUpper(proto))
		}
	}
	l.apply(w.objects...)
}

// check runs the probes in parallel and returns those whose real verdict
// differs from the expected one.
func (l *lab) check(cases []probeCase) (wrong []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A probe expected to connect gets longer: on a loaded machine
			// 400 ms (and 16 probes at once) can time out a connection
			// the kernel allows. One expected to fail keeps the short
			// timeout; a wrong "allowed" verdict still shows.
			timeout := 400 * time.Millisecond
			if c.want {
				timeout = 3 * time.Second
			}
			got, err := netnstest.Probe(l.pods[c.from].NS, l.pods[c.to].IPs[0], c.port, c.proto, timeout)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, netnstest.ErrSCTPUnavailable):
				// Counted by the caller's skip; never a mismatch.
			case err != nil:
				wrong = append(wrong, fmt.Sprintf("%s: probe error: %v", c, err))
			case got != c.want:
				wrong = append(wrong, fmt.Sprintf("%s: kernel says allowed=%v, evaluator says %v\n    %s", c, got, c.want, c.explain))
			}
		}()
	}
	wg.Wait()
	sort.Strings(wrong)
	return wrong
}
