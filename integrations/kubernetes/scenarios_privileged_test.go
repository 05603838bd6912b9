package kubernetes_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/policy/scenario"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestPrivilegedKubernetesScenarios runs every scenario under
// testdata/scenarios whose policies are all Kubernetes NetworkPolicies
// (networking.k8s.io/v1) end to end: namespaces, service accounts, pods
// and policies are created in the API server, pods are attached through
// the CNI plugin at the scenario's addresses, the controller translates,
// the agent programs, and every pod-to-pod probe sends real packets and
// must match the scenario's expectation (and the reference evaluator's).
// Namespaces get a per-run suffix (the API server cannot delete them
// without a controller-manager); selectors use labels, so nothing else
// changes. ICMP, SCTP, external and self probes (a pod to its own
// address never leaves its namespace) are counted and not sent.
func TestPrivilegedKubernetesScenarios(t *testing.T) {
	files, err := filepath.Glob("../../testdata/scenarios/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := scenario.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		nps, ok := kubernetesOnly(t, s)
		if !ok {
			continue
		}
		ran++
		t.Run(s.Name, func(t *testing.T) { runScenario(t, s, nps) })
	}
	if ran < 10 {
		t.Errorf("only %d Kubernetes-only scenarios found; the glob or the filter is wrong", ran)
	}
}

// kubernetesOnly returns the scenario's policies if every one is a
// Kubernetes NetworkPolicy.
func kubernetesOnly(t *testing.T, s *scenario.Scenario) ([]*networkingv1.NetworkPolicy, bool) {
	var out []*networkingv1.NetworkPolicy
	for _, raw := range s.Policies {
		objs, err := api.DecodeDocuments(raw)
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		for _, o := range objs {
			np, ok := o.(*networkingv1.NetworkPolicy)
			if !ok {
				return nil, false
			}
			out = append(out, np)
		}
	}
	return out, len(out) > 0
}

func runScenario(t *testing.T, s *scenario.Scenario, nps []*networkingv1.NetworkPolicy) {
	b, err := s.Build()
	if err != nil {
		t.Fatal(err)
	}
	// A pool per /16 of the scenario's addresses.
	pools := map[string]bool{}
	for _, ip := range b.PodIP {
		p, _ := ip.Prefix(16)
		pools[p.String()] = true
	}
	var poolList []string
	for p := range pools {
		poolList = append(poolList, p)
	}
	sort.Strings(poolList)
	c := newCluster(t, poolList...)
	nsName := func(ns string) string { return ns + "-" + c.suffix }

	// Namespaces (listed ones with labels; the rest bare), then service
	// accounts, then pods.
	made := map[string]bool{}
	mkNS := func(ns string) {
		if made[ns] {
			return
		}
		made[ns] = true
		c.createNS(nsName(ns), s.Namespaces[ns].Labels)
	}
	for _, ns := range sortedNS(s) {
		mkNS(ns)
	}
	for _, sa := range s.ServiceAccounts {
		mkNS(sa.Namespace)
		if sa.Name == "default" {
			c.setSALabels(nsName(sa.Namespace), sa.Name, sa.Labels)
			continue
		}
		c.createSA(nsName(sa.Namespace), sa.Name, sa.Labels)
	}
	// Serve every port that some probe targets.
	serves := map[string]map[string]bool{} // pod → "port/PROTO"
	var checks []check
	skipped := map[string]int{}
	for _, p := range s.Probes {
		proto := strings.ToUpper(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if proto != "TCP" && proto != "UDP" {
			skipped[proto]++
			continue
		}
		if p.From == p.To {
			// A pod reaching its own address stays inside its network
			// namespace: no host sees it, in Calico neither.
			skipped["self"]++
			continue
		}
		if serves[p.To] == nil {
			serves[p.To] = map[string]bool{}
		}
		serves[p.To][fmt.Sprintf("%d/%s", p.Port, proto)] = true
	}
	if len(s.ExternalProbes) > 0 {
		skipped["external"] = len(s.ExternalProbes)
	}
	pods := map[string]*kpod{}
	for _, p := range s.Pods {
		mkNS(p.Namespace)
		sa := p.ServiceAccount
		if sa != "" && sa != "default" && !saListed(s, p.Namespace, sa) {
			c.createSA(nsName(p.Namespace), sa, nil)
		}
		var ports []corev1.ContainerPort
		for _, pp := range p.Ports {
			proto := corev1.Protocol(strings.ToUpper(pp.Protocol))
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, corev1.ContainerPort{Name: pp.Name, ContainerPort: int32(pp.Port), Protocol: proto})
		}
		id := p.Namespace + "/" + p.Name
		kp := c.addPod(podObject(nsName(p.Namespace), p.Name, "", sa, p.Labels, ports...), b.PodIP[id].String())
		if kp.ip != b.PodIP[id] {
			t.Fatalf("pod %s got %s, want %s", id, kp.ip, b.PodIP[id])
		}
		pods[id] = kp
		for pp := range serves[id] {
			port, proto, err := scenario.ParsePortProtocol(pp)
			if err != nil {
				t.Fatal(err)
			}
			c.serve(kp, port, strings.ToUpper(proto))
		}
	}
	for _, np := range nps {
		np = np.DeepCopy()
		if np.Namespace == "" {
			np.Namespace = "default"
		}
		mkNS(np.Namespace)
		np.Namespace = nsName(np.Namespace)
		c.createNP(np)
	}
	c.settle()

	for _, p := range s.Probes {
		proto := strings.ToUpper(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if (proto != "TCP" && proto != "UDP") || p.From == p.To {
			continue
		}
		if p.Allowed == nil {
			t.Fatalf("probe %s -> %s has no expectation", p.From, p.To)
		}
		checks = append(checks, check{pods[p.From], pods[p.To], p.Port, proto, *p.Allowed})
	}
	// The scenario file agrees with the reference evaluator.
	results := b.Run(false)
	for _, r := range results {
		if r.Wrong {
			t.Fatalf("the scenario and the evaluator disagree on %s -> %s %s", r.Probe.From, r.Probe.To, r.Probe.Label())
		}
	}
	var wrong []string
	for _, k := range checks {
		if got := c.probe(k.from, k.to, k.port, k.proto, 300*time.Millisecond); got != k.allowed {
			wrong = append(wrong, fmt.Sprintf("%s (got allowed=%v)", k, got))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d of %d probes wrong:\n  %s", len(wrong), len(checks), strings.Join(wrong, "\n  "))
	}
	t.Logf("%d probes sent; not sent: %v", len(checks), skipped)
}

func saListed(s *scenario.Scenario, ns, name string) bool {
	for _, sa := range s.ServiceAccounts {
		if sa.Namespace == ns && sa.Name == name {
			return true
		}
	}
	return false
}

func sortedNS(s *scenario.Scenario) []string {
	var out []string
	for ns := range s.Namespaces {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}
