package kubernetes_test

import (
	"strings"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubepod"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// TestPodInfoLookup: against the real API server, the CNI's pod lookup
// returns the pod's labels, service account and named ports (as kubepod.Ports
// computes them), and names the pod when it does not exist.
func TestPodInfoLookup(t *testing.T) {
	e := newEnv(t)
	ns := e.name("podinfo")
	e.createNS(ns, nil)
	e.createSA(ns, "billing", nil)
	pod := podObject(ns, "web", "node-1", "billing", map[string]string{"app": "web"},
		corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP})
	e.createPod(pod)

	lookup, err := kubepod.Lookup(e.rest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := lookup(e.ctx(), ns, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := cni.PodInfo{
		Labels:         map[string]string{"app": "web"},
		ServiceAccount: "billing",
		Ports:          []api.WorkloadEndpointPort{{Name: "http", Protocol: api.ProtocolFromString("TCP"), Port: 8080}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Lookup (-want +got):\n%s", d)
	}

	if _, err := lookup(e.ctx(), ns, "missing"); err == nil || !strings.Contains(err.Error(), ns+"/missing") {
		t.Errorf("lookup of a missing pod = %v, want an error naming %s/missing", err, ns)
	}
}
