package cni_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
)

// TestPrivilegedAddCheckDel drives the real plugin through libcni, as
// containerd does: two pods (one Kubernetes, one plain CNI) get addresses,
// endpoints and veths; traffic flows between them; CHECK passes; DEL
// (twice) leaves nothing behind.
func TestPrivilegedAddCheckDel(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var readyCalls []string
	h.setReady(func(ctx context.Context, ns, name string, rev int64) error {
		if rev <= 0 {
			return fmt.Errorf("ready called with revision %d", rev)
		}
		readyCalls = append(readyCalls, ns+"/"+name)
		return nil
	})
	a := h.newPod("web-1", "cid-aaaa", true)
	b := h.newPod("db", "cid-bbbb", false)
	ra, err := h.add(a)
	if err != nil {
		t.Fatalf("ADD a: %v", err)
	}
	rb, err := h.add(b)
	if err != nil {
		t.Fatalf("ADD b: %v", err)
	}
	if diff := cmp.Diff([]string{"team-a/node1-k8s-web--1-eth0", "default/node1-cni-cid--bbbb-eth0"}, readyCalls); diff != "" {
		t.Errorf("Ready calls (-want +got):\n%s", diff)
	}

	// The result: host veth cali+hash, ee:ee MAC, container eth0, /32
	// via 169.254.1.1.
	wantIf := cni.HostInterfaceName("cali", "team-a.web-1")
	if got := ra.Interfaces[0].Name; got != wantIf || ra.Interfaces[0].Mac != "ee:ee:ee:ee:ee:ee" {
		t.Errorf("host interface %s %s, want %s ee:ee:ee:ee:ee:ee", got, ra.Interfaces[0].Mac, wantIf)
	}
	if got := rb.Interfaces[0].Name; got != cni.HostInterfaceName("cali", "cid-bbbb") {
		t.Errorf("plain CNI host interface %s, want hash of the container ID", got)
	}
	if ra.Interfaces[1].Name != "eth0" || ra.Interfaces[1].Sandbox != a.ns.Path() {
		t.Errorf("container interface %+v", ra.Interfaces[1])
	}
	ipA, ipB := resultIP(t, ra), resultIP(t, rb)
	if !netip.MustParsePrefix(testPool4).Contains(ipA) || ra.IPs[0].Address.String() != ipA.String()+"/32" || ra.IPs[0].Gateway.String() != "169.254.1.1" {
		t.Errorf("result IP %+v", ra.IPs[0])
	}
	if len(ra.Routes) != 1 || ra.Routes[0].Dst.String() != "0.0.0.0/0" || ra.Routes[0].GW.String() != "169.254.1.1" {
		t.Errorf("result routes %v", ra.Routes)
	}

	// The kernel: MTU, routes.
	eth0, err := a.ns.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().MTU != 1400 {
		t.Errorf("eth0 MTU %d, want 1400", eth0.Attrs().MTU)
	}
	hostLink, err := h.host.Handle().LinkByName(wantIf)
	if err != nil {
		t.Fatal(err)
	}
	if hostLink.Attrs().MTU != 1400 || hostLink.Attrs().HardwareAddr.String() != "ee:ee:ee:ee:ee:ee" {
		t.Errorf("host veth MTU %d MAC %s", hostLink.Attrs().MTU, hostLink.Attrs().HardwareAddr)
	}
	if v, _ := netnstest.GetSysctl(h.host, "net/ipv4/conf/"+wantIf+"/proxy_arp"); v != "1" {
		t.Errorf("proxy_arp on %s = %q, want 1", wantIf, v)
	}
	// The host knows the pod's MAC without asking (a permanent entry).
	neighs, err := h.host.Handle().NeighList(hostLink.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
		return n.IP.Equal(ipA.AsSlice()) && n.State == netlink.NUD_PERMANENT && n.HardwareAddr.String() == eth0.Attrs().HardwareAddr.String()
	}) {
		t.Errorf("no permanent neighbour %s lladdr %s on %s: %v", ipA, eth0.Attrs().HardwareAddr, wantIf, neighs)
	}

	// The endpoints.
	kind, _ := api.LookupKind("WorkloadEndpoint")
	obj, err := h.member.Client.Get(context.Background(), kind, "team-a", "node1-k8s-web--1-eth0")
	if err != nil {
		t.Fatal(err)
	}
	wep := obj.(*api.WorkloadEndpoint)
	wantSpec := api.WorkloadEndpointSpec{
		Orchestrator: "k8s", Node: testNode, ContainerID: "cid-aaaa", Pod: "web-1", Endpoint: "eth0",
		ServiceAccountName: "default", IPNetworks: []string{ipA.String() + "/32"},
		Profiles: []string{"kns.team-a", "ksa.team-a.default"}, InterfaceName: wantIf,
	}
	if diff := cmp.Diff(wantSpec, wep.Spec); diff != "" {
		t.Errorf("k8s endpoint spec (-want +got):\n%s", diff)
	}
	wantLabels := map[string]string{"projectcalico.org/namespace": "team-a", "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": "default"}
	if diff := cmp.Diff(wantLabels, wep.Labels); diff != "" {
		t.Errorf("k8s endpoint labels (-want +got):\n%s", diff)
	}
	obj, err = h.member.Client.Get(context.Background(), kind, "default", "node1-cni-cid--bbbb-eth0")
	if err != nil {
		t.Fatal(err)
	}
	if w := obj.(*api.WorkloadEndpoint); w.Spec.Orchestrator != "cni" || !cmp.Equal(w.Spec.Profiles, []string{testNetwork}) || w.Labels["projectcalico.org/orchestrator"] != "cni" {
		t.Errorf("plain CNI endpoint %+v labels %v", w.Spec, w.Labels)
	}
	pkind, _ := api.LookupKind("Profile")
	pobj, err := h.member.Client.Get(context.Background(), pkind, "", testNetwork)
	if err != nil {
		t.Fatalf("network profile: %v", err)
	}
	if p := pobj.(*api.Profile); p.Spec.LabelsToApply[testNetwork] != "" || len(p.Spec.Ingress) != 1 || p.Spec.Ingress[0].Source.Selector != "has("+testNetwork+")" {
		t.Errorf("network profile spec %+v", p.Spec)
	}
	if diff := cmp.Diff([]string{testNetwork + ".cid-aaaa", testNetwork + ".cid-bbbb"}, h.handles(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("handles (-want +got):\n%s", diff)
	}

	// Traffic, both ways.
	serveEcho(t, b.ns, 7000)
	serveEcho(t, a.ns, 7001)
	if ok, err := netnstest.Probe(a.ns, ipB, 7000, "TCP", 2*time.Second); err != nil || !ok {
		t.Errorf("probe a -> b: %v %v", ok, err)
	}
	if ok, err := netnstest.Probe(b.ns, ipA, 7001, "TCP", 2*time.Second); err != nil || !ok {
		t.Errorf("probe b -> a: %v %v", ok, err)
	}

	if err := h.check(a); err != nil {
		t.Errorf("CHECK a: %v", err)
	}
	if err := h.check(b); err != nil {
		t.Errorf("CHECK b: %v", err)
	}
	// CHECK reports what is wrong: take the address away.
	addrs, _ := a.ns.Handle().AddrList(eth0, 2)
	for _, ad := range addrs {
		if err := a.ns.Handle().AddrDel(eth0, &ad); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.check(a); err == nil || !strings.Contains(err.Error(), "lacks address "+ipA.String()+"/32") {
		t.Errorf("CHECK after removing the address: %v, want it to name the missing address", err)
	}

	for i := 0; i < 2; i++ { // DEL is idempotent
		if err := h.del(a); err != nil {
			t.Fatalf("DEL a (%d): %v", i, err)
		}
		if err := h.del(b); err != nil {
			t.Fatalf("DEL b (%d): %v", i, err)
		}
	}
	h.requireNothingLeft(a, b)
}

// TestPrivilegedDelTolerates: DEL succeeds when the link, the namespace
// or the endpoint is already gone, and for a container never added.
func TestPrivilegedDelTolerates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	noLink := h.newPod("nolink", "cid-nolink", true)
	noNS := h.newPod("nons", "cid-nons", false)
	noEP := h.newPod("noep", "cid-noep", true)
	for _, p := range []*pod{noLink, noNS, noEP} {
		r, err := h.add(p)
		if err != nil {
			t.Fatal(err)
		}
		if p != noEP {
			// Gone from the kernel (deleting the host end takes eth0 too).
			l, err := h.host.Handle().LinkByName(r.Interfaces[0].Name)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.host.Handle().LinkDel(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The runtime tore the namespace down before DEL.
	noNS.rt.NetNS = "/run/netns/brt-does-not-exist"
	// Somebody deleted the endpoint already.
	kind, _ := api.LookupKind("WorkloadEndpoint")
	if _, err := h.member.Client.Delete(context.Background(), kind, "team-a", "node1-k8s-noep-eth0", ""); err != nil {
		t.Fatal(err)
	}
	unknown := h.newPod("unknown", "cid-never-added", false)
	for _, p := range []*pod{noLink, noNS, noEP, unknown} {
		if err := h.del(p); err != nil {
			t.Errorf("DEL %s: %v", p.rt.ContainerID, err)
		}
	}
	h.requireNothingLeft(noLink, noEP, unknown)
}

// TestPrivilegedDelKeepsNewerSandbox: the DEL of a pod's old sandbox,
// arriving after the new sandbox's ADD, does not delete the new endpoint.
func TestPrivilegedDelKeepsNewerSandbox(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	old := h.newPod("web", "cid-old", true)
	if _, err := h.add(old); err != nil {
		t.Fatal(err)
	}
	// The new sandbox reuses the pod's host interface name: the old veth
	// is replaced.
	newer := h.newPod("web", "cid-new", true)
	newer.rt.Args[2][1] = "web"
	old.rt.Args[2][1] = "web"
	if _, err := h.add(newer); err != nil {
		t.Fatal(err)
	}
	if err := h.del(old); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"team-a/node1-k8s-web-eth0"}, h.endpoints()); diff != "" {
		t.Errorf("endpoints after the old sandbox's DEL (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{testNetwork + ".cid-new"}, h.handles()); diff != "" {
		t.Errorf("handles (-want +got):\n%s", diff)
	}
	if err := h.check(newer); err != nil {
		t.Errorf("CHECK of the new sandbox: %v", err)
	}
	if err := h.del(newer); err != nil {
		t.Fatal(err)
	}
	h.requireNothingLeft(old, newer)
}

// TestPrivilegedRequestedIP: CNI_ARGS IP= picks the address.
func TestPrivilegedRequestedIP(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	p := h.newPod("fixed", "cid-fixed", false)
	p.rt.Args = [][2]string{{"IgnoreUnknown", "1"}, {"IP", "10.77.1.200"}}
	r, err := h.add(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := resultIP(t, r); got != netip.MustParseAddr("10.77.1.200") {
		t.Errorf("address %s, want the requested 10.77.1.200", got)
	}
	// A second container asking for the same address fails and leaves
	// nothing of its own.
	q := h.newPod("clash", "cid-clash", false)
	q.rt.Args = p.rt.Args
	if _, err := h.add(q); err == nil || !strings.Contains(err.Error(), "already allocated") {
		t.Errorf("ADD of a taken address: %v, want 'already allocated'", err)
	}
	if diff := cmp.Diff([]string{testNetwork + ".cid-fixed"}, h.handles()); diff != "" {
		t.Errorf("handles (-want +got):\n%s", diff)
	}
	if err := h.del(p); err != nil {
		t.Fatal(err)
	}
	h.requireNothingLeft(p, q)
}

// TestPrivilegedRollback: every failure after an address is taken gives it
// back — in the plugin (veth creation, address add) and in the service
// (agent readiness timeout).
func TestPrivilegedRollback(t *testing.T) {
	tests := []struct {
		name  string
		v6    bool
		setup func(t *testing.T, h *harness, p *pod)
		want  string
	}{
		{
			name: "veth creation fails",
			setup: func(t *testing.T, h *harness, p *pod) {
				// An eth0 already in the container: the veth peer cannot be
				// created with that name.
				if err := p.ns.Handle().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "other0"}); err != nil {
					t.Fatal(err)
				}
			},
			want: "create-veth",
		},
		{
			name: "address add fails",
			v6:   true,
			setup: func(t *testing.T, h *harness, p *pod) {
				// IPv6 disabled in the container: adding the v6 address fails.
				for _, s := range []string{"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"} {
					if err := netnstest.SetSysctl(p.ns, s, "1"); err != nil {
						t.Skipf("cannot disable IPv6 in the container: %v", err)
					}
				}
			},
			want: "container-addresses",
		},
		{
			name: "agent readiness timeout",
			setup: func(t *testing.T, h *harness, p *pod) {
				h.setReady(func(ctx context.Context, ns, name string, rev int64) error {
					<-ctx.Done()
					return fmt.Errorf("endpoint %s/%s not programmed: %w", ns, name, ctx.Err())
				})
			},
			want: "was not programmed within 1s",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{v6: tc.v6, conf: map[string]any{"policy_setup_timeout_seconds": 1}})
			p := h.newPod("rb", "cid-rollback", true)
			tc.setup(t, h, p)
			_, err := h.add(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ADD: %v, want an error containing %q", err, tc.want)
			}
			if eps := h.endpoints(); len(eps) > 0 {
				t.Errorf("endpoints left: %v", eps)
			}
			if hs := h.handles(); len(hs) > 0 {
				t.Errorf("handles left: %v", hs)
			}
			if n := h.inUse(); n != 0 {
				t.Errorf("%d addresses still allocated", n)
			}
			h.requireIPAMClean()
			if links := linkNames(t, h.host.Handle()); len(links) != 1 {
				t.Errorf("host links left: %v", links)
			}
		})
	}
}

// TestPrivilegedAgentDown: with nothing on the socket, ADD and STATUS fail
// with a clear error and DEL fails (so the runtime retries it).
func TestPrivilegedAgentDown(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if err := h.status(); err != nil {
		t.Fatalf("STATUS with the agent up: %v", err)
	}
	p := h.newPod("down", "cid-down", false)
	if _, err := h.add(p); err != nil {
		t.Fatal(err)
	}
	h.stopServer()
	q := h.newPod("down2", "cid-down2", false)
	_, err := h.add(q)
	if err == nil || !strings.Contains(err.Error(), "brindle agent is not running") || cniCode(err) != 11 {
		t.Errorf("ADD with the agent down: %v (code %d), want 'brindle agent is not running', code 11", err, cniCode(err))
	}
	if err := h.status(); err == nil || cniCode(err) != 50 || !strings.Contains(err.Error(), "not running") {
		t.Errorf("STATUS with the agent down: %v (code %d), want code 50 'not running'", err, cniCode(err))
	}
	if err := h.del(p); err == nil {
		t.Errorf("DEL with the agent down succeeded; it must fail so the runtime retries")
	}
	h.startServer()
	if err := h.del(p); err != nil {
		t.Fatalf("DEL after the agent is back: %v", err)
	}
	h.requireNothingLeft(p, q)

	// The datastore down: STATUS says not ready.
	h.member.Stop()
	if err := h.status(); err == nil || cniCode(err) != 50 || !strings.Contains(err.Error(), "datastore") {
		t.Errorf("STATUS with the datastore down: %v (code %d), want code 50 naming the datastore", err, cniCode(err))
	}
}

// TestPrivilegedGC releases what the runtime no longer lists.
func TestPrivilegedGC(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	keep := h.newPod("keep", "cid-keep", true)
	lost := h.newPod("lost", "cid-lost", true)
	lost2 := h.newPod("lost2", "cid-lost2", false)
	for _, p := range []*pod{keep, lost, lost2} {
		if _, err := h.add(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.gc(keep); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if diff := cmp.Diff([]string{testNetwork + ".cid-keep"}, h.handles()); diff != "" {
		t.Errorf("handles after GC (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"team-a/node1-k8s-keep-eth0"}, h.endpoints()); diff != "" {
		t.Errorf("endpoints after GC (-want +got):\n%s", diff)
	}
	if n := h.inUse(); n != 1 {
		t.Errorf("%d addresses in use after GC, want 1", n)
	}
	h.requireIPAMClean()
	if err := h.check(keep); err != nil {
		t.Errorf("CHECK of the kept pod: %v", err)
	}
	for _, p := range []*pod{keep, lost, lost2} {
		if err := h.del(p); err != nil {
			t.Fatal(err)
		}
	}
	h.requireNothingLeft(keep, lost, lost2)
}
