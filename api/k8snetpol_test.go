package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// TestTranslateNetworkPolicyGolden translates every
// testdata/k8snetpol/<name>.yaml and compares the result, as YAML, with
// <name>.golden.
func TestTranslateNetworkPolicyGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/k8snetpol/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var np networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict(data, &np); err != nil {
				t.Fatalf("decode %s: %v", in, err)
			}
			got, err := TranslateNetworkPolicy(&np)
			if err != nil {
				t.Fatalf("translate: %v", err)
			}
			out, err := yaml.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(out)); diff != "" {
				t.Errorf("translation of %s differs from %s (-want +got):\n%s", in, golden, diff)
			}
		})
	}
}

func TestTranslateNetworkPolicyErrors(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"empty peer", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{from: [{}]}]}}`,
			"spec.ingress[0]: peer 0: must set one of podSelector, namespaceSelector or ipBlock"},
		{"bad cidr", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.1}}]}]}}`,
			"ipBlock.cidr: \"10.0.0.1\" is not a CIDR"},
		{"bad except", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [x]}}]}]}}`,
			"spec.egress[0]: peer 0: ipBlock.except[0]"},
		{"bad operator", `{metadata: {name: p, namespace: x}, spec: {podSelector: {matchExpressions: [{key: a, operator: Gt, values: ["1"]}]}}}`,
			"spec.podSelector: matchExpressions[0]: unknown operator \"Gt\""},
		{"in without values", `{metadata: {name: p, namespace: x}, spec: {podSelector: {matchExpressions: [{key: a, operator: In}]}}}`,
			"operator In needs at least one value"},
		{"named endPort", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}}`,
			"endPort cannot be used with the named port \"http\""},
		{"endPort below port", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}}`,
			"endPort 80 must be from port 90 to 65535"},
		{"icmp", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}}`,
			"protocol \"ICMP\" must be TCP, UDP or SCTP"},
		{"no name", `{metadata: {namespace: x}, spec: {podSelector: {}}}`, "metadata.name is required"},
		{"bad type", `{metadata: {name: p, namespace: x}, spec: {podSelector: {}, policyTypes: [Both]}}`,
			"spec.policyTypes[0]: \"Both\" is neither Ingress nor Egress"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var np networkingv1.NetworkPolicy
			if err := yaml.UnmarshalStrict([]byte(tc.yaml), &np); err != nil {
				t.Fatalf("decode: %v", err)
			}
			_, err := TranslateNetworkPolicy(&np)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestSimplifyPorts(t *testing.T) {
	tests := []struct {
		in, want []Port
	}{
		{nil, nil},
		{[]Port{SinglePort(80)}, []Port{SinglePort(80)}},
		// Fewer than two numeric ports: unchanged, order kept.
		{[]Port{SinglePort(80), NamedPort("http")}, []Port{SinglePort(80), NamedPort("http")}},
		{[]Port{SinglePort(82), SinglePort(80), SinglePort(81), NamedPort("a"), SinglePort(90)},
			[]Port{NamedPort("a"), PortRange(80, 82), SinglePort(90)}},
		{[]Port{PortRange(10, 20), PortRange(15, 30), SinglePort(31), SinglePort(33)},
			[]Port{PortRange(10, 31), SinglePort(33)}},
		{[]Port{SinglePort(5), SinglePort(5)}, []Port{SinglePort(5)}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, SimplifyPorts(tc.in)); diff != "" {
			t.Errorf("SimplifyPorts(%v) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestK8sProfiles(t *testing.T) {
	ns := NamespaceProfile("x", map[string]string{"team": "a"})
	if ns.Name != "kns.x" || len(ns.Spec.Ingress) != 1 || ns.Spec.Ingress[0].Action != Allow ||
		len(ns.Spec.Egress) != 1 || ns.Spec.Egress[0].Action != Allow {
		t.Errorf("NamespaceProfile = %+v, want kns.x allowing all", ns)
	}
	if diff := cmp.Diff(map[string]string{"pcns.team": "a", "pcns.projectcalico.org/name": "x"}, ns.Spec.LabelsToApply); diff != "" {
		t.Errorf("kns labels (-want +got):\n%s", diff)
	}
	sa := ServiceAccountProfile("x", "default", map[string]string{"k": "v"})
	if sa.Name != "ksa.x.default" || sa.Spec.Ingress != nil || sa.Spec.Egress != nil {
		t.Errorf("ServiceAccountProfile = %+v, want ksa.x.default with no rules", sa)
	}
	if diff := cmp.Diff(map[string]string{"pcsa.k": "v", "pcsa.projectcalico.org/name": "default"}, sa.Spec.LabelsToApply); diff != "" {
		t.Errorf("ksa labels (-want +got):\n%s", diff)
	}
}
