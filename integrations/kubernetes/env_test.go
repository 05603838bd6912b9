package kubernetes_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// One API server per test binary (each start costs ~3 s of CPU and
// 300 MB); tests use namespaces of their own.
var (
	srvOnce sync.Once
	srv     *kubetest.Server
	srvErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

func apiServer(t testing.TB) *kubetest.Server {
	t.Helper()
	dir := kubetest.Require(t)
	srvOnce.Do(func() { srv, srvErr = kubetest.Start(dir) })
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	return srv
}

// env is one test's world: the shared API server, a datastore of its own
// and a name suffix that keeps its namespaces apart from other tests'.
type env struct {
	t      testing.TB
	kube   kubernetes.Interface
	rest   *rest.Config
	member *datastoretest.Member
	ds     *datastore.Client
	suffix string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	s := apiServer(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	m := datastoretest.New(t)
	return &env{t: t, kube: s.Client, rest: s.Config, member: m, ds: m.Client, suffix: hex.EncodeToString(b)}
}

// name makes a cluster-unique name for this test.
func (e *env) name(s string) string { return s + "-" + e.suffix }

// running is a controller run by a test.
type running struct {
	c      *k8sint.Controller
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with err set
	err    error
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("controller: %v", r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("controller did not stop in 20 s")
	}
}

func (e *env) start(cfg k8sint.Config) *running {
	e.t.Helper()
	if cfg.Kube == nil {
		cfg.Kube = e.kube
	}
	if cfg.Datastore == nil {
		cfg.Datastore = e.member.Connect(datastore.Config{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := k8sint.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = c.Run(ctx); close(r.done) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			e.t.Fatalf("controller not ready after 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

func (e *env) ctx() context.Context { return context.Background() }

func (e *env) createNS(name string, labels map[string]string) {
	e.t.Helper()
	_, err := e.kube.CoreV1().Namespaces().Create(e.ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	// What the controller-manager would do.
	e.createSA(name, "default", nil)
}

func (e *env) createSA(ns, name string, labels map[string]string) {
	e.t.Helper()
	_, err := e.kube.CoreV1().ServiceAccounts(ns).Create(e.ctx(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setSALabels(ns, name string, labels map[string]string) {
	e.t.Helper()
	sa, err := e.kube.CoreV1().ServiceAccounts(ns).Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	sa.Labels = labels
	if _, err := e.kube.CoreV1().ServiceAccounts(ns).Update(e.ctx(), sa, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func podObject(ns, name, node, sa string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa,
			Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/none", Ports: ports}}},
	}
}

func (e *env) createPod(p *corev1.Pod) {
	e.t.Helper()
	if _, err := e.kube.CoreV1().Pods(p.Namespace).Create(e.ctx(), p, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) createNP(np *networkingv1.NetworkPolicy) {
	e.t.Helper()
	if _, err := e.kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(e.ctx(), np, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deleteNP(ns, name string) {
	e.t.Helper()
	if err := e.kube.NetworkingV1().NetworkPolicies(ns).Delete(e.ctx(), name, metav1.DeleteOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// setPodLabels replaces a pod's labels.
func (e *env) setPodLabels(ns, name string, labels map[string]string) {
	e.t.Helper()
	p, err := e.kube.CoreV1().Pods(ns).Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	p.Labels = labels
	if _, err := e.kube.CoreV1().Pods(ns).Update(e.ctx(), p, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setNSLabels(name string, labels map[string]string) {
	e.t.Helper()
	n, err := e.kube.CoreV1().Namespaces().Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	n.Labels = labels
	if _, err := e.kube.CoreV1().Namespaces().Update(e.ctx(), n, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// writeWEP writes a pod's endpoint as the CNI service does when it knows
// nothing about the pod.
func (e *env) writeWEP(ns, pod, node, ip string) {
	e.t.Helper()
	name, err := api.WorkloadEndpointName(node, "k8s", pod, "eth0")
	if err != nil {
		e.t.Fatal(err)
	}
	w := &api.WorkloadEndpoint{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "WorkloadEndpoint"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{api.LabelNamespace: ns, api.LabelOrchestrator: "k8s", api.LabelServiceAccount: "default"}},
		Spec: api.WorkloadEndpointSpec{Orchestrator: "k8s", Node: node, Pod: pod, Endpoint: "eth0", ServiceAccountName: "default",
			IPNetworks: []string{ip + "/32"}, Profiles: []string{"kns." + ns, "ksa." + ns + ".default"}, InterfaceName: "cali" + strings.Repeat("0", 11)},
	}
	if _, err := e.ds.Apply(e.ctx(), w); err != nil {
		e.t.Fatal(err)
	}
}

// expected renders what the datastore must hold for the API server's
// current state, independently of the controller's code: one line per
// owned object. Endpoints are rendered only if they exist (the CNI
// creates them).
func (e *env) expected() []string {
	e.t.Helper()
	ctx := e.ctx()
	var out []string
	nss, err := e.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, n := range nss.Items {
		out = append(out, "Profile kns."+n.Name+" "+render(api.NamespaceProfile(n.Name, n.Labels).Spec))
	}
	sas, err := e.kube.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range sas.Items {
		out = append(out, "Profile ksa."+s.Namespace+"."+s.Name+" "+render(api.ServiceAccountProfile(s.Namespace, s.Name, s.Labels).Spec))
	}
	nps, err := e.kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range nps.Items {
		np := &nps.Items[i]
		tr, err := api.TranslateNetworkPolicy(np)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, "NetworkPolicy "+np.Namespace+"/"+tr.Name+" "+render(tr.Spec))
		out = append(out, "KubernetesNetworkPolicy "+np.Namespace+"/"+np.Name+" "+render(np.Spec))
	}
	wk, _ := api.LookupKind("WorkloadEndpoint")
	weps, _, err := e.ds.List(ctx, wk, datastore.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, o := range weps {
		w := o.(*api.WorkloadEndpoint)
		p, err := e.kube.CoreV1().Pods(w.Namespace).Get(ctx, w.Spec.Pod, metav1.GetOptions{})
		if err != nil {
			out = append(out, "WorkloadEndpoint "+w.Namespace+"/"+w.Name+" (no pod) "+render(w.Labels))
			continue
		}
		sa := p.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		l := maps.Clone(p.Labels)
		if l == nil {
			l = map[string]string{}
		}
		l[api.LabelNamespace], l[api.LabelOrchestrator], l[api.LabelServiceAccount] = w.Namespace, "k8s", sa
		out = append(out, "WorkloadEndpoint "+w.Namespace+"/"+w.Name+" "+render(l)+" sa="+sa)
	}
	sort.Strings(out)
	return out
}

// actual renders the datastore's owned objects like expected.
func (e *env) actual() []string {
	e.t.Helper()
	ctx := e.ctx()
	var out []string
	list := func(kind string) []api.Object {
		k, _ := api.LookupKind(kind)
		objs, _, err := e.ds.List(ctx, k, datastore.ListOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		return objs
	}
	for _, o := range list("Profile") {
		p := o.(*api.Profile)
		if strings.HasPrefix(p.Name, "kns.") || strings.HasPrefix(p.Name, "ksa.") {
			out = append(out, "Profile "+p.Name+" "+render(p.Spec))
		}
	}
	for _, o := range list("NetworkPolicy") {
		p := o.(*api.NetworkPolicy)
		if strings.HasPrefix(p.Name, api.K8sNetworkPolicyPrefix) {
			out = append(out, "NetworkPolicy "+p.Namespace+"/"+p.Name+" "+render(p.Spec))
		}
	}
	for _, o := range list(api.KindKubernetesNetworkPolicy) {
		p := o.(*networkingv1.NetworkPolicy)
		out = append(out, "KubernetesNetworkPolicy "+p.Namespace+"/"+p.Name+" "+render(p.Spec))
	}
	for _, o := range list("WorkloadEndpoint") {
		w := o.(*api.WorkloadEndpoint)
		if _, err := e.kube.CoreV1().Pods(w.Namespace).Get(ctx, w.Spec.Pod, metav1.GetOptions{}); err != nil {
			out = append(out, "WorkloadEndpoint "+w.Namespace+"/"+w.Name+" (no pod) "+render(w.Labels))
			continue
		}
		out = append(out, "WorkloadEndpoint "+w.Namespace+"/"+w.Name+" "+render(w.Labels)+" sa="+w.Spec.ServiceAccountName)
	}
	sort.Strings(out)
	return out
}

func render(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("unrenderable %T: %v", v, err)
	}
	return string(b)
}

// converged waits until the datastore holds exactly what the API server's
// state calls for, and fails with the difference otherwise.
func (e *env) converged(within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		want, got := e.expected(), e.actual()
		diff := cmp.Diff(want, got)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("datastore did not converge within %s (-want +got):\n%s", within, diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func intstrPort(p int32) intstr.IntOrString { return intstr.FromInt32(p) }
