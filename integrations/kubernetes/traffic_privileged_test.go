package kubernetes_test

import (
	"context"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPrivilegedKubernetesTraffic: pods created through the API server
// and attached through the CNI plugin; NetworkPolicies created through
// client-go; real packets. A pod label change, a namespace label change
// and a policy deletion each change traffic within a second.
func TestPrivilegedKubernetesTraffic(t *testing.T) {
	c := newCluster(t, "10.88.0.0/16")
	ctx := context.Background()
	nsA, nsB := c.name("ta"), c.name("tb")
	c.createNS(nsA, map[string]string{"team": "a"})
	c.createNS(nsB, map[string]string{"team": "b"})
	c.createSA(nsA, "api", map[string]string{"role": "api"})
	server := c.addPod(podObject(nsA, "server", "", "", map[string]string{"app": "server"}), "")
	client := c.addPod(podObject(nsA, "client", "", "", map[string]string{"role": "client"}), "")
	other := c.addPod(podObject(nsB, "other", "", "", map[string]string{"role": "client"}), "")
	robot := c.addPod(podObject(nsA, "robot", "", "api", nil), "")
	c.serve(server, 80, "TCP")
	c.serve(server, 53, "UDP")
	c.settle()

	// The endpoint had the pod's labels and service account at ADD.
	wk, _ := api.LookupKind("WorkloadEndpoint")
	name, _ := api.WorkloadEndpointName(clusterNode, "k8s", "robot", "eth0")
	o, err := c.ds.Get(ctx, wk, nsA, name)
	if err != nil {
		t.Fatal(err)
	}
	if w := o.(*api.WorkloadEndpoint); w.Spec.ServiceAccountName != "api" || w.Labels[api.LabelServiceAccount] != "api" {
		t.Errorf("robot's endpoint: service account %q, label %q; want api", w.Spec.ServiceAccountName, w.Labels[api.LabelServiceAccount])
	}

	// No policy: the namespace profiles allow everything.
	c.await(2*time.Second,
		check{client, server, 80, "TCP", true}, check{other, server, 80, "TCP", true}, check{other, server, 53, "UDP", true})

	// Only clients of the same namespace reach the server, on 80/TCP.
	port := intstrPort(80)
	c.createNP(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: nsA},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	})
	c.await(2*time.Second,
		check{client, server, 80, "TCP", true}, check{other, server, 80, "TCP", false},
		check{client, server, 53, "UDP", false}, check{robot, server, 80, "TCP", false})

	// A pod label change.
	c.setPodLabels(nsA, "client", map[string]string{"role": "visitor"})
	d := c.await(time.Second, check{client, server, 80, "TCP", false})
	t.Logf("pod label change enforced in %s", d)
	c.setPodLabels(nsA, "robot", map[string]string{"role": "client"})
	d = c.await(time.Second, check{robot, server, 80, "TCP", true})
	t.Logf("pod label change (allow) enforced in %s", d)

	// A namespace label change: a second policy admits namespaces
	// labelled trusted.
	c.createNP(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "trusted", Namespace: nsA},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"trust": "yes"}}}},
			}},
		},
	})
	c.settle()
	c.await(time.Second, check{other, server, 80, "TCP", false})
	c.setNSLabels(nsB, map[string]string{"team": "b", "trust": "yes"})
	d = c.await(time.Second, check{other, server, 80, "TCP", true}, check{other, server, 53, "UDP", true})
	t.Logf("namespace label change enforced in %s", d)

	// Deleting the policies opens everything again.
	c.deleteNP(nsA, "server")
	c.deleteNP(nsA, "trusted")
	d = c.await(time.Second, check{client, server, 80, "TCP", true}, check{client, server, 53, "UDP", true})
	t.Logf("policy deletion enforced in %s", d)
	c.settle()
}
