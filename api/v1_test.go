package api

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under api/testdata from the current output")

// TestV1Golden converts every testdata/v1/<name>.yaml (v1 documents), then
// defaults and validates the result, and compares it, marshalled to YAML,
// with <name>.golden.yaml.
func TestV1Golden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/v1/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.yaml") {
			continue
		}
		n++
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := DecodeAndValidate(data)
			if err != nil {
				t.Fatalf("DecodeAndValidate: %v", err)
			}
			var out bytes.Buffer
			for i, o := range objs {
				if i > 0 {
					out.WriteString("---\n")
				}
				b, err := yaml.Marshal(o)
				if err != nil {
					t.Fatal(err)
				}
				out.Write(b)
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("conversion of %s differs from %s (-want +got):\n%s", in, golden, diff)
			}
			// The golden v3 output must itself decode, default and
			// validate to the same objects.
			again, err := DecodeAndValidate(want)
			if err != nil {
				t.Fatalf("golden file does not validate: %v", err)
			}
			if diff := cmp.Diff(objs, again); diff != "" {
				t.Errorf("golden file does not round-trip (-converted +golden):\n%s", diff)
			}
		})
	}
	if n < 8 {
		t.Fatalf("found only %d v1 inputs", n)
	}
}

// TestV1TalkExampleAppliesBothWays is the acceptance check, stated
// directly rather than through the golden file.
func TestV1TalkExampleAppliesBothWays(t *testing.T) {
	data, err := os.ReadFile("testdata/v1/talk-allow-tcp-6379.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := DecodeAndValidate(data)
	if err != nil {
		t.Fatal(err)
	}
	gnp, ok := objs[0].(*GlobalNetworkPolicy)
	if !ok {
		t.Fatalf("got %T, want *GlobalNetworkPolicy", objs[0])
	}
	if diff := cmp.Diff([]PolicyType{PolicyTypeIngress, PolicyTypeEgress}, gnp.Spec.Types); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	if gnp.Name != "allow-tcp-6379" || gnp.Spec.Tier != "default" || gnp.Spec.Ingress[0].Protocol.String() != "TCP" {
		t.Errorf("unexpected conversion: %+v", gnp)
	}
}

func TestV1Names(t *testing.T) {
	hash := func(s string) string {
		sum := sha1.Sum([]byte(s))
		return hex.EncodeToString(sum[:])[:8]
	}
	tests := []struct {
		fn   func(string) string
		in   string
		want string
	}{
		{v1Name, "simple", "simple"},
		{v1Name, "a.b", "a.b"},
		{v1Name, "Upper", "upper-" + hash("Upper")},
		{v1Name, "a_b", "a-b-" + hash("a_b")},
		{v1Name, "a/b", "a.b-" + hash("a/b")},
		{v1Name, "-a..-.b-", "a.b-" + hash("-a..-.b-")},
		{v1NameNoDots, "a.b", "a-b-" + hash("a.b")},
		{v1NameNoDots, "allow-tcp-6379", "allow-tcp-6379"},
		{v1NormalizeName, "Rack1_Host1.Example.COM", "rack1-host1.example.com"},
		{v1ProfileName, "k8s_ns.kube-system", "kns.kube-system"},
		{v1ProfileName, "k8s_ns.Kube_System", "kns.kube-system-" + hash("kns.Kube_System")},
	}
	for _, tt := range tests {
		if got := tt.fn(tt.in); got != tt.want {
			t.Errorf("%q → %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWorkloadEndpointName(t *testing.T) {
	tests := []struct {
		node, orch, workload, endpoint string
		want, err                      string
	}{
		{"node1", "k8s", "my-pod", "eth0", "node1-k8s-my--pod-eth0", ""},
		{"node-1", "cni", "abc123", "eth0", "node--1-cni-abc123-eth0", ""},
		{"h", "libnetwork", "whatever", "ep-1", "h-libnetwork-libnetwork-ep--1", ""},
		{"compute-1", "openstack", "vm-1", "tap-1", "compute--1-openstack-vm--1-tap--1", ""},
		{"", "k8s", "p", "eth0", "", "node is required"},
		{"n", "k8s", "", "eth0", "", "pod is required"},
		{"n", "cni", "", "eth0", "", "containerID is required"},
		{"n", "k8s", "p", "", "", "endpoint is required"},
		{"n", "k8s", "-p", "eth0", "", `pod "-p" must not start or end with '-'`},
		{"n-", "k8s", "p", "eth0", "", `node "n-" must not start or end with '-'`},
	}
	for _, tt := range tests {
		got, err := WorkloadEndpointName(tt.node, tt.orch, tt.workload, tt.endpoint)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: error %v, want %q", tt, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%v: got %q, %v; want %q", tt, got, err, tt.want)
		}
	}
}

func TestV1IPName(t *testing.T) {
	for in, want := range map[string]string{
		"192.168.1.1": "192-168-1-1",
		"aa:bb::ff":   "00aa-00bb-0000-0000-0000-0000-0000-00ff",
	} {
		ip, ok := parseIP(in)
		if !ok {
			t.Fatal(in)
		}
		if got := v1IPName(ip); got != want {
			t.Errorf("%s → %q, want %q", in, got, want)
		}
	}
}

func TestV1SelectorNewOperator(t *testing.T) {
	tests := map[string]string{
		"a == 'b'":                            "",
		"a contains 'b'":                      "contains",
		"a starts with 'b'":                   "starts with",
		"a startswith 'b'":                    "starts with",
		"a ends with 'x' && has(b)":           "ends with",
		"global()":                            "global()",
		"has(a) && global()":                  "global()",
		"contains == 'x'":                     "",
		"a == 'contains' && b == 'ends with'": "",
		"has(global)":                         "",
		"starts == 'x' || ends in {'y'}":      "",
	}
	for sel, want := range tests {
		if got := v1SelectorNewOperator(sel); got != want {
			t.Errorf("%q → %q, want %q", sel, got, want)
		}
	}
}

func TestV1Errors(t *testing.T) {
	const pol = "apiVersion: v1\nkind: policy\nmetadata: {name: p}\n"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"knp not migrated", "apiVersion: v1\nkind: policy\nmetadata: {name: knp.default.allow-all}\nspec: {}\n",
			[]string{`metadata.name: policy "knp.default.allow-all" was generated from a Kubernetes NetworkPolicy and is not converted`}},
		{"contains", pol + "spec: {selector: \"a contains 'x'\"}\n", []string{"spec.selector: contains is not part of the v1 selector language"}},
		{"global in rule", pol + "spec:\n  ingress:\n  - action: allow\n    source: {selector: global()}\n", []string{"spec.ingress[0].source.selector: global() is not part of the v1"}},
		{"starts with notSelector", pol + "spec:\n  egress:\n  - action: allow\n    destination: {notSelector: \"a starts with 'x'\"}\n", []string{"spec.egress[0].destination.notSelector: starts with"}},
		{"bad action", pol + "spec:\n  ingress:\n  - action: alow\n", []string{`spec.ingress[0].action: unknown action "alow" (want allow, deny, log or pass)`}},
		{"bad type", pol + "spec: {types: [ingres]}\n", []string{`spec.types[0]: unknown policy type "ingres"`}},
		{"bad net", pol + "spec:\n  ingress:\n  - action: allow\n    source: {net: 10.0.0.0/33}\n", []string{`spec.ingress[0].source.net: "10.0.0.0/33" is not a CIDR`}},
		{"bad nets", pol + "spec:\n  ingress:\n  - action: allow\n    source: {nets: [10.0.0.0/8, bogus]}\n", []string{`spec.ingress[0].source.nets[1]: "bogus" is not an IP address or CIDR`}},
		{"bad tag", pol + "spec:\n  ingress:\n  - action: allow\n    source: {tag: 'a b'}\n", []string{`spec.ingress[0].source.tag: tag "a b"`}},
		{"v3 field in v1", pol + "spec:\n  ingress:\n  - action: allow\n    source: {namespaceSelector: all()}\n", []string{"spec.ingress[0].source.namespaceSelector: unknown field"}},
		{"v3 kind with v1", "apiVersion: v1\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\n", []string{`unknown v1 kind "GlobalNetworkPolicy"`, "apiVersion projectcalico.org/v3"}},
		{"missing name", "apiVersion: v1\nkind: policy\nspec: {}\n", []string{"metadata.name: is required"}},
		{"tag clash", "apiVersion: v1\nkind: profile\nmetadata: {name: p, labels: {t1: x}, tags: [t1]}\n", []string{`metadata.tags[0]: tag "t1" clashes with the label t1="x"`}},
		{"k8s workload without ns", "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: nopod, orchestrator: k8s, node: nd}\n", []string{`metadata.workload: k8s workload "nopod" is not "<namespace>.<pod>"`}},
		{"wep missing ids", "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0}\n", []string{"metadata.workload: is required", "metadata.orchestrator: is required", "metadata.node: is required"}},
		{"wep bad mac", "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: a.b, orchestrator: k8s, node: nd}\nspec: {mac: 'zz'}\n", []string{`spec.mac: "zz" is not a MAC address`}},
		{"wep bad ip", "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: a.b, orchestrator: k8s, node: nd}\nspec: {ipNetworks: [300.0.0.1/32]}\n", []string{"spec.ipNetworks[0]"}},
		{"wep dash segment", "apiVersion: v1\nkind: workloadEndpoint\nmetadata: {name: eth0, workload: a.-b, orchestrator: k8s, node: nd}\n", []string{"must not start or end with '-'"}},
		{"hep missing node", "apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: eth0}\nspec: {interfaceName: eth0}\n", []string{"metadata.node: is required"}},
		{"hep bad ip", "apiVersion: v1\nkind: hostEndpoint\nmetadata: {name: eth0, node: nd}\nspec: {expectedIPs: [1.2.3]}\n", []string{`spec.expectedIPs[0]: "1.2.3" is not an IP address`}},
		{"pool missing cidr", "apiVersion: v1\nkind: ipPool\nmetadata: {}\n", []string{"metadata.cidr: is required"}},
		{"pool bad cidr", "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0}\n", []string{`metadata.cidr: "10.0.0.0" is not a CIDR`}},
		{"pool bad ipip mode", "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.0/16}\nspec: {ipip: {enabled: true, mode: sometimes}}\n", []string{`spec.ipip.mode: unknown IPIP mode "sometimes"`}},
		{"pool unmasked", "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.0.0.1/16}\n", []string{"spec.cidr: 10.0.0.1/16 is not strictly masked"}},
		{"peer no scope", "apiVersion: v1\nkind: bgpPeer\nmetadata: {peerIP: 1.2.3.4}\nspec: {asNumber: 1}\n", []string{"metadata.scope: is required"}},
		{"peer global with node", "apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, node: nd, peerIP: 1.2.3.4}\nspec: {asNumber: 1}\n", []string{"metadata.node: must be empty for a global peer"}},
		{"peer node without node", "apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: node, peerIP: 1.2.3.4}\nspec: {asNumber: 1}\n", []string{"metadata.node: is required for a node peer"}},
		{"peer bad ip", "apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, peerIP: 1.2.3.400}\nspec: {asNumber: 1}\n", []string{`metadata.peerIP: "1.2.3.400" is not an IP address`}},
		{"peer bad as", "apiVersion: v1\nkind: bgpPeer\nmetadata: {scope: global, peerIP: 1.2.3.4}\nspec: {asNumber: '1.99999'}\n", []string{`spec.asNumber: AS number "1.99999"`}},
		{"node bgp without address", "apiVersion: v1\nkind: node\nmetadata: {name: nd}\nspec: {bgp: {asNumber: 1}}\n", []string{"spec.bgp: needs ipv4Address or ipv6Address"}},
		{"node wrong family", "apiVersion: v1\nkind: node\nmetadata: {name: nd}\nspec: {bgp: {ipv4Address: '2001:db8::1/64'}}\n", []string{"spec.bgp.ipv4Address: 2001:db8::1/64 is not an IPv4 address"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeAndValidate([]byte(tt.in))
			if err == nil {
				t.Fatalf("no error; got %v", objs)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
