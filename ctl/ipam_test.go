package ctl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/ipam"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIPAMCommands drives show, check and release against a real embedded
// etcd: a healthy allocation, a leaked one and an endpoint whose address
// IPAM does not hold.
func TestIPAMCommands(t *testing.T) {
	m := datastoretest.New(t)
	ep := m.Endpoints[0]
	ctx := context.Background()
	pool := &api.IPPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"},
		ObjectMeta: metav1.ObjectMeta{Name: "pool1"},
		Spec:       api.IPPoolSpec{CIDR: "10.60.0.0/25"},
	}
	if _, err := m.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	im, err := ipam.New(ipam.NewEtcdStore(m.Client), ipam.Config{Node: "node1", Source: cni.NewDatastoreSource(m.Client)})
	if err != nil {
		t.Fatal(err)
	}
	assign := func(handle string) string {
		got, err := im.AutoAssign(ctx, ipam.AutoAssignArgs{Num4: 1, HandleID: handle})
		if err != nil {
			t.Fatal(err)
		}
		return got[0].Addr().String()
	}
	good := assign("net.cid-good")
	leaked := assign("net.cid-leaked")
	wep := func(cid, ip string) *api.WorkloadEndpoint {
		return &api.WorkloadEndpoint{
			TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "WorkloadEndpoint"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "default"},
			Spec: api.WorkloadEndpointSpec{Orchestrator: "cni", Node: "node1", ContainerID: cid, Endpoint: "eth0",
				InterfaceName: "cali" + cid, IPNetworks: []string{ip + "/32"}},
		}
	}
	for _, w := range []*api.WorkloadEndpoint{wep("cid-good", good), wep("cid-ghost", "10.60.0.100")} {
		api.Default(w)
		if _, err := m.Client.Create(ctx, w); err != nil {
			t.Fatal(err)
		}
	}

	out, code := runCtl(t, "ipam", "show", "--etcd-endpoints", ep)
	if code != 0 {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	for _, want := range []string{"IP Pool pool1", "10.60.0.0/25", "128", "2 (2%)", "  Block", "10.60.0.", "host:node1"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	out, code = runCtl(t, "ipam", "show", "-o", "json", "--etcd-endpoints", ep)
	var rep ipam.ShowReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Pools) != 1 || rep.Pools[0].InUse != 2 || len(rep.Pools[0].Blocks) != 1 {
		t.Errorf("show -o json: exit %d, %+v\n%s", code, rep, out)
	}

	out, code = runCtl(t, "ipam", "check", "--etcd-endpoints", ep)
	if code != 1 {
		t.Errorf("check with a leak: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"address-without-endpoint", leaked, "net.cid-leaked",
		"endpoint-address-not-allocated", "10.60.0.100", "which IPAM does not hold",
		"2 problem(s) found",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "net.cid-good") {
		t.Errorf("check flags the healthy allocation:\n%s", out)
	}

	// Release: a wrong handle refuses, the right one (or none) releases.
	if out, code = runCtl(t, "ipam", "release", "--ip", leaked, "--handle", "net.cid-good", "--etcd-endpoints", ep); code != 1 || !strings.Contains(out, "held by another handle") {
		t.Errorf("release with the wrong handle: exit %d\n%s", code, out)
	}
	if out, code = runCtl(t, "ipam", "release", "--ip", leaked, "--etcd-endpoints", ep); code != 0 || !strings.Contains(out, "Released "+leaked) {
		t.Errorf("release --ip: exit %d\n%s", code, out)
	}
	if out, code = runCtl(t, "ipam", "release", "--ip", leaked, "--etcd-endpoints", ep); code != 1 || !strings.Contains(out, "is not allocated") {
		t.Errorf("release of a free address: exit %d\n%s", code, out)
	}
	if out, code = runCtl(t, "ipam", "release", "--ip", "banana", "--etcd-endpoints", ep); code != 1 || !strings.Contains(out, `--ip "banana"`) {
		t.Errorf("release --ip banana: exit %d\n%s", code, out)
	}
	kind, _ := api.LookupKind("WorkloadEndpoint")
	if _, err := m.Client.Delete(ctx, kind, "default", "node1-cni-cid--ghost-eth0", ""); err != nil {
		t.Fatal(err)
	}
	if out, code = runCtl(t, "ipam", "check", "--etcd-endpoints", ep); code != 0 || !strings.Contains(out, "No problems found.") {
		t.Errorf("check after repair: exit %d\n%s", code, out)
	}
	if out, code = runCtl(t, "ipam", "release", "--handle", "net.cid-good", "--etcd-endpoints", ep); code != 0 || !strings.Contains(out, "Released 1 address(es) of handle net.cid-good: "+good) {
		t.Errorf("release --handle: exit %d\n%s", code, out)
	}
	if out, code = runCtl(t, "ipam", "release", "--handle", "net.cid-good", "--etcd-endpoints", ep); code != 1 || !strings.Contains(out, "handle not found") {
		t.Errorf("release of a gone handle: exit %d\n%s", code, out)
	}
	if out, code = runCtl(t, "ipam", "release", "--etcd-endpoints", ep); code != 1 || !strings.Contains(out, "give --ip, --handle or both") {
		t.Errorf("release without flags: exit %d\n%s", code, out)
	}
}
