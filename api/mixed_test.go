package api

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// TestDecodeMixedScenario decodes one file mixing a Kubernetes
// NetworkPolicy, v3 objects, v1 documents and a List, as a policy scenario
// file does, and checks each comes back as the right type, in order.
func TestDecodeMixedScenario(t *testing.T) {
	const in = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-db}
spec:
  selector: app == 'db'
---
apiVersion: v1
kind: policy
metadata: {name: allow-tcp-6379}
spec:
  selector: role == 'database'
  ingress: [{action: allow, protocol: tcp, destination: {ports: [6379]}}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: profile
  metadata: {name: k8s_ns.shop}
  spec: {ingress: [{action: allow}]}
- apiVersion: projectcalico.org/v3
  kind: WorkloadEndpoint
  metadata: {namespace: shop, labels: {app: web}}
  spec: {node: n1, orchestrator: k8s, pod: web-1, endpoint: eth0, ipNetworks: [10.0.0.1]}
`
	objs, err := DecodeAndValidate([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 5 {
		t.Fatalf("got %d objects, want 5", len(objs))
	}
	if np, ok := objs[0].(*networkingv1.NetworkPolicy); !ok || np.Name != "allow-web" {
		t.Errorf("object 0: %T %v", objs[0], objs[0].GetName())
	}
	if np, ok := objs[1].(*NetworkPolicy); !ok || np.Namespace != "default" || np.Spec.Types[0] != PolicyTypeIngress {
		t.Errorf("object 1: %#v", objs[1])
	}
	if gnp, ok := objs[2].(*GlobalNetworkPolicy); !ok || gnp.Spec.Ingress[0].Action != Allow {
		t.Errorf("object 2: %#v", objs[2])
	}
	if p, ok := objs[3].(*Profile); !ok || p.Name != "kns.shop" {
		t.Errorf("object 3: %#v", objs[3])
	}
	if w, ok := objs[4].(*WorkloadEndpoint); !ok || w.Name != "n1-k8s-web--1-eth0" || w.Spec.IPNetworks[0] != "10.0.0.1/32" {
		t.Errorf("object 4: %#v", objs[4])
	}
}
