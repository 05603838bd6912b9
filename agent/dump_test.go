package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
)

func TestDump(t *testing.T) {
	m := datastoretest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	objs := []api.Object{
		api.NamespaceProfile("ns1", nil), api.ServiceAccountProfile("ns1", "default", nil),
		wep(podSpec{Namespace: "ns1", Name: "a", Node: "host-1", Iface: "cali1", IP: netip.MustParseAddr("10.65.0.1"),
			Labels: map[string]string{"app": "db"}}),
		wep(podSpec{Namespace: "ns1", Name: "b", Node: "host-2", Iface: "cali2", IP: netip.MustParseAddr("10.65.0.2")}),
	}
	objs = append(objs, objects(t, `
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: isolate-db}
spec: {selector: app == 'db', types: [Ingress]}
`)...)
	if _, err := m.Client.WriteBatch(ctx, datastore.OpApply, objs); err != nil {
		t.Fatal(err)
	}
	out, err := Dump(ctx, DumpConfig{Hostname: "host-1", Datastore: m.Client})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"table inet brindle",
		"cali1",
		"isolate-db",
		"# routes\n10.65.0.1/32 dev cali1 proto brindle scope link\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cali2") {
		t.Errorf("dump mentions the remote endpoint's interface cali2:\n%s", out)
	}
}
