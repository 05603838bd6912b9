package kubernetes_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func allowFrom(ns, name string, podSel, fromSel map[string]string, port int32) *networkingv1.NetworkPolicy {
	p := intstr.FromInt32(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: podSel},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: fromSel}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &p}},
			}},
		},
	}
}

// TestControllerSyncs: every kind reaches the datastore; changes and
// deletions follow; stale objects written while no controller ran are
// removed on start; an owned object deleted behind the controller's back
// comes back.
func TestControllerSyncs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ns := e.name("sync")
	e.createNS(ns, map[string]string{"team": "a"})
	e.createSA(ns, "builder", map[string]string{"tier": "ci"})
	e.createPod(podObject(ns, "web", "node-a", "", map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}))
	e.createPod(podObject(ns, "ci", "node-a", "builder", map[string]string{"app": "ci"}))
	e.createNP(allowFrom(ns, "web-from-ci", map[string]string{"app": "web"}, map[string]string{"app": "ci"}, 8080))
	e.writeWEP(ns, "web", "node-a", "10.0.0.1")
	e.writeWEP(ns, "ci", "node-a", "10.0.0.2")
	// Stale objects from an earlier life.
	ghost := allowFrom(ns, "ghost", nil, nil, 1)
	stale := []api.Object{ghost, api.NamespaceProfile(e.name("gone"), nil), api.ServiceAccountProfile(ns, "gone", nil)}
	if _, err := e.ds.WriteBatch(ctx, datastore.OpApply, stale); err != nil {
		t.Fatal(err)
	}
	tr, _ := api.TranslateNetworkPolicy(allowFrom(ns, "orphan", nil, nil, 2))
	tr.UID, tr.ResourceVersion = "", ""
	if _, err := e.ds.Apply(ctx, tr); err != nil {
		t.Fatal(err)
	}
	// Not owned: must survive.
	userProfile := &api.Profile{TypeMeta: metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "Profile"}, ObjectMeta: metav1.ObjectMeta{Name: "user-profile"}}
	if _, err := e.ds.Apply(ctx, userProfile); err != nil {
		t.Fatal(err)
	}

	r := e.start(k8sint.Config{ResyncPeriod: -1})
	e.converged(5 * time.Second)

	wk, _ := api.LookupKind("WorkloadEndpoint")
	name, _ := api.WorkloadEndpointName("node-a", "k8s", "web", "eth0")
	o, err := e.ds.Get(ctx, wk, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if w := o.(*api.WorkloadEndpoint); len(w.Spec.Ports) != 1 || w.Spec.Ports[0].Name != "http" || w.Spec.Ports[0].Port != 8080 {
		t.Errorf("web's named port did not reach its endpoint: %+v", w.Spec.Ports)
	}
	pk, _ := api.LookupKind("Profile")
	if _, err := e.ds.Get(ctx, pk, "", "user-profile"); err != nil {
		t.Errorf("a profile the controller does not own was touched: %v", err)
	}

	steps := []struct {
		name string
		do   func()
	}{
		{"pod label", func() { e.setPodLabels(ns, "web", map[string]string{"app": "web", "v": "2"}) }},
		{"namespace label", func() { e.setNSLabels(ns, map[string]string{"team": "b"}) }},
		{"policy deleted", func() { e.deleteNP(ns, "web-from-ci") }},
		{"policy created", func() { e.createNP(allowFrom(ns, "again", nil, map[string]string{"v": "2"}, 80)) }},
		{"service account deleted", func() {
			if err := e.kube.CoreV1().ServiceAccounts(ns).Delete(ctx, "builder", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"owned profile deleted behind its back", func() {
			if _, err := e.ds.Delete(ctx, pk, "", "kns."+ns, ""); err != nil {
				t.Fatal(err)
			}
		}},
		{"endpoint rewritten by a CNI ADD without pod info", func() { e.writeWEP(ns, "web", "node-a", "10.0.0.1") }},
	}
	for _, st := range steps {
		st.do()
		// Within a second of the change.
		e.converged(time.Second)
		t.Logf("%s: converged", st.name)
	}

	// Health and metrics.
	h := httptest.NewServer(r.c.Handler())
	defer h.Close()
	for path, want := range map[string]string{"/livez": "ok", "/readyz": "ok", "/metrics": "brindle_kube_reconciles_total"} {
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d %q, want 200 containing %q", path, resp.StatusCode, truncate(string(b)), want)
		}
	}
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// TestControllerRestartConverges: objects keep changing while the
// controller is stopped and while it starts again; once they stop, the
// datastore holds exactly what the API server says.
func TestControllerRestartConverges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	nss := []string{e.name("r0"), e.name("r1")}
	for i, ns := range nss {
		e.createNS(ns, map[string]string{"i": fmt.Sprint(i)})
		for j := range 5 {
			pod := fmt.Sprintf("p%d", j)
			e.createPod(podObject(ns, pod, "node-r", "", map[string]string{"app": pod}))
			e.writeWEP(ns, pod, "node-r", fmt.Sprintf("10.1.%d.%d", i, j+1))
		}
	}
	r := e.start(k8sint.Config{ResyncPeriod: -1})
	e.converged(5 * time.Second)

	rng := rand.New(rand.NewPCG(1, 2))
	mutate := func(n int) {
		for range n {
			ns := nss[rng.IntN(len(nss))]
			switch rng.IntN(4) {
			case 0:
				e.setPodLabels(ns, fmt.Sprintf("p%d", rng.IntN(5)), map[string]string{"app": "x", "gen": fmt.Sprint(rng.IntN(100))})
			case 1:
				e.setNSLabels(ns, map[string]string{"gen": fmt.Sprint(rng.IntN(100))})
			case 2:
				name := fmt.Sprintf("np%d", rng.IntN(6))
				if err := e.kube.NetworkingV1().NetworkPolicies(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
					e.createNP(allowFrom(ns, name, map[string]string{"app": "x"}, map[string]string{"gen": fmt.Sprint(rng.IntN(9))}, int32(1+rng.IntN(1000))))
				}
			case 3:
				sa := fmt.Sprintf("sa%d", rng.IntN(3))
				if err := e.kube.CoreV1().ServiceAccounts(ns).Delete(ctx, sa, metav1.DeleteOptions{}); err != nil {
					e.createSA(ns, sa, map[string]string{"gen": fmt.Sprint(rng.IntN(9))})
				}
			}
		}
	}
	for round := range 3 {
		mutate(10)
		r.stop(t)
		mutate(30) // while down
		var wg sync.WaitGroup
		wg.Go(func() { mutate(30) }) // while starting
		r = e.start(k8sint.Config{ResyncPeriod: -1})
		wg.Wait()
		e.converged(5 * time.Second)
		t.Logf("round %d converged", round)
	}
}

// TestLeaderElection: two replicas, one leads; when it stops the other
// takes over and reconciles.
func TestLeaderElection(t *testing.T) {
	e := newEnv(t)
	ns := e.name("le")
	e.createNS(ns, nil)
	lease := e.name("lease")
	type replica struct {
		c      *k8sint.Controller
		cancel context.CancelFunc
		done   chan struct{} // closed when RunElected returned, with err set
		err    error
	}
	var reps []*replica
	for i := range 2 {
		c, err := k8sint.New(k8sint.Config{Kube: e.kube, Datastore: e.member.Connect(datastore.Config{}), ResyncPeriod: -1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{c: c, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.err = c.RunElected(ctx, k8sint.ElectionConfig{Namespace: ns, Name: lease, Identity: fmt.Sprintf("r%d", i),
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 200 * time.Millisecond})
		}()
		t.Cleanup(func() { cancel(); <-r.done })
		reps = append(reps, r)
	}
	var leader, standby *replica
	deadline := time.Now().Add(20 * time.Second)
	for leader == nil {
		for i, r := range reps {
			if r.c.Ready() {
				leader, standby = r, reps[1-i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica became the leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.converged(5 * time.Second)
	time.Sleep(time.Second)
	if standby.c.Ready() {
		t.Fatal("both replicas lead")
	}
	leader.cancel()
	<-leader.done
	if leader.err != nil {
		t.Errorf("leader stopped with %v", leader.err)
	}
	e.createNP(allowFrom(ns, "after-failover", nil, nil, 443))
	deadline = time.Now().Add(20 * time.Second)
	for !standby.c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the standby did not take over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.converged(5 * time.Second)
}

// TestWatchGap: the API server restarts under a running controller; every
// watch breaks and resumes from its resourceVersion (no relist is needed
// when nothing was compacted; a relist calls the watch-error handler and a
// full resync follows). Changes made right after it is back converge.
func TestWatchGap(t *testing.T) {
	e := newEnv(t)
	ns := e.name("gap")
	e.createNS(ns, map[string]string{"v": "1"})
	e.createPod(podObject(ns, "p", "node-g", "", map[string]string{"app": "a"}))
	e.writeWEP(ns, "p", "node-g", "10.3.0.1")
	e.start(k8sint.Config{ResyncPeriod: -1, GapResyncDelay: 200 * time.Millisecond})
	e.converged(5 * time.Second)
	if err := apiServer(t).RestartAPIServer(); err != nil {
		t.Fatal(err)
	}
	e.setPodLabels(ns, "p", map[string]string{"app": "b"})
	e.setNSLabels(ns, map[string]string{"v": "2"})
	e.createNP(allowFrom(ns, "after-gap", nil, nil, 8443))
	e.converged(10 * time.Second)
}
