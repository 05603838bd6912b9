package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// cloneObject deep-copies an object through its YAML form.
func cloneObject(t *testing.T, o Object) Object {
	t.Helper()
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return decodeOne(t, string(b))
}

func decodeOne(t *testing.T, in string) Object {
	t.Helper()
	objs, err := DecodeDocuments([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects", len(objs))
	}
	return objs[0]
}

func TestDefaultPolicyTypes(t *testing.T) {
	tests := []struct {
		name, spec string
		want       []PolicyType
	}{
		{"no rules", "  selector: all()\n", []PolicyType{PolicyTypeIngress}},
		{"ingress only", "  ingress: [{action: Allow}]\n", []PolicyType{PolicyTypeIngress}},
		{"egress only", "  egress: [{action: Allow}]\n", []PolicyType{PolicyTypeEgress}},
		{"both", "  ingress: [{action: Allow}]\n  egress: [{action: Allow}]\n", []PolicyType{PolicyTypeIngress, PolicyTypeEgress}},
		{"explicit kept", "  types: [Egress]\n  ingress: [{action: Allow}]\n", []PolicyType{PolicyTypeEgress}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, kind := range []string{"NetworkPolicy", "GlobalNetworkPolicy"} {
				o := decodeOne(t, doc(kind, "{name: p, namespace: ns}", tt.spec))
				Default(o)
				var got []PolicyType
				var tier string
				switch p := o.(type) {
				case *NetworkPolicy:
					got, tier = p.Spec.Types, p.Spec.Tier
				case *GlobalNetworkPolicy:
					got, tier = p.Spec.Types, p.Spec.Tier
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("%s types (-want +got):\n%s", kind, diff)
				}
				if tier != DefaultTierName || o.GetLabels()[LabelTier] != DefaultTierName {
					t.Errorf("%s: tier %q, label %q", kind, tier, o.GetLabels()[LabelTier])
				}
			}
		})
	}
}

func TestDefaultTierLabelFollowsTier(t *testing.T) {
	o := decodeOne(t, doc("GlobalNetworkPolicy", "{name: security.p, labels: {projectcalico.org/tier: wrong, app: x}}", "  tier: security\n"))
	Default(o)
	want := map[string]string{LabelTier: "security", "app": "x"}
	if diff := cmp.Diff(want, o.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
}

func TestDefaultNets(t *testing.T) {
	o := decodeOne(t, doc("GlobalNetworkPolicy", "{name: p}",
		"  ingress:\n  - action: Allow\n    source: {nets: [10.1.2.3, 10.1.2.3/16, 'fd00::1', 'fd00::1/64', bogus]}\n    destination: {notNets: [192.168.1.1/24]}\n"))
	Default(o)
	r := o.(*GlobalNetworkPolicy).Spec.Ingress[0]
	if diff := cmp.Diff([]string{"10.1.2.3/32", "10.1.0.0/16", "fd00::1/128", "fd00::/64", "bogus"}, r.Source.Nets); diff != "" {
		t.Errorf("nets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"192.168.1.0/24"}, r.Destination.NotNets); diff != "" {
		t.Errorf("notNets (-want +got):\n%s", diff)
	}
	gns := decodeOne(t, doc("GlobalNetworkSet", "{name: s}", "  nets: [1.2.3.4]\n"))
	Default(gns)
	if got := gns.(*GlobalNetworkSet).Spec.Nets[0]; got != "1.2.3.4/32" {
		t.Errorf("netset net %q", got)
	}
}

func TestDefaultIPPool(t *testing.T) {
	tests := []struct {
		name, spec string
		want       IPPoolSpec
	}{
		{"v4 plain", "  cidr: 10.0.0.0/16\n", IPPoolSpec{CIDR: "10.0.0.0/16", BlockSize: 26, NodeSelector: "all()",
			AllowedUses: []string{"Workload", "Tunnel"}, IPIPMode: "Never", VXLANMode: "Never", AssignmentMode: "Automatic"}},
		{"v6", "  cidr: 'fd00::/48'\n", IPPoolSpec{CIDR: "fd00::/48", BlockSize: 122, NodeSelector: "all()",
			AllowedUses: []string{"Workload", "Tunnel"}, IPIPMode: "Never", VXLANMode: "Never", AssignmentMode: "Automatic"}},
		{"deprecated fields", "  cidr: 10.0.0.0/16\n  ipip: {enabled: true, mode: cross-subnet}\n  nat-outgoing: true\n", IPPoolSpec{CIDR: "10.0.0.0/16",
			BlockSize: 26, NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}, IPIPMode: "CrossSubnet", VXLANMode: "Never",
			NATOutgoing: true, AssignmentMode: "Automatic"}},
		{"deprecated ipip default mode", "  cidr: 10.0.0.0/16\n  ipip: {enabled: true}\n", IPPoolSpec{CIDR: "10.0.0.0/16",
			BlockSize: 26, NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}, IPIPMode: "Always", VXLANMode: "Never", AssignmentMode: "Automatic"}},
		{"deprecated ipip disabled", "  cidr: 10.0.0.0/16\n  ipip: {enabled: false}\n", IPPoolSpec{CIDR: "10.0.0.0/16",
			BlockSize: 26, NodeSelector: "all()", AllowedUses: []string{"Workload", "Tunnel"}, IPIPMode: "Never", VXLANMode: "Never", AssignmentMode: "Automatic"}},
		{"explicit kept", "  cidr: 10.0.0.0/16\n  blockSize: 28\n  vxlanMode: Always\n  nodeSelector: has(x)\n  allowedUses: [Workload]\n  ipip: {enabled: true}\n  ipipMode: Never\n",
			IPPoolSpec{CIDR: "10.0.0.0/16", BlockSize: 28, NodeSelector: "has(x)", AllowedUses: []string{"Workload"}, IPIPMode: "Never", VXLANMode: "Always", AssignmentMode: "Automatic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := decodeOne(t, doc("IPPool", "{name: p}", tt.spec))
			Default(o)
			if diff := cmp.Diff(tt.want, o.(*IPPool).Spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefaultTiers(t *testing.T) {
	tests := []struct {
		name   string
		order  *float64
		action Action
	}{
		{"default", ptrTo(DefaultTierOrder), Deny},
		{"kube-admin", ptrTo(KubeAdminTierOrder), Pass},
		{"kube-baseline", ptrTo(KubeBaselineTierOrder), Pass},
		{"mine", nil, Deny},
	}
	for _, tt := range tests {
		o := decodeOne(t, doc("Tier", "{name: "+tt.name+"}", ""))
		Default(o)
		s := o.(*Tier).Spec
		if diff := cmp.Diff(tt.order, s.Order); diff != "" {
			t.Errorf("%s order (-want +got):\n%s", tt.name, diff)
		}
		if s.DefaultAction == nil || *s.DefaultAction != tt.action {
			t.Errorf("%s defaultAction %v, want %s", tt.name, s.DefaultAction, tt.action)
		}
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestDefaultWorkloadEndpointName(t *testing.T) {
	o := decodeOne(t, doc("WorkloadEndpoint", "{namespace: ns}", "  node: node-1\n  orchestrator: k8s\n  pod: my-pod\n  endpoint: eth0\n  ipNetworks: [10.0.0.1]\n"))
	Default(o)
	if o.GetName() != "node--1-k8s-my--pod-eth0" {
		t.Errorf("name %q", o.GetName())
	}
	if got := o.(*WorkloadEndpoint).Spec.IPNetworks[0]; got != "10.0.0.1/32" {
		t.Errorf("ipNetworks %q", got)
	}
	if err := Validate(o); err != nil {
		t.Error(err)
	}
}

// TestDefaultIdempotent defaults every realistic and v1-converted object
// twice and requires the second pass to change nothing.
func TestDefaultIdempotent(t *testing.T) {
	for _, in := range []string{
		doc("GlobalNetworkPolicy", "{name: p}", "  egress: [{action: Allow, source: {nets: [10.0.0.1]}}]\n"),
		doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  ipip: {enabled: true}\n  nat-outgoing: true\n"),
		doc("Tier", "{name: default}", ""),
		doc("WorkloadEndpoint", "{namespace: ns}", "  node: n1\n  orchestrator: cni\n  containerID: abc\n  endpoint: eth0\n"),
	} {
		o := decodeOne(t, in)
		Default(o)
		once := cloneObject(t, o)
		Default(o)
		if diff := cmp.Diff(once, o); diff != "" {
			t.Errorf("second Default changed %s (-once +twice):\n%s", in, diff)
		}
	}
}
