package vxlan

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/ipam"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

// TestDaemonBlocks: the daemon's view of IPAM keys: a block is owned only
// through a confirmed affinity; live allocations of other nodes are
// borrowed; released and deleted ones are not.
func TestDaemonBlocks(t *testing.T) {
	d := &daemon{cfg: DaemonConfig{Hostname: "a"}, log: discard(), nodes: map[string]*api.Node{},
		pools: map[string]*api.IPPool{}, blocks: map[string]*ipam.Block{}, affinities: map[string]bool{}}
	set := func(key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		d.update(datastore.Update{Type: datastore.UpdateSet, Key: key, Value: b})
	}
	released := time.Unix(1, 0)
	set("/calico/ipam/v2/assignment/ipv4/block/192.168.0.0-26", ipam.Block{CIDR: "192.168.0.0/26", Affinity: ptr("host:b"),
		Allocations: append([]*int{ptr(0), ptr(1), nil, ptr(2)}, make([]*int, 60)...),
		Attributes: []ipam.Attribute{
			{Secondary: map[string]string{"node": "b"}},
			{Secondary: map[string]string{"node": "c"}},
			{Secondary: map[string]string{"node": "c"}, ReleasedAt: &released},
		}})
	set("/calico/ipam/v2/host/b/ipv4/block/192.168.0.0-26", ipam.Affinity{State: ipam.AffinityConfirmed})
	set("/calico/ipam/v2/assignment/ipv4/block/192.168.0.64-26", ipam.Block{CIDR: "192.168.0.64/26", Affinity: ptr("host:c")})
	set("/calico/ipam/v2/host/c/ipv4/block/192.168.0.64-26", ipam.Affinity{State: ipam.AffinityPending})
	set("/calico/ipam/v2/assignment/ipv4/block/192.168.0.128-26", ipam.Block{CIDR: "192.168.0.128/26", Affinity: ptr("host:c"), Deleted: true})
	d.update(datastore.Update{Type: datastore.UpdateSet, Key: "/calico/ipam/v2/assignment/ipv4/block/192.168.0.192-26", Value: []byte("{")})

	got := map[string]Block{}
	for _, b := range d.input().Blocks {
		got[b.CIDR.String()] = b
	}
	want := map[string]Block{
		"192.168.0.0/26": {CIDR: netip.MustParsePrefix("192.168.0.0/26"), Owner: "b",
			Borrowed: map[netip.Addr]string{netip.MustParseAddr("192.168.0.1"): "c"}},
		"192.168.0.64/26": {CIDR: netip.MustParsePrefix("192.168.0.64/26")}, // pending affinity: no owner
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("blocks (-want +got):\n%s", diff)
	}

	// Deleting the affinity removes ownership.
	d.update(datastore.Update{Type: datastore.UpdateDelete, Key: "/calico/ipam/v2/host/b/ipv4/block/192.168.0.0-26"})
	for _, b := range d.input().Blocks {
		if b.Owner != "" {
			t.Errorf("block %s still owned by %q after its affinity was deleted", b.CIDR, b.Owner)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestDaemonVTEPLifecycle runs the daemon against a real etcd member with
// no dataplanes: the VTEP is allocated once from the VXLAN pool under
// Calico's handle, written to the Node with its other fields kept, and
// released and cleared when no pool uses VXLAN any more.
func TestDaemonVTEPLifecycle(t *testing.T) {
	m := datastoretest.New(t)
	c := m.Client
	ctx := context.Background()
	pool := &api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "vx"}, Spec: api.IPPoolSpec{CIDR: "10.244.0.0/16", VXLANMode: api.EncapAlways}}
	api.Default(pool)
	if _, err := c.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	node := &api.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"rack": "r1"}},
		Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: "10.0.0.1/24"}}}
	if _, err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	src := &staticPoolSource{c: c}
	ip, err := ipam.New(ipam.NewEtcdStore(c), ipam.Config{Node: "n1", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	statuses := make(chan DaemonStatus, 100)
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runDaemon(dctx, DaemonConfig{Hostname: "n1", Datastore: c, IPAM: ip, RetryInterval: 50 * time.Millisecond},
			func(s DaemonStatus) {
				select {
				case statuses <- s:
				default:
				}
			})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	kind, _ := api.LookupKind("Node")
	getNode := func() *api.Node {
		o, err := c.Get(ctx, kind, "", "n1")
		if err != nil {
			t.Fatal(err)
		}
		return o.(*api.Node)
	}
	waitFor := func(what string, f func(*api.Node) bool) *api.Node {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n := getNode()
			if f(n) {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: node is %+v", what, n.Spec)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	n := waitFor("VTEP allocated", func(n *api.Node) bool { return n.Spec.IPv4VXLANTunnelAddr != "" })
	addr := netip.MustParseAddr(n.Spec.IPv4VXLANTunnelAddr)
	if !netip.MustParsePrefix("10.244.0.0/16").Contains(addr) {
		t.Errorf("VTEP %s outside the pool", addr)
	}
	if n.Spec.VXLANTunnelMACAddr != MACFor("n1").String() {
		t.Errorf("MAC %q, want %s", n.Spec.VXLANTunnelMACAddr, MACFor("n1"))
	}
	if n.Labels["rack"] != "r1" || n.Spec.BGP == nil || n.Spec.BGP.IPv4Address != "10.0.0.1/24" {
		t.Errorf("other Node fields lost: labels %v spec %+v", n.Labels, n.Spec)
	}
	// The handle holds exactly that address; releasing it (below) frees it.
	time.Sleep(300 * time.Millisecond) // let the daemon settle: no second allocation
	if got := getNode().Spec.IPv4VXLANTunnelAddr; got != addr.String() {
		t.Errorf("VTEP changed from %s to %s without cause", addr, got)
	}
	// Status shows the tunnel once the Node came back through the watch.
	deadline := time.After(5 * time.Second)
	for ok := false; !ok; {
		select {
		case s := <-statuses:
			ok = s.InSync && s.Applied && len(s.Problems) == 0
		case <-deadline:
			t.Fatal("no status without problems")
		}
	}

	// VXLAN off: released and cleared.
	po, err := c.Get(ctx, mustKind("IPPool"), "", "vx")
	if err != nil {
		t.Fatal(err)
	}
	p := po.(*api.IPPool)
	p.Spec.VXLANMode = api.EncapNever
	if _, err := c.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitFor("VTEP cleared", func(n *api.Node) bool {
		return n.Spec.IPv4VXLANTunnelAddr == "" && n.Spec.VXLANTunnelMACAddr == ""
	})
	if _, err := ip.ReleaseByHandle(ctx, TunnelHandle("n1")); !errors.Is(err, ipam.ErrHandleNotFound) {
		t.Errorf("tunnel handle still holds addresses (release: %v)", err)
	}
}

func mustKind(k string) api.KindInfo {
	info, ok := api.LookupKind(k)
	if !ok {
		panic(k)
	}
	return info
}

// staticPoolSource is an ipam.Source reading pools from the datastore.
type staticPoolSource struct{ c *datastore.Client }

func (s *staticPoolSource) IPPools(ctx context.Context) ([]*api.IPPool, error) {
	objs, _, err := s.c.List(ctx, mustKind("IPPool"), datastore.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []*api.IPPool
	for _, o := range objs {
		out = append(out, o.(*api.IPPool))
	}
	return out, nil
}
func (s *staticPoolSource) IPReservations(context.Context) ([]*api.IPReservation, error) {
	return nil, nil
}
func (s *staticPoolSource) IPAMConfig(context.Context) (*api.IPAMConfigurationSpec, error) {
	return nil, nil
}
func (s *staticPoolSource) NodeLabels(context.Context, string) (map[string]string, error) {
	return nil, nil
}
