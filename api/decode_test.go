package api

import (
	"errors"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

func TestDecodeDocumentsShapes(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		kinds []string // Go kinds of the decoded objects, by KindOf
		names []string
	}{
		{"empty", "", nil, nil},
		{"only separators and comments", "---\n# nothing\n---\n", nil, nil},
		{"one yaml", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a}\n", []string{"GlobalNetworkPolicy"}, []string{"a"}},
		{"alias kind", "apiVersion: projectcalico.org/v3\nkind: gnp\nmetadata: {name: a}\n", []string{"GlobalNetworkPolicy"}, []string{"a"}},
		{"case-insensitive kind", "apiVersion: projectcalico.org/v3\nkind: networkPOLICY\nmetadata: {name: a, namespace: ns}\n", []string{"NetworkPolicy"}, []string{"a"}},
		{"multi yaml", "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n---\n\n--- # comment\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: p}\n...\n", []string{"Tier", "Profile"}, []string{"t", "p"}},
		{"json object", `{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16"}}`, []string{"IPPool"}, []string{"p"}},
		{"json stream", `{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"a"}} {"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"b"}}`, []string{"Tier", "Tier"}, []string{"a", "b"}},
		{"json array", `[{"apiVersion":"projectcalico.org/v3","kind":"Tier","metadata":{"name":"a"}}, {"apiVersion":"projectcalico.org/v3","kind":"Profile","metadata":{"name":"b"}}]`, []string{"Tier", "Profile"}, []string{"a", "b"}},
		{"yaml sequence", "- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: a}\n", []string{"Tier"}, []string{"a"}},
		{"List", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: a}\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: k, namespace: ns}\n", []string{"Tier", "KubernetesNetworkPolicy"}, []string{"a", "k"}},
		{"typed List", "apiVersion: projectcalico.org/v3\nkind: TierList\nmetadata: {resourceVersion: '5'}\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n", []string{"Tier", "Tier"}, []string{"a", "b"}},
		{"k8s netpol", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: ns}\nspec: {podSelector: {}}\n", []string{"KubernetesNetworkPolicy"}, []string{"k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeDocuments([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeDocuments: %v", err)
			}
			if len(objs) != len(tt.kinds) {
				t.Fatalf("got %d objects, want %d", len(objs), len(tt.kinds))
			}
			for i, o := range objs {
				info, ok := KindOf(o)
				if !ok || info.Kind != tt.kinds[i] {
					t.Errorf("object %d: kind %v %v, want %s", i, info.Kind, ok, tt.kinds[i])
				}
				if o.GetName() != tt.names[i] {
					t.Errorf("object %d: name %q, want %q", i, o.GetName(), tt.names[i])
				}
				if o.GetObjectKind().GroupVersionKind().Kind == "" {
					t.Errorf("object %d: TypeMeta not set", i)
				}
			}
		})
	}
}

func TestDecodeK8sNetworkPolicyType(t *testing.T) {
	objs, err := DecodeDocuments([]byte("apiVersion: networking.k8s.io/v1\nkind: networkpolicy\nmetadata: {name: k, namespace: ns}\nspec: {podSelector: {matchLabels: {a: b}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	np, ok := objs[0].(*networkingv1.NetworkPolicy)
	if !ok {
		t.Fatalf("got %T", objs[0])
	}
	if np.Kind != "NetworkPolicy" || np.APIVersion != "networking.k8s.io/v1" || np.Spec.PodSelector.MatchLabels["a"] != "b" {
		t.Errorf("bad decode: %+v", np)
	}
}

func TestDecodeDocumentsErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"unknown field", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  ingress:\n  - action: Allow\n    sourc: {}\n", []string{`document 1 (GlobalNetworkPolicy "x"): spec.ingress[0].sourc: unknown field`}},
		{"unknown top field", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: x}\nspce: {}\n", []string{"spce: unknown field"}},
		{"case matters", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {Selector: all()}\n", []string{"spec.Selector: unknown field"}},
		{"duplicate yaml key", "apiVersion: projectcalico.org/v3\nkind: Tier\nkind: Profile\n", []string{"document 1", "invalid YAML", `"kind" already set`}},
		{"bad yaml", "apiVersion: projectcalico.org/v3\nkind: Tier\n---\nmetadata: [\n", []string{"document 2", "starting at line 4"}},
		{"missing apiVersion", "kind: Tier\nmetadata: {name: x}\n", []string{"apiVersion: is required"}},
		{"bad apiVersion", "apiVersion: projectcalico.org/v2\nkind: Tier\nmetadata: {name: x}\n", []string{`unsupported apiVersion "projectcalico.org/v2"`}},
		{"missing kind", "apiVersion: projectcalico.org/v3\nmetadata: {name: x}\n", []string{"kind: is required"}},
		{"unknown kind", "apiVersion: projectcalico.org/v3\nkind: Frobnicator\nmetadata: {name: x}\n", []string{`unknown kind "Frobnicator"`}},
		{"knp via v3", "apiVersion: projectcalico.org/v3\nkind: KubernetesNetworkPolicy\nmetadata: {name: x}\n", []string{"read-only"}},
		{"k8s other kind", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\n", []string{"only NetworkPolicy"}},
		{"kind not string", "apiVersion: projectcalico.org/v3\nkind: [a]\n", []string{"kind: must be a string"}},
		{"scalar document", "hello\n", []string{"must be an object"}},
		{"bad port", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [80, 70000]}\n", []string{"spec.ingress[0].destination.ports[1]: port 70000"}},
		{"bad port range", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  egress:\n  - action: Allow\n    destination: {ports: ['1:x']}\n", []string{"spec.egress[0].destination.ports[0]: port range"}},
		{"bad protocol number", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  egress:\n  - action: Allow\n    protocol: 256\n", []string{"spec.egress[0].protocol: protocol number 256"}},
		{"wrong type", "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec:\n  egress:\n  - action: Allow\n    ipVersion: four\n", []string{`spec.egress[0].ipVersion: must be an integer, got string "four"`}},
		{"wrong type label", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: x\n  labels: {enabled: true}\n", []string{`metadata.labels[enabled]: must be a string, got boolean true`}},
		{"bad order", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: x}\nspec: {order: high}\n", []string{`spec.order: must be a number`}},
		{"list item error", "apiVersion: projectcalico.org/v3\nkind: TierList\nitems:\n- metadata: {name: a}\n- metadata: {name: b}\n  bogus: 1\n", []string{`document 1, item 2 (Tier "b"): bogus: unknown field`}},
		{"nested list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n", []string{"may not itself be a List"}},
		{"list extra field", "apiVersion: v1\nkind: List\nfoo: 1\nitems: []\n", []string{"foo: unknown field"}},
		{"several errors", "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: a}\nx: 1\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: b}\nzz: 1\n", []string{`document 1 (Tier "a"): x: unknown field`, `document 2 (Tier "b"): zz: unknown field`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeDocuments([]byte(tt.in))
			if err == nil {
				t.Fatalf("no error; got %d objects", len(objs))
			}
			if objs != nil {
				t.Errorf("got objects %v alongside the error", objs)
			}
			var de *DocumentError
			if !errors.As(err, &de) {
				t.Errorf("error %v is not a *DocumentError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
