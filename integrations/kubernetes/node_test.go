package kubernetes_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	"github.com/brindle-net/brindle/ipam"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeDeleted: deleting a Kubernetes node removes its Brindle node,
// its endpoints and its addresses; its only block, which still holds an
// address another node borrowed, stays without affinity; the other node
// keeps everything.
func TestNodeDeleted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	gone, kept := e.name("gone"), e.name("kept")
	for _, n := range []string{gone, kept} {
		if _, err := e.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		bn := &api.Node{TypeMeta: metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: n}}
		if _, err := e.ds.Apply(ctx, bn); err != nil {
			t.Fatal(err)
		}
	}
	// One /26 pool: the first node claims its only block, the second
	// borrows from it.
	pool := &api.IPPool{TypeMeta: metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"}, ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: api.IPPoolSpec{CIDR: "10.9.0.0/26", BlockSize: 26}}
	if _, err := e.ds.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	src := &ipam.StaticSource{Pools: []*api.IPPool{pool}}
	m, err := ipam.New(ipam.NewEtcdStore(e.ds), ipam.Config{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	assign := func(node, handle string) netip.Prefix {
		got, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Num4: 1, HandleID: handle, Node: node})
		if err != nil || len(got) != 1 {
			t.Fatalf("assign %s on %s: %v %v", handle, node, got, err)
		}
		return got[0]
	}
	assign(gone, "net.c1")
	assign(gone, "net.c2")
	borrowed := assign(kept, "net.c3")
	ns := e.name("nodes")
	e.createNS(ns, nil)
	e.createPod(podObject(ns, "on-gone", gone, "", nil))
	e.createPod(podObject(ns, "on-kept", kept, "", nil))
	e.writeWEP(ns, "on-gone", gone, "10.9.0.1")
	e.writeWEP(ns, "on-kept", kept, borrowed.Addr().String())

	e.start(k8sint.Config{ResyncPeriod: -1})
	e.converged(5 * time.Second)
	if err := e.kube.CoreV1().Nodes().Delete(ctx, gone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	nk, _ := api.LookupKind("Node")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.ds.Get(ctx, nk, "", gone)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("brindle node %s still there 10 s after its kubernetes node was deleted", gone)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.ds.Get(ctx, nk, "", kept); err != nil {
		t.Errorf("the other node: %v", err)
	}
	wk, _ := api.LookupKind("WorkloadEndpoint")
	weps, _, err := e.ds.List(ctx, wk, datastore.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(weps) != 1 || weps[0].(*api.WorkloadEndpoint).Spec.Node != kept {
		t.Errorf("endpoints left: %d, want only the one on %s", len(weps), kept)
	}
	raw := e.ds.Raw()
	for _, h := range []string{"net.c1", "net.c2"} {
		if _, err := raw.Get(ctx, ipam.HandleKey(h)); err == nil {
			t.Errorf("handle %s of the deleted node survives", h)
		}
	}
	if _, err := raw.Get(ctx, ipam.HandleKey("net.c3")); err != nil {
		t.Errorf("the other node's handle: %v", err)
	}
	affs, _, err := raw.List(ctx, datastore.IPAMPrefix+"host/"+gone+"/")
	if err != nil || len(affs) != 0 {
		t.Errorf("affinities of the deleted node left: %d (%v)", len(affs), err)
	}
	rep, err := m.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("ipam check: %s %s: %s", p.Kind, p.Key, p.Detail)
	}
	show, err := m.Show(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var inUse uint64
	for _, p := range show.Pools {
		inUse += p.InUse
	}
	if inUse != 1 {
		t.Errorf("%d addresses in use, want 1 (the borrowed one)", inUse)
	}
	// The freed block is free for anyone.
	if _, err := m.AutoAssign(ctx, ipam.AutoAssignArgs{Num4: 1, HandleID: "net.c4", Node: kept}); err != nil {
		t.Errorf("assigning from the released block: %v", err)
	}
}
