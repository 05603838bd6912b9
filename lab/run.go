package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/internal/netprobe"
	"github.com/brindle-net/brindle/policy"
	"github.com/brindle-net/brindle/policy/scenario"
)

// BadInputError is a scenario the lab cannot run (exit status 2).
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

// RunOptions tune Run.
type RunOptions struct {
	// Timeout is what each of a blocked probe's two attempts waits;
	// default DefaultProbeTimeout.
	Timeout time.Duration
	// Parallel probes at once; default 64.
	Parallel int
	// Keep leaves the pods, policies and outside addresses in place.
	Keep bool
}

func (o RunOptions) withDefaults() RunOptions {
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = 64
	}
	return o
}

// ProbeResult is one probe sent with real packets.
type ProbeResult struct {
	// ProbeResult.Result.Allowed is what the packets said; Wrong compares
	// it with the probe's expectation.
	scenario.ProbeResult
	// Evaluator is the reference evaluator's verdict for the same packet
	// (with the addresses the lab gave the pods).
	Evaluator bool
	// NotPoliced: a pod-to-itself probe never leaves the pod, so no host
	// policy sees it; it is shown but not counted.
	NotPoliced bool
	// Skipped says why a probe could not be sent ("" when it was).
	Skipped string
}

// Disagrees reports whether the packets and the evaluator differ.
func (r *ProbeResult) Disagrees() bool {
	return !r.NotPoliced && r.Skipped == "" && r.Result.Allowed != r.Evaluator
}

// RunResult is a scenario run on the lab.
type RunResult struct {
	Lab      string
	Built    *scenario.Built // built with the lab's addresses
	Probes   []ProbeResult
	Wrong    int
	Skipped  int
	NotPol   int
	Disagree int
	// Placement maps each pod to its host.
	Placement map[string]string
}

// Check parses and builds a scenario the way Run does, without a lab: a
// scenario Run would refuse is a *BadInputError.
func Check(data []byte) error {
	sc, err := scenario.Parse(data)
	if err != nil {
		return &BadInputError{err}
	}
	if _, err := sc.Build(); err != nil {
		return &BadInputError{err}
	}
	if _, err := scenarioObjects(sc); err != nil {
		return &BadInputError{err}
	}
	return nil
}

// Run runs a scenario's probes on the lab with real packets. A scenario
// that does not parse or build is a *BadInputError.
func Run(ctx context.Context, cfg Config, st *State, data []byte, o RunOptions) (*RunResult, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	sc, err := scenario.Parse(data)
	if err != nil {
		return nil, &BadInputError{err}
	}
	if _, err := sc.Build(); err != nil {
		return nil, &BadInputError{err}
	}
	objs, err := scenarioObjects(sc)
	if err != nil {
		return nil, &BadInputError{err}
	}
	unlock, err := lockFresh(cfg, st)
	if err != nil {
		return nil, err
	}
	defer unlock()
	client, err := st.Client(ctx, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("lab %s datastore: %w", st.Name, err)
	}
	defer client.Close()

	// Pods, spread over the hosts in file order.
	specs := make([]scenario.Pod, len(sc.Pods))
	copy(specs, sc.Pods)
	var podSpecs []PodSpec
	placement := map[string]string{}
	saLabels := map[string]map[string]string{}
	for _, sa := range sc.ServiceAccounts {
		saLabels[sa.Namespace+"/"+sa.Name] = sa.Labels
	}
	for i, p := range specs {
		h := st.Hosts[i%len(st.Hosts)]
		sa := p.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		var ports []api.WorkloadEndpointPort
		for _, pp := range p.Ports {
			if pp.Name != "" {
				ports = append(ports, api.WorkloadEndpointPort{Name: pp.Name, Protocol: api.ProtocolFromString(protoName(pp.Protocol)), Port: pp.Port})
			}
		}
		podSpecs = append(podSpecs, PodSpec{
			Namespace: p.Namespace, Name: p.Name, Host: h.Name, Labels: p.Labels, IP: p.IP,
			ServiceAccount: sa, NamespaceLabels: sc.Namespaces[p.Namespace].Labels,
			ServiceAccountLabels: saLabels[p.Namespace+"/"+sa], Ports: ports,
		})
		placement[p.Namespace+"/"+p.Name] = h.Name
	}
	// Namespaces and service accounts without pods still get profiles.
	var extraProfiles []api.Object
	for name, ns := range sc.Namespaces {
		extraProfiles = append(extraProfiles, api.NamespaceProfile(name, ns.Labels))
	}
	for _, sa := range sc.ServiceAccounts {
		extraProfiles = append(extraProfiles, api.ServiceAccountProfile(sa.Namespace, sa.Name, sa.Labels))
	}
	var created []Pod
	var newObjs []api.Object
	var extAdded []string
	cleanup := func() error {
		if o.Keep {
			return nil
		}
		cctx := context.WithoutCancel(ctx)
		var errs []error
		var ids []string
		for _, p := range created {
			ids = append(ids, p.ID())
		}
		if len(ids) > 0 {
			if err := DelPods(cctx, cfg, st, ids); err != nil {
				errs = append(errs, err)
			}
		}
		if len(newObjs) > 0 {
			// Policies first, pools last (after their pods released).
			slices.Reverse(newObjs)
			if _, err := client.WriteBatch(cctx, datastore.OpDelete, newObjs); err != nil {
				errs = append(errs, fmt.Errorf("delete the scenario's policies: %w", err))
			}
		}
		if err := removeExternal(cctx, st, extAdded); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	res, err := func() (*RunResult, error) {
		// A requested address outside the lab's pool gets a pool of its
		// own (its /24) for the run.
		pools := extraPools(specs)
		if len(pools) > 0 {
			if newPools, err := missing(ctx, client, pools); err != nil {
				return nil, err
			} else {
				newObjs = append(newObjs, newPools...)
			}
			if _, err := client.WriteBatch(ctx, datastore.OpApply, pools); err != nil {
				return nil, fmt.Errorf("IP pools for the requested addresses: %w", err)
			}
		}
		pods, _, err := AddPods(ctx, cfg, st, client, podSpecs)
		for _, p := range pods {
			if _, ok := st.PodByID(p.ID()); ok && p.ContainerID != "" {
				created = append(created, p)
			}
		}
		if err != nil {
			return nil, err
		}
		all := append(extraProfiles, objs...)
		newPol, err := missing(ctx, client, all)
		if err != nil {
			return nil, err
		}
		newObjs = append(newObjs, newPol...)
		if len(all) > 0 {
			if _, err := client.WriteBatch(ctx, datastore.OpApply, all); err != nil {
				return nil, fmt.Errorf("apply the scenario's policies: %w", err)
			}
		}
		rev, err := client.Revision(ctx)
		if err != nil {
			return nil, err
		}
		if err := WaitProgrammed(ctx, st, rev, 60*time.Second); err != nil {
			return nil, err
		}
		// The evaluator, on the addresses the lab gave the pods.
		ips := map[string]netip.Addr{}
		for i := range specs {
			p, _ := st.PodByID(specs[i].Namespace + "/" + specs[i].Name)
			specs[i].IP = p.IP
			ips[p.ID()] = netip.MustParseAddr(p.IP)
		}
		if err := WaitRoutes(ctx, st, mapValues(ips), 60*time.Second); err != nil {
			return nil, err
		}
		sc2 := *sc
		sc2.Pods = specs
		built, err := sc2.Build()
		if err != nil {
			return nil, fmt.Errorf("scenario with the lab's addresses: %w", err)
		}
		exts := externalSources(sc)
		if extAdded, err = addExternal(ctx, st, exts); err != nil {
			return nil, err
		}
		out := &RunResult{Lab: st.Name, Built: built, Placement: placement}
		out.Probes, err = probeAll(ctx, st, built, o)
		if err != nil {
			return nil, err
		}
		for _, r := range out.Probes {
			switch {
			case r.NotPoliced:
				out.NotPol++
			case r.Skipped != "":
				out.Skipped++
			case r.Wrong:
				out.Wrong++
			}
			if r.Disagrees() {
				out.Disagree++
			}
		}
		return out, nil
	}()
	if cerr := cleanup(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
	}
	return res, err
}

// extraPools returns an IPPool for the /24 of each requested address that
// lies outside the lab's pool.
func extraPools(pods []scenario.Pod) []api.Object {
	main := netip.MustParsePrefix(defaultPool)
	seen := map[netip.Prefix]bool{}
	var out []api.Object
	for _, p := range pods {
		a, err := netip.ParseAddr(p.IP)
		if err != nil || !a.Is4() || main.Contains(a) {
			continue
		}
		pfx, _ := a.Prefix(24)
		if seen[pfx] || pfx.Overlaps(main) {
			continue
		}
		seen[pfx] = true
		name := "lab-run-" + strings.NewReplacer(".", "-", "/", "-").Replace(pfx.String())
		pool := &api.IPPool{ObjectMeta: metaName(name), Spec: api.IPPoolSpec{CIDR: pfx.String(), BlockSize: 26, IPIPMode: "Never"}}
		api.Default(pool)
		out = append(out, pool)
	}
	return out
}

func mapValues(m map[string]netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// scenarioObjects decodes the scenario's policies as `policy check` does:
// Kubernetes NetworkPolicies become knp.default.* policies, namespaced
// objects without a namespace go to default.
func scenarioObjects(sc *scenario.Scenario) ([]api.Object, error) {
	var out []api.Object
	for i, raw := range sc.Policies {
		objs, err := api.DecodeDocuments(raw)
		if err != nil {
			return nil, fmt.Errorf("policies[%d]: %w", i, err)
		}
		for _, obj := range objs {
			if np, ok := obj.(*networkingv1.NetworkPolicy); ok {
				if np.Namespace == "" {
					np.Namespace = "default"
				}
				t, err := api.TranslateNetworkPolicy(np)
				if err != nil {
					return nil, fmt.Errorf("policies[%d]: %w", i, err)
				}
				obj = t
			}
			if kind, ok := api.KindOf(obj); ok && kind.Namespaced && obj.GetNamespace() == "" {
				obj.SetNamespace("default")
			}
			api.Default(obj)
			if err := api.Validate(obj); err != nil {
				return nil, fmt.Errorf("policies[%d]: %w", i, err)
			}
			out = append(out, obj)
		}
	}
	return out, nil
}

// missing returns the objects that are not in the datastore yet (those
// the run creates and so removes afterwards).
func missing(ctx context.Context, c *datastore.Client, objs []api.Object) ([]api.Object, error) {
	var out []api.Object
	for _, o := range objs {
		k, ok := api.KindOf(o)
		if !ok {
			continue
		}
		if _, err := c.Get(ctx, k, o.GetNamespace(), o.GetName()); errors.Is(err, datastore.ErrNotFound) {
			out = append(out, o)
		} else if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func externalSources(sc *scenario.Scenario) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range sc.ExternalProbes {
		if !seen[p.From] {
			seen[p.From] = true
			out = append(out, p.From)
		}
	}
	return out
}

// addExternal gives the outside host each source address (on lo) and the
// router a route to it. It returns the addresses it added.
func addExternal(ctx context.Context, st *State, addrs []string) ([]string, error) {
	have := map[string]bool{}
	for _, a := range st.ExternalAddrs {
		have[a] = true
	}
	var added []string
	for _, a := range addrs {
		if have[a] {
			continue
		}
		if err := ipCmd(ctx, "-n", st.Outside, "addr", "add", a+"/32", "dev", "lo"); err != nil {
			return added, err
		}
		if err := ipCmd(ctx, "-n", st.Router.NS, "route", "replace", a+"/32", "via", outsideAddr.String()); err != nil {
			return added, err
		}
		added = append(added, a)
		st.ExternalAddrs = append(st.ExternalAddrs, a)
	}
	return added, st.save()
}

func removeExternal(ctx context.Context, st *State, addrs []string) error {
	var errs []error
	for _, a := range addrs {
		if err := ipCmd(ctx, "-n", st.Outside, "addr", "del", a+"/32", "dev", "lo"); err != nil {
			errs = append(errs, err)
		}
		if err := ipCmd(ctx, "-n", st.Router.NS, "route", "del", a+"/32"); err != nil {
			errs = append(errs, err)
		}
		for i, e := range st.ExternalAddrs {
			if e == a {
				st.ExternalAddrs = append(st.ExternalAddrs[:i], st.ExternalAddrs[i+1:]...)
				break
			}
		}
	}
	if err := st.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// protoName normalises a probe's protocol to TCP, UDP, SCTP, ICMP or the
// evaluator's name for it.
func protoName(p string) string {
	if p == "" {
		p = "TCP"
	}
	if n, err := policy.ParseProtocol(p); err == nil {
		return policy.ProtocolName(n)
	}
	return strings.ToUpper(p)
}

// probeAll starts servers and sends every probe, in parallel.
func probeAll(ctx context.Context, st *State, b *scenario.Built, o RunOptions) ([]ProbeResult, error) {
	sc := b.Scenario
	sctpErr := SCTPAvailable()
	// Servers: every listed port of every pod, plus every probed port.
	type svc struct {
		port  uint16
		proto string
	}
	want := map[string]map[svc]bool{}
	addSvc := func(pod string, s svc) {
		if want[pod] == nil {
			want[pod] = map[svc]bool{}
		}
		want[pod][s] = true
	}
	for _, p := range sc.Pods {
		for _, pp := range p.Ports {
			addSvc(p.Namespace+"/"+p.Name, svc{pp.Port, protoName(pp.Protocol)})
		}
	}
	for _, p := range append(append([]scenario.Probe(nil), sc.Probes...), sc.ExternalProbes...) {
		if pr := protoName(p.Protocol); pr != "ICMP" {
			addSvc(p.To, svc{p.Port, pr})
		}
	}
	var srv servers
	defer srv.Close()
	pods := map[string]*Pod{}
	for i := range st.Pods {
		pods[st.Pods[i].ID()] = &st.Pods[i]
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p, ok := pods[id]
		if !ok {
			continue // a WorkloadEndpoint from policies: no real workload
		}
		for s := range want[id] {
			switch s.proto {
			case "TCP", "UDP":
			case "SCTP":
				if sctpErr != nil {
					continue
				}
			default:
				continue
			}
			if err := srv.serve(p.NetNS, s.port, s.proto); err != nil {
				return nil, fmt.Errorf("pod %s: %w", id, err)
			}
		}
	}

	results := make([]ProbeResult, 0, len(sc.Probes)+len(sc.ExternalProbes))
	type job struct {
		idx      int
		external bool
		probe    scenario.Probe
	}
	var jobs []job
	for _, p := range sc.Probes {
		jobs = append(jobs, job{len(jobs), false, p})
	}
	for _, p := range sc.ExternalProbes {
		jobs = append(jobs, job{len(jobs), true, p})
	}
	results = results[:len(jobs)]
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Parallel)
	var mu sync.Mutex
	var firstErr error
	for _, j := range jobs {
		pk, err := b.Packet(&j.probe, j.external)
		if err != nil {
			return nil, err
		}
		ev := b.Evaluator.Decide(pk)
		r := ProbeResult{ProbeResult: scenario.ProbeResult{Probe: j.probe, External: j.external}, Evaluator: ev.Allowed}
		r.Result = ev // the verdict details; Allowed is replaced below
		proto := protoName(j.probe.Protocol)
		from, fromPod := pods[j.probe.From]
		to, toPod := pods[j.probe.To]
		switch {
		case !j.external && j.probe.From == j.probe.To:
			r.NotPoliced = true
		case !toPod || (!j.external && !fromPod):
			r.Skipped = "a WorkloadEndpoint given in policies has no real workload"
		case proto == "SCTP" && sctpErr != nil:
			r.Skipped = "kernel has no SCTP"
		case proto != "TCP" && proto != "UDP" && proto != "SCTP" && proto != "ICMP":
			r.Skipped = "the lab cannot send protocol " + proto
		case proto == "ICMP" && !netprobe.ICMPAnswered(pk.ICMPType):
			r.Skipped = fmt.Sprintf("ICMP type %d gets no reply, so it cannot be probed", pk.ICMPType)
		}
		results[j.idx] = r
		if r.NotPoliced || r.Skipped != "" {
			continue
		}
		netns, src := st.Outside, pk.Src
		if !j.external {
			netns, src = from.NetNS, netip.Addr{}
		}
		dst := netip.MustParseAddr(to.IP)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// A probe counts as denied only when a second attempt fails
			// too: a lost first packet on a loaded machine is not policy.
			ok, err := probe(netns, src, dst, pk.DstPort, proto, pk.ICMPType, pk.ICMPCode, o.Timeout)
			if err == nil && !ok {
				ok, err = probe(netns, src, dst, pk.DstPort, proto, pk.ICMPType, pk.ICMPCode, o.Timeout)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("probe %s -> %s %s: %w", j.probe.From, j.probe.To, j.probe.Label(), err)
				}
				return
			}
			results[j.idx].Result.Allowed = ok
			results[j.idx].Wrong = j.probe.Allowed != nil && *j.probe.Allowed != ok
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for i := range results {
		if results[i].NotPoliced || results[i].Skipped != "" {
			results[i].Wrong = false
		}
	}
	return results, ctx.Err()
}
