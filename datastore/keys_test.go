package datastore_test

import (
	"errors"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
)

func kind(t testing.TB, name string) api.KindInfo {
	t.Helper()
	k, ok := api.LookupKind(name)
	if !ok {
		t.Fatalf("no kind %q", name)
	}
	return k
}

func TestKeyLayout(t *testing.T) {
	tests := []struct {
		kind, ns, name string
		want           string
		wantErr        bool
	}{
		{"NetworkPolicy", "default", "allow-tcp-6379", "/calico/resources/v3/projectcalico.org/networkpolicies/default/allow-tcp-6379", false},
		{"GlobalNetworkPolicy", "", "gnp.x", "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/gnp.x", false},
		{"WorkloadEndpoint", "ns1", "node1-k8s-my--pod-eth0", "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/node1-k8s-my--pod-eth0", false},
		{"IPPool", "", "default-ipv4-ippool", "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool", false},
		{"KubernetesNetworkPolicy", "ns", "np", "/calico/resources/v3/projectcalico.org/kubernetesnetworkpolicies/ns/np", false},
		{"NetworkPolicy", "", "x", "", true},    // namespace required
		{"IPPool", "ns", "x", "", true},         // cluster-scoped
		{"Tier", "", "", "", true},              // name required
		{"Tier", "", "a/b", "", true},           // slash
		{"NetworkPolicy", "a/b", "x", "", true}, // slash in namespace
	}
	for _, tt := range tests {
		k := kind(t, tt.kind)
		got, err := datastore.Key(k, tt.ns, tt.name)
		if tt.wantErr {
			if !errors.Is(err, datastore.ErrInvalid) {
				t.Errorf("Key(%s, %q, %q) = %q, %v; want ErrInvalid", tt.kind, tt.ns, tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Key(%s, %q, %q) = %q, %v; want %q", tt.kind, tt.ns, tt.name, got, err, tt.want)
			continue
		}
		pk, ns, name, ok := datastore.ParseKey(got)
		if !ok || pk.Kind != tt.kind || ns != tt.ns || name != tt.name {
			t.Errorf("ParseKey(%q) = %s %q %q %v; want the inverse", got, pk.Kind, ns, name, ok)
		}
	}
	for _, bad := range []string{
		"/calico/ipam/v2/config",
		"/calico/resources/v3/projectcalico.org/nosuchkinds/x",
		"/calico/resources/v3/projectcalico.org/networkpolicies/onlyname",
		"/calico/resources/v3/projectcalico.org/ippools/a/b",
		"/calico/resources/v3/projectcalico.org/ippools/",
		"/calico/resources/v3/projectcalico.org/policy/x", // alias, not the plural
	} {
		if k, ns, n, ok := datastore.ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) = %s %q %q; want not ok", bad, k.Kind, ns, n)
		}
	}
}

func TestKindPrefix(t *testing.T) {
	if got, want := datastore.KindPrefix(kind(t, "NetworkPolicy"), "ns1"), "/calico/resources/v3/projectcalico.org/networkpolicies/ns1/"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if got, want := datastore.KindPrefix(kind(t, "Tier"), ""), "/calico/resources/v3/projectcalico.org/tiers/"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  datastore.Config
		ok   bool
	}{
		{"defaults", datastore.Config{}, true},
		{"https", datastore.Config{Endpoints: []string{"https://10.0.0.1:2379", "http://h:2379"}}, true},
		{"no scheme", datastore.Config{Endpoints: []string{"10.0.0.1:2379"}}, false},
		{"cert without key", datastore.Config{CertFile: "c.pem"}, false},
		{"password without user", datastore.Config{Password: "x"}, false},
		{"tiny txn", datastore.Config{MaxTxnOps: 1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
