package kubernetes

import (
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEndpointFor(t *testing.T) {
	cniWritten := func() *api.WorkloadEndpoint {
		return &api.WorkloadEndpoint{
			TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "WorkloadEndpoint"},
			ObjectMeta: metav1.ObjectMeta{Name: "n1-k8s-web-eth0", Namespace: "prod", ResourceVersion: "42", Labels: map[string]string{api.LabelNamespace: "prod", api.LabelOrchestrator: "k8s", api.LabelServiceAccount: "default"}},
			Spec: api.WorkloadEndpointSpec{Orchestrator: "k8s", Node: "n1", Pod: "web", Endpoint: "eth0", ServiceAccountName: "default",
				IPNetworks: []string{"10.0.0.1/32"}, Profiles: []string{"kns.prod", "ksa.prod.default"}, InterfaceName: "cali0123456789a"},
		}
	}
	long := "sa-" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" // 66 bytes
	tests := []struct {
		name        string
		pod         corev1.Pod
		wantChanged bool
		wantLabels  map[string]string
		wantSA      string
		wantPorts   []api.WorkloadEndpointPort
	}{{
		name:        "nothing new",
		pod:         corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod"}},
		wantLabels:  map[string]string{api.LabelNamespace: "prod", api.LabelOrchestrator: "k8s", api.LabelServiceAccount: "default"},
		wantSA:      "default",
		wantChanged: false,
	}, {
		name: "labels, account and named ports",
		pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web", api.LabelNamespace: "spoofed"}},
			Spec: corev1.PodSpec{ServiceAccountName: "builder",
				InitContainers: []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{Name: "boot", ContainerPort: 9000, Protocol: corev1.ProtocolUDP}}}},
				Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: 8080},
					{ContainerPort: 9090},               // unnamed, no host port: not a named port
					{ContainerPort: 53, HostPort: 5353}, // host port: kept
				}}}}},
		wantChanged: true,
		wantLabels:  map[string]string{"app": "web", api.LabelNamespace: "prod", api.LabelOrchestrator: "k8s", api.LabelServiceAccount: "builder"},
		wantSA:      "builder",
		wantPorts: []api.WorkloadEndpointPort{
			{Name: "boot", Protocol: api.ProtocolFromString("UDP"), Port: 9000},
			{Name: "http", Protocol: api.ProtocolFromString("TCP"), Port: 8080},
			{Protocol: api.ProtocolFromString("TCP"), Port: 53, HostPort: 5353},
		},
	}, {
		name:        "service account too long for a label",
		pod:         corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "prod", Labels: map[string]string{api.LabelServiceAccount: "fake"}}, Spec: corev1.PodSpec{ServiceAccountName: long}},
		wantChanged: true,
		wantLabels:  map[string]string{api.LabelNamespace: "prod", api.LabelOrchestrator: "k8s"},
		wantSA:      long,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cniWritten()
			got, changed := endpointFor(in, &tt.pod)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if diff := cmp.Diff(tt.wantLabels, got.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if got.Spec.ServiceAccountName != tt.wantSA {
				t.Errorf("service account %q, want %q", got.Spec.ServiceAccountName, tt.wantSA)
			}
			wantProfiles := []string{"kns.prod", "ksa.prod." + tt.wantSA}
			if diff := cmp.Diff(wantProfiles, got.Spec.Profiles); diff != "" {
				t.Errorf("profiles (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPorts, got.Spec.Ports); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(cniWritten(), in); diff != "" {
				t.Errorf("the input endpoint was modified:\n%s", diff)
			}
			if got.ResourceVersion != "42" || got.Spec.IPNetworks[0] != "10.0.0.1/32" {
				t.Errorf("identity or addresses lost: %+v", got)
			}
			// Applying the result again changes nothing.
			if _, again := endpointFor(got, &tt.pod); again {
				t.Errorf("endpointFor is not idempotent")
			}
		})
	}
}

func TestProfileOwner(t *testing.T) {
	tests := []struct {
		name         string
		kind, ns, sa string
		ok           bool
	}{
		{"kns.prod", "ns", "prod", "", true},
		{"ksa.prod.default", "sa", "prod", "default", true},
		{"ksa.prod.my.dotted.sa", "sa", "prod", "my.dotted.sa", true},
		{"ksa.prod", "", "", "", false},
		{"kns.", "", "", "", false},
		{"allow-all", "", "", "", false},
		{"knp.default.x", "", "", "", false},
	}
	for _, tt := range tests {
		kind, ns, sa, ok := profileOwner(tt.name)
		if ok != tt.ok || (ok && (kind != tt.kind || ns != tt.ns || sa != tt.sa)) {
			t.Errorf("profileOwner(%q) = %q %q %q %v, want %q %q %q %v", tt.name, kind, ns, sa, ok, tt.kind, tt.ns, tt.sa, tt.ok)
		}
	}
}

func TestSameObjectIgnoresStoreMetadata(t *testing.T) {
	a := api.NamespaceProfile("prod", map[string]string{"env": "prod"})
	b := api.NamespaceProfile("prod", map[string]string{"env": "prod"})
	b.ResourceVersion, b.UID = "7", "u-1"
	b.CreationTimestamp = metav1.Now()
	if !sameObject(a, b) {
		t.Errorf("profiles differing only in store metadata compare different")
	}
	c := api.NamespaceProfile("prod", map[string]string{"env": "dev"})
	if sameObject(a, c) {
		t.Errorf("profiles with different labels compare equal")
	}
}
