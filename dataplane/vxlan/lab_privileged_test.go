package vxlan_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/dataplane/nat"
	"github.com/brindle-net/brindle/dataplane/vxlan"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/ipam"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The fabric of these tests:
//
//	host a 10.1.0.1/24 ─┐
//	                    ├─ br1 10.1.0.254/24 ┐
//	host b 10.1.0.2/24 ─┘                    ├─ router ── 203.0.113.254/24 ── outside 203.0.113.1
//	host c 10.2.0.3/24 ─── 10.2.0.254/24 ────┘
//
// The router knows the host subnets and the outside subnet, never the pool:
// workload traffic between hosts crosses it only inside VXLAN. The outside
// namespace routes 10.0.0.0/8 (the hosts) back to the router, not the pool.

const (
	poolCIDR   = "192.168.0.0/16"
	outsideIP  = "203.0.113.1"
	serverPort = 8080
)

var hostAddrs = map[string]struct{ addr, gw string }{
	"a": {"10.1.0.1/24", "10.1.0.254"},
	"b": {"10.1.0.2/24", "10.1.0.254"},
	"c": {"10.2.0.3/24", "10.2.0.254"},
}

type labHost struct {
	name string
	ns   *netnstest.NS
	addr netip.Prefix
	vx   *vxlan.Dataplane
	nat  *nat.Table
}

type lab struct {
	t      *testing.T
	ds     *datastoretest.Member
	ipam   *ipam.IPAM
	router *netnstest.NS
	out    *netnstest.NS
	hosts  map[string]*labHost
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// newLab builds the fabric, the datastore with pool, the Nodes, and one
// daemon per host.
func newLab(t *testing.T, pool api.IPPoolSpec, hosts ...string) *lab {
	netnstest.RequireRoot(t)
	l := &lab{t: t, ds: datastoretest.New(t), hosts: map[string]*labHost{}}
	ctx := context.Background()
	c := l.ds.Client
	p := &api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "pool"}, Spec: pool}
	api.Default(p)
	_, err := c.Create(ctx, p)
	must(t, "create pool", err)
	l.ipam, err = ipam.New(ipam.NewEtcdStore(c), ipam.Config{Source: cni.NewDatastoreSource(c)})
	must(t, "ipam", err)

	// Router, bridge for subnet 1, outside.
	l.router = netnstest.NewNS(t, "rt")
	must(t, "router forwarding", netnstest.EnableForwarding(l.router))
	rh := l.router.Handle()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br1"}}
	must(t, "bridge", rh.LinkAdd(br))
	must(t, "bridge addr", rh.AddrAdd(br, &netlink.Addr{IPNet: ipnet("10.1.0.254/24")}))
	must(t, "bridge up", rh.LinkSetUp(br))
	l.out = netnstest.NewNS(t, "out")
	l.link(l.out, "203.0.113.1/24", "v-out", "203.0.113.254/24", nil)
	oh := l.out.Handle()
	eth, err := oh.LinkByName("eth0")
	must(t, "outside eth0", err)
	must(t, "outside route to hosts", oh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index,
		Dst: ipnet("10.0.0.0/8"), Gw: net.ParseIP("203.0.113.254")}))

	for _, name := range hosts {
		h := &labHost{name: name, ns: netnstest.NewHostNS(t, "h"+name), addr: netip.MustParsePrefix(hostAddrs[name].addr)}
		must(t, "host forwarding", netnstest.EnableForwarding(h.ns))
		if strings.HasPrefix(h.addr.String(), "10.1.") {
			l.link(h.ns, h.addr.String(), "v-"+name, "", br)
		} else {
			l.link(h.ns, h.addr.String(), "v-"+name, hostAddrs[name].gw+"/24", nil)
		}
		hh := h.ns.Handle()
		e, err := hh.LinkByName("eth0")
		must(t, "host eth0", err)
		must(t, "host default route", hh.RouteAdd(&netlink.Route{LinkIndex: e.Attrs().Index, Gw: net.ParseIP(hostAddrs[name].gw)}))
		_, err = c.Create(ctx, &api.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: api.NodeSpec{BGP: &api.NodeBGPSpec{IPv4Address: h.addr.String()}}})
		must(t, "create node", err)
		l.hosts[name] = h
	}
	for _, h := range l.hosts {
		l.startDaemon(h)
	}
	// Workloads come after the VTEPs, so that each host claims one block
	// (two concurrent first allocations for a host may claim two).
	if pool.VXLANMode == api.EncapAlways || pool.VXLANMode == api.EncapCrossSubnet {
		for name := range l.hosts {
			eventually(t, 10*time.Second, "VTEP of "+name, func() error {
				if a, _ := l.nodeVTEP(name); a == "" {
					return errors.New("no VTEP address yet")
				}
				return nil
			})
		}
	}
	return l
}

// link joins ns (eth0, addr) to the router (peer, with peerAddr or on br).
func (l *lab) link(ns *netnstest.NS, addr, peer, peerAddr string, br *netlink.Bridge) {
	t := l.t
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: peer,
		PeerNamespace: netlink.NsFd(l.router.NsHandle())}
	must(t, "veth", ns.Handle().LinkAdd(veth))
	e, err := ns.Handle().LinkByName("eth0")
	must(t, "eth0", err)
	must(t, "eth0 addr", ns.Handle().AddrAdd(e, &netlink.Addr{IPNet: ipnet(addr)}))
	must(t, "eth0 up", ns.Handle().LinkSetUp(e))
	rh := l.router.Handle()
	p, err := rh.LinkByName(peer)
	must(t, "peer", err)
	if br != nil {
		must(t, "peer master", rh.LinkSetMaster(p, br))
	} else {
		must(t, "peer addr", rh.AddrAdd(p, &netlink.Addr{IPNet: ipnet(peerAddr)}))
	}
	must(t, "peer up", rh.LinkSetUp(p))
}

func (l *lab) startDaemon(h *labHost) {
	t := l.t
	logger := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("host", h.name)
	var err error
	h.vx, err = vxlan.New(vxlan.Config{Netns: h.ns.Path(), Logger: logger})
	must(t, "vxlan dataplane", err)
	h.nat, err = nat.New(nat.Config{Netns: h.ns.Path(), Logger: logger})
	must(t, "nat table", err)
	ip, err := ipam.New(ipam.NewEtcdStore(l.ds.Client), ipam.Config{Node: h.name, Source: cni.NewDatastoreSource(l.ds.Client)})
	must(t, "ipam", err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- vxlan.RunDaemon(ctx, vxlan.DaemonConfig{Hostname: h.name, Datastore: l.ds.Client, IPAM: ip,
			VXLAN: h.vx, NAT: h.nat, RetryInterval: 200 * time.Millisecond, Logger: logger})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon %s: %v", h.name, err)
		}
		h.vx.Close()
		h.nat.Close()
	})
}

// workload adds a workload on host with an address from IPAM, host routes
// and a TCP echo server.
func (l *lab) workload(host, name string) *netnstest.Workload {
	t := l.t
	got, err := l.ipam.AutoAssign(context.Background(), ipam.AutoAssignArgs{Num4: 1, HandleID: "test." + name, Node: host})
	must(t, "assign "+name, err)
	w := netnstest.AddWorkload(t, l.hosts[host].ns, netnstest.WorkloadOpts{Name: name, IPs: []netip.Addr{got[0].Addr()}, MTU: 1500 - vxlan.Overhead})
	w.HostRoutes()
	w.ServeTCP(serverPort)
	return w
}

func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func reach(from *netnstest.NS, to netip.Addr, port uint16) error {
	ok, err := netnstest.Probe(from, to, port, "tcp", time.Second)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s cannot reach %s:%d", from.Name(), to, port)
	}
	return nil
}

// routes renders host's routes of protocol 97.
func routes(t *testing.T, ns *netnstest.NS) []string {
	t.Helper()
	rs, err := ns.Handle().RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: vxlan.DefaultProtocol}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		l, err := ns.Handle().LinkByIndex(r.LinkIndex)
		if err != nil {
			t.Fatalf("route link: %v", err)
		}
		s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Gw, l.Attrs().Name)
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// nodeVTEP returns a node's VTEP address and MAC from the datastore.
func (l *lab) nodeVTEP(name string) (string, string) {
	kind, _ := api.LookupKind("Node")
	o, err := l.ds.Client.Get(context.Background(), kind, "", name)
	must(l.t, "get node", err)
	n := o.(*api.Node)
	return n.Spec.IPv4VXLANTunnelAddr, n.Spec.VXLANTunnelMACAddr
}

// wantRoutes is what host should have: one route per remote block, through
// the tunnel unless plain(remote) says the fabric carries it.
func (l *lab) wantRoutes(host string, plain func(remote string) bool) []string {
	var out []string
	for name := range l.hosts {
		if name == host {
			continue
		}
		blocks, err := l.ipam.BlocksForHost(context.Background(), name)
		must(l.t, "blocks", err)
		vtep, _ := l.nodeVTEP(name)
		for _, b := range blocks {
			if plain(name) {
				out = append(out, fmt.Sprintf("%s via %s dev eth0", b, l.hosts[name].addr.Addr()))
			} else {
				out = append(out, fmt.Sprintf("%s via %s dev %s onlink", b, vtep, vxlan.DefaultDevice))
			}
		}
	}
	sort.Strings(out)
	return out
}

func txPackets(t *testing.T, ns *netnstest.NS) uint64 {
	t.Helper()
	lk, err := ns.Handle().LinkByName(vxlan.DefaultDevice)
	if err != nil {
		t.Fatalf("vxlan device: %v", err)
	}
	return lk.Attrs().Statistics.TxPackets
}

// checkVTEPs: every node got a VTEP address from the pool and its
// deterministic MAC, and the host's device carries them.
func (l *lab) checkVTEPs() {
	t := l.t
	pool := netip.MustParsePrefix(poolCIDR)
	for name, h := range l.hosts {
		addr, mac := l.nodeVTEP(name)
		a, err := netip.ParseAddr(addr)
		if err != nil || !pool.Contains(a) {
			t.Errorf("node %s: VTEP address %q not in the pool", name, addr)
		}
		if mac != vxlan.MACFor(name).String() {
			t.Errorf("node %s: VTEP MAC %q, want %s", name, mac, vxlan.MACFor(name))
		}
		lk, err := h.ns.Handle().LinkByName(vxlan.DefaultDevice)
		if err != nil {
			t.Errorf("host %s: %v", name, err)
			continue
		}
		vx := lk.(*netlink.Vxlan)
		if vx.VxlanId != vxlan.DefaultVNI || vx.Port != vxlan.DefaultPort || lk.Attrs().MTU != 1500-vxlan.Overhead ||
			lk.Attrs().HardwareAddr.String() != mac {
			t.Errorf("host %s: device vni %d port %d mtu %d mac %s", name, vx.VxlanId, vx.Port, lk.Attrs().MTU, lk.Attrs().HardwareAddr)
		}
	}
}

// fabricCannotRoutePool: the router has no route to workload addresses.
func (l *lab) fabricCannotRoutePool(ws ...*netnstest.Workload) {
	for _, w := range ws {
		if rs, err := l.router.Handle().RouteGet(net.IP(w.IPs[0].AsSlice())); err == nil {
			l.t.Errorf("the fabric routes %s (%v): the test would not prove encapsulation", w.IPs[0], rs)
		}
	}
}

func TestPrivilegedVXLANAlways(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	l := newLab(t, api.IPPoolSpec{CIDR: poolCIDR, VXLANMode: api.EncapAlways}, "a", "b", "c")
	ws := map[string]*netnstest.Workload{}
	for _, h := range []string{"a", "b", "c"} {
		ws[h] = l.workload(h, "w"+h)
	}
	// A second workload on c shares c's block: still one route per block.
	ws["c2"] = l.workload("c", "wc2")
	for _, from := range []string{"a", "b", "c"} {
		for _, to := range []string{"a", "b", "c", "c2"} {
			if from != to {
				eventually(t, 15*time.Second, "w"+from+" → w"+to, func() error { return reach(ws[from].NS, ws[to].IPs[0], serverPort) })
			}
		}
	}
	l.checkVTEPs()
	l.fabricCannotRoutePool(ws["a"], ws["b"], ws["c"])
	for name, h := range l.hosts {
		want := l.wantRoutes(name, func(string) bool { return false })
		if len(want) != 2 {
			t.Errorf("host %s: want one block per remote host, got %v", name, want)
		}
		if diff := cmpLines(want, routes(t, h.ns)); diff != "" {
			t.Errorf("host %s routes: %s", name, diff)
		}
	}
	// Same-subnet traffic is encapsulated too in Always mode.
	before := txPackets(t, l.hosts["a"].ns)
	must(t, "wa → wb", reach(ws["a"].NS, ws["b"].IPs[0], serverPort))
	if after := txPackets(t, l.hosts["a"].ns); after <= before {
		t.Errorf("wa → wb did not go through %s on a (tx %d → %d)", vxlan.DefaultDevice, before, after)
	}
	// Steady state: a resync writes nothing.
	for name, h := range l.hosts {
		w := h.vx.Stats().Writes()
		must(t, "resync", h.vx.Resync())
		if got := h.vx.Stats().Writes(); got != w {
			t.Errorf("host %s: resync of a converged host wrote %d changes", name, got-w)
		}
	}
	// Without NAT outgoing no NAT table exists.
	if _, _, err := l.hosts["a"].nat.Counter(); err == nil {
		t.Errorf("a NAT table exists with natOutgoing off")
	}
}

func TestPrivilegedVXLANCrossSubnet(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	l := newLab(t, api.IPPoolSpec{CIDR: poolCIDR, VXLANMode: api.EncapCrossSubnet}, "a", "b", "c")
	ws := map[string]*netnstest.Workload{}
	for _, h := range []string{"a", "b", "c"} {
		ws[h] = l.workload(h, "w"+h)
	}
	for _, from := range []string{"a", "b", "c"} {
		for _, to := range []string{"a", "b", "c"} {
			if from != to {
				eventually(t, 15*time.Second, "w"+from+" → w"+to, func() error { return reach(ws[from].NS, ws[to].IPs[0], serverPort) })
			}
		}
	}
	l.checkVTEPs()
	l.fabricCannotRoutePool(ws["a"], ws["b"], ws["c"])
	sameSubnet := func(x, y string) bool { return l.hosts[x].addr.Masked() == l.hosts[y].addr.Masked() }
	for name, h := range l.hosts {
		want := l.wantRoutes(name, func(remote string) bool { return sameSubnet(name, remote) })
		if diff := cmpLines(want, routes(t, h.ns)); diff != "" {
			t.Errorf("host %s routes: %s", name, diff)
		}
	}
	// a → b (same subnet): not encapsulated; a → c: encapsulated.
	ha, hb := l.hosts["a"].ns, l.hosts["b"].ns
	a0, b0 := txPackets(t, ha), txPackets(t, hb)
	must(t, "wa → wb", reach(ws["a"].NS, ws["b"].IPs[0], serverPort))
	if a1, b1 := txPackets(t, ha), txPackets(t, hb); a1 != a0 || b1 != b0 {
		t.Errorf("same-subnet wa → wb was encapsulated (tx on a %d → %d, on b %d → %d)", a0, a1, b0, b1)
	}
	must(t, "wa → wc", reach(ws["a"].NS, ws["c"].IPs[0], serverPort))
	if a2 := txPackets(t, ha); a2 <= a0 {
		t.Errorf("cross-subnet wa → wc was not encapsulated (tx on a %d → %d)", a0, a2)
	}
}

// recorder is a TCP echo server in ns that records its peers' addresses.
type recorder struct {
	mu    sync.Mutex
	peers []netip.Addr
}

func (r *recorder) last() netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.peers) == 0 {
		return netip.Addr{}
	}
	return r.peers[len(r.peers)-1]
}

func record(t *testing.T, ns *netnstest.NS, port int) *recorder {
	var ln net.Listener
	must(t, "listen", ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	}))
	r := &recorder{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			r.mu.Lock()
			r.peers = append(r.peers, ap.Addr().Unmap())
			r.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return r
}

func TestPrivilegedNATOutgoing(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Parallel()
	l := newLab(t, api.IPPoolSpec{CIDR: poolCIDR, VXLANMode: api.EncapAlways}, "a", "c")
	wa, wc := l.workload("a", "wa"), l.workload("c", "wc")
	outside := netip.MustParseAddr(outsideIP)
	outRec := record(t, l.out, 9000)
	podRec := record(t, wc.NS, 9001)
	eventually(t, 15*time.Second, "wa → wc", func() error { return reach(wa.NS, wc.IPs[0], 9001) })

	// natOutgoing off: the outside host cannot answer a pool address.
	if ok, _ := netnstest.Probe(wa.NS, outside, 9000, "tcp", 500*time.Millisecond); ok {
		t.Fatalf("wa reached the outside without NAT: the outside must have no route to the pool")
	}
	// The host itself reaches the outside (the fabric works).
	must(t, "host a → outside", reach(l.hosts["a"].ns, outside, 9000))

	kind, _ := api.LookupKind("IPPool")
	o, err := l.ds.Client.Get(context.Background(), kind, "", "pool")
	must(t, "get pool", err)
	p := o.(*api.IPPool)
	p.Spec.NATOutgoing = true
	_, err = l.ds.Client.Update(context.Background(), p)
	must(t, "update pool", err)

	eventually(t, 15*time.Second, "wa → outside with natOutgoing", func() error { return reach(wa.NS, outside, 9000) })
	if got, want := outRec.last(), l.hosts["a"].addr.Addr(); got != want {
		t.Errorf("outside saw source %s, want host a's address %s", got, want)
	}
	pkts, _, err := l.hosts["a"].nat.Counter()
	must(t, "nat counter", err)
	if pkts == 0 {
		t.Errorf("masquerade rule on a matched no packet")
	}
	// Pool-to-pool traffic keeps its source.
	must(t, "wa → wc", reach(wa.NS, wc.IPs[0], 9001))
	if got := podRec.last(); got != wa.IPs[0] {
		t.Errorf("wc saw source %s, want wa's own address %s (no NAT inside the pools)", got, wa.IPs[0])
	}

	// natOutgoing back off: the table goes away again.
	o, err = l.ds.Client.Get(context.Background(), kind, "", "pool")
	must(t, "get pool", err)
	p = o.(*api.IPPool)
	p.Spec.NATOutgoing = false
	_, err = l.ds.Client.Update(context.Background(), p)
	must(t, "update pool", err)
	eventually(t, 15*time.Second, "NAT table removed", func() error {
		if _, _, err := l.hosts["a"].nat.Counter(); err == nil {
			return errors.New("table still there")
		}
		return nil
	})
}

func cmpLines(want, got []string) string {
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return ""
	}
	return fmt.Sprintf("\nwant:\n  %s\ngot:\n  %s", strings.Join(want, "\n  "), strings.Join(got, "\n  "))
}

func ipnet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}
