package cni_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/cni/cnitest"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/ipam"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pluginDir holds the brindle-cni binary built by TestMain (CNI_PATH).
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "brindle-cni-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "brindle-cni"), "github.com/brindle-net/brindle/cmd/brindle-cni").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building brindle-cni: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	pluginDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	testNode    = "node1"
	testNetwork = "brindle-test"
	testPool4   = "10.77.0.0/22"
	testPool6   = "fd77::/120"
)

// harness is one host: an embedded etcd, the CNI service on a unix socket
// with a Ready function the test controls, a host network namespace, and
// libcni with the built plugin on CNI_PATH.
type harness struct {
	t      testing.TB
	member *datastoretest.Member
	ipam   *ipam.IPAM
	svc    *cni.Service
	socket string
	host   *netnstest.NS
	rt     *cnitest.Runtime

	mu    sync.Mutex
	ready cni.ReadyFunc // guarded by mu; nil: ready at once

	srv *http.Server
}

type harnessOpts struct {
	// conf overrides fields of the plugin's entry in the conflist.
	conf map[string]any
	// v6 adds an IPv6 pool.
	v6 bool
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	netnstest.RequireRoot(t)
	h := &harness{t: t, member: datastoretest.New(t)}
	ctx := context.Background()
	pools := []string{testPool4}
	if o.v6 {
		pools = append(pools, testPool6)
	}
	for i, cidr := range pools {
		pool := &api.IPPool{
			TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool%d", i)},
			Spec:       api.IPPoolSpec{CIDR: cidr},
		}
		if _, err := h.member.Client.Create(ctx, pool); err != nil {
			t.Fatalf("create pool: %v", err)
		}
	}
	var err error
	h.ipam, err = ipam.New(ipam.NewEtcdStore(h.member.Client), ipam.Config{Node: testNode, Source: cni.NewDatastoreSource(h.member.Client)})
	if err != nil {
		t.Fatal(err)
	}
	h.svc, err = cni.NewService(cni.ServiceConfig{
		Datastore: h.member.Client,
		IPAM:      h.ipam,
		Node:      testNode,
		Ready: func(ctx context.Context, ns, name string, rev int64) error {
			h.mu.Lock()
			f := h.ready
			h.mu.Unlock()
			if f == nil {
				return nil
			}
			return f(ctx, ns, name, rev)
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "bcni")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	h.socket = filepath.Join(sockDir, "agent.sock")
	h.startServer()

	h.host = netnstest.NewHostNS(t, "host")
	if err := netnstest.EnableForwarding(h.host); err != nil {
		t.Fatal(err)
	}
	conf := map[string]any{
		"type":                         "brindle-cni",
		"mtu":                          1400,
		"agent_socket":                 h.socket,
		"policy_setup_timeout_seconds": 5,
	}
	if o.v6 {
		conf["ipam"] = map[string]any{"assign_ipv4": "true", "assign_ipv6": "true"}
	}
	for k, v := range o.conf {
		conf[k] = v
	}
	h.rt = cnitest.NewRuntime(t, pluginDir, h.host, map[string]any{"cniVersion": "1.1.0", "name": testNetwork, "plugins": []any{conf}})
	return h
}

// startServer serves the service on h.socket (again, after stopServer).
func (h *harness) startServer() {
	os.Remove(h.socket)
	ln, err := net.Listen("unix", h.socket)
	if err != nil {
		h.t.Fatal(err)
	}
	srv := &http.Server{Handler: h.svc, ErrorLog: nil}
	h.srv = srv
	go func() { _ = srv.Serve(ln) }()
	h.t.Cleanup(func() { srv.Close() })
}

// stopServer is the agent going away: the socket stops answering.
func (h *harness) stopServer() {
	h.srv.Close()
	os.Remove(h.socket)
}

func (h *harness) setReady(f cni.ReadyFunc) {
	h.mu.Lock()
	h.ready = f
	h.mu.Unlock()
}

// pod is one container: its network namespace and runtime arguments.
type pod struct {
	ns  *netnstest.NS
	rt  *libcni.RuntimeConf
	k8s bool
}

func (h *harness) newPod(name, containerID string, k8s bool) *pod {
	h.t.Helper()
	var args [][2]string
	if k8s {
		args = cnitest.K8sArgs("team-a", name, containerID)
	}
	p := cnitest.NewPod(h.t, name, containerID, args)
	return &pod{ns: p.NS, rt: p.RT, k8s: k8s}
}

// inHost runs f on a thread in the host namespace, so the plugin binary
// libcni starts runs there (a child inherits its thread's namespace).
func (h *harness) inHost(f func() error) error { return h.rt.InHost(f) }

func (h *harness) add(p *pod) (*current.Result, error) { return h.rt.Add(context.Background(), p.rt) }
func (h *harness) del(p *pod) error                    { return h.rt.Del(context.Background(), p.rt) }
func (h *harness) check(p *pod) error                  { return h.rt.Check(context.Background(), p.rt) }
func (h *harness) status() error                       { return h.rt.Status(context.Background()) }

func (h *harness) gc(valid ...*pod) error {
	rts := make([]*libcni.RuntimeConf, len(valid))
	for i, p := range valid {
		rts[i] = p.rt
	}
	return h.rt.GC(context.Background(), rts...)
}

// endpoints lists the WorkloadEndpoints as "ns/name".
func (h *harness) endpoints() []string {
	h.t.Helper()
	kind, _ := api.LookupKind("WorkloadEndpoint")
	objs, _, err := h.member.Client.List(context.Background(), kind, datastore.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

// handles lists the IPAM handle IDs.
func (h *harness) handles() []string {
	h.t.Helper()
	kvs, err := ipam.NewEtcdStore(h.member.Client).List(context.Background(), datastore.IPAMPrefix+"handle/")
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, kv := range kvs {
		out = append(out, filepath.Base(kv.Key))
	}
	return out
}

// inUse is how many addresses IPAM has allocated.
func (h *harness) inUse() uint64 {
	h.t.Helper()
	rep, err := h.ipam.Show(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	var n uint64
	for _, p := range rep.Pools {
		n += p.InUse
	}
	return n
}

// requireIPAMClean fails unless ipam.Check finds no problem.
func (h *harness) requireIPAMClean() {
	h.t.Helper()
	rep, err := h.ipam.Check(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	for _, p := range rep.Problems {
		h.t.Errorf("ipam check: %s %s: %s", p.Kind, p.Key, p.Detail)
	}
}

// requireNothingLeft checks that no endpoint, handle, allocation, workload
// interface or host route remains, and that IPAM is consistent.
func (h *harness) requireNothingLeft(pods ...*pod) {
	h.t.Helper()
	if eps := h.endpoints(); len(eps) > 0 {
		h.t.Errorf("endpoints left: %v", eps)
	}
	if hs := h.handles(); len(hs) > 0 {
		h.t.Errorf("ipam handles left: %v", hs)
	}
	if n := h.inUse(); n != 0 {
		h.t.Errorf("%d addresses still allocated", n)
	}
	h.requireIPAMClean()
	if links := linkNames(h.t, h.host.Handle()); len(links) != 1 {
		h.t.Errorf("host links left: %v (want only lo)", links)
	}
	routes, err := h.host.Handle().RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == "169.254.1.1/32" {
			continue // NewHostNS's stand-in for a default route
		}
		if r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() || r.Dst != nil && r.Dst.IP.IsMulticast() {
			continue
		}
		h.t.Errorf("host route left: %s", r)
	}
	for _, p := range pods {
		if links := linkNames(h.t, p.ns.Handle()); len(links) != 1 {
			h.t.Errorf("container %s links left: %v (want only lo)", p.rt.ContainerID, links)
		}
	}
}

func linkNames(t testing.TB, nl *netlink.Handle) []string {
	t.Helper()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	sort.Strings(out)
	return out
}

// serveEcho starts a TCP echo server inside n.
func serveEcho(t testing.TB, n *netnstest.NS, port int) { cnitest.ServeEcho(t, n, port) }

// resultIP is the first address of an ADD result.
func resultIP(t testing.TB, r *current.Result) netip.Addr { return cnitest.ResultIP(t, r) }

// cniCode returns the CNI error code of err, or 0.
func cniCode(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
