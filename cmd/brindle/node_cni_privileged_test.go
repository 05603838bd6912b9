package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/cni/cnitest"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/ipam"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeCNIBinaries builds brindle and brindle-cni once per test binary.
var nodeCNIBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "brindle-node-cni-bin")
	if err != nil {
		return "", err
	}
	for _, pkg := range []string{"cmd/brindle", "cmd/brindle-cni"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "github.com/brindle-net/brindle/"+pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("building %s: %v\n%s", pkg, err, out)
		}
	}
	return dir, nil
})

const nodeCNITestNode = "node-cni-1"

// TestPrivilegedNodeServesCNI proves the real wiring of `brindle node`: the
// built binary, started as a supervisor would (--netns standing in for the
// host, --socket, --etcd-endpoints of an embedded etcd), serves the CNI
// service on its local socket, and the built brindle-cni, driven by libcni
// with a conflist naming that socket, gets answers that wait for policy:
//
//   - a pod created where a default-deny GlobalNetworkPolicy already
//     selects it is refused from the first packet after ADD returns;
//   - once an allow policy is in, the same pod gets through, and a pod
//     added after it gets through on its first packet;
//   - CHECK passes; DEL (twice) leaves no endpoint, handle, allocation,
//     interface or route.
func TestPrivilegedNodeServesCNI(t *testing.T) {
	netnstest.RequireRoot(t)
	bin, err := nodeCNIBinaries()
	if err != nil {
		t.Fatal(err)
	}
	member := datastoretest.New(t)
	ctx := context.Background()

	// The cluster before the node starts: a pool, profiles, and a
	// default deny for namespace team-a.
	pool := &api.IPPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"},
		ObjectMeta: metav1.ObjectMeta{Name: "pool-node-cni"},
		Spec:       api.IPPoolSpec{CIDR: "10.78.0.0/24"},
	}
	api.Default(pool)
	objs := append([]api.Object{pool}, cnitest.TeamObjects()...)
	if _, err := member.Client.WriteBatch(ctx, datastore.OpApply, objs); err != nil {
		t.Fatal(err)
	}

	host := netnstest.NewHostNS(t, "nodecni")
	if err := netnstest.EnableForwarding(host); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "bnode")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "agent.sock")
	stopNode := cniTestStartNode(t, filepath.Join(bin, "brindle"),
		"node", "--hostname", nodeCNITestNode, "--netns", host.Path(), "--socket", socket,
		"--etcd-endpoints", strings.Join(member.Endpoints, ","), "--config-file", "")

	r := cnitest.NewRuntime(t, bin, host, map[string]any{"cniVersion": "1.1.0", "name": "k8s-pod-network", "plugins": []any{map[string]any{
		"type": "brindle-cni", "mtu": 1400, "agent_socket": socket, "policy_setup_timeout_seconds": 10,
		"ipam": map[string]any{"type": "calico-ipam"},
	}}})
	// STATUS turns ready once the node is in sync and has programmed.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := r.Status(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("STATUS never ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	server := cnitest.NewPod(t, "server", "cid-server", cnitest.K8sArgs("team-b", "server", "cid-server"))
	res, err := r.Add(ctx, server.RT)
	if err != nil {
		t.Fatalf("ADD server: %v", err)
	}
	serverIP := cnitest.ResultIP(t, res)
	const port = 7300
	cnitest.ServeEcho(t, server.NS, port)

	// Default deny, from the first packet after ADD returns. The probe's
	// packets are routed (ADD set up the address and routes), so only
	// policy can stop them; the same pod gets through once allowed.
	victim := cnitest.NewPod(t, "victim", "cid-victim", cnitest.K8sArgs("team-a", "victim", "cid-victim"))
	if _, err := r.Add(ctx, victim.RT); err != nil {
		t.Fatalf("ADD victim: %v", err)
	}
	if ok, err := netnstest.Probe(victim.NS, serverIP, port, "TCP", 500*time.Millisecond); err != nil || ok {
		t.Errorf("first probe from the default-denied pod: ok=%v err=%v, want refused", ok, err)
	}

	order := 10.0
	allow := &api.GlobalNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "GlobalNetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "allow-team-a"},
		Spec: api.GlobalNetworkPolicySpec{
			Order:    &order,
			Selector: "projectcalico.org/namespace == 'team-a'",
			Types:    []api.PolicyType{api.PolicyTypeIngress, api.PolicyTypeEgress},
			Ingress:  []api.Rule{{Action: api.Allow}},
			Egress:   []api.Rule{{Action: api.Allow}},
		},
	}
	api.Default(allow)
	if _, err := member.Client.Create(ctx, allow); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		ok, err := netnstest.Probe(victim.NS, serverIP, port, "TCP", 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod never got through after the allow policy")
		}
	}

	// A pod added now meets the allow policy on its first packet (500 ms:
	// less than TCP's first SYN retransmission, so a dropped first SYN
	// fails the probe). A burst of policies written just before keeps the
	// agent busy, so an ADD that did not wait for programming would
	// return while the new interface is still unknown (dropped).
	busyOrder := 20.0
	var burst []api.Object
	for i := range 2000 {
		p := &api.GlobalNetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "GlobalNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("busy-%d", i)},
			Spec: api.GlobalNetworkPolicySpec{
				Order:    &busyOrder, // after allow-team-a, so they decide nothing
				Selector: "projectcalico.org/namespace == 'team-a'",
				Types:    []api.PolicyType{api.PolicyTypeEgress},
				Egress:   []api.Rule{{Action: api.Deny, Destination: api.EntityRule{Selector: fmt.Sprintf("busy == '%d'", i)}}},
			},
		}
		api.Default(p)
		burst = append(burst, p)
	}
	if _, err := member.Client.WriteBatch(ctx, datastore.OpApply, burst); err != nil {
		t.Fatal(err)
	}
	late := cnitest.NewPod(t, "late", "cid-late", cnitest.K8sArgs("team-a", "late", "cid-late"))
	if _, err := r.Add(ctx, late.RT); err != nil {
		t.Fatalf("ADD late: %v", err)
	}
	if ok, err := netnstest.Probe(late.NS, serverIP, port, "TCP", 500*time.Millisecond); err != nil || !ok {
		t.Errorf("first probe from a pod the allow policy selects: ok=%v err=%v, want through", ok, err)
	}

	for _, p := range []*cnitest.Pod{server, victim, late} {
		if err := r.Check(ctx, p.RT); err != nil {
			t.Errorf("CHECK %s: %v", p.RT.ContainerID, err)
		}
	}
	for range 2 {
		for _, p := range []*cnitest.Pod{server, victim, late} {
			if err := r.Del(ctx, p.RT); err != nil {
				t.Errorf("DEL %s: %v", p.RT.ContainerID, err)
			}
		}
	}

	// Nothing left.
	kind, _ := api.LookupKind("WorkloadEndpoint")
	if eps, _, err := member.Client.List(ctx, kind, datastore.ListOptions{}); err != nil || len(eps) != 0 {
		t.Errorf("endpoints left: %d (%v)", len(eps), err)
	}
	if kvs, err := ipam.NewEtcdStore(member.Client).List(ctx, datastore.IPAMPrefix+"handle/"); err != nil || len(kvs) != 0 {
		t.Errorf("ipam handles left: %d (%v)", len(kvs), err)
	}
	im, err := ipam.New(ipam.NewEtcdStore(member.Client), ipam.Config{Node: nodeCNITestNode, Source: cni.NewDatastoreSource(member.Client)})
	if err != nil {
		t.Fatal(err)
	}
	show, err := im.Show(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range show.Pools {
		if p.InUse != 0 {
			t.Errorf("pool %s: %d addresses still allocated", p.Name, p.InUse)
		}
	}
	if rep, err := im.Check(ctx); err != nil || len(rep.Problems) != 0 {
		t.Errorf("ipam check: %+v (%v)", rep, err)
	}
	links, err := host.Handle().LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Errorf("host link left: %s", l.Attrs().Name)
		}
	}
	routes, err := host.Handle().RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if rt.Dst != nil && netip.MustParsePrefix("10.78.0.0/24").Contains(netip.AddrFrom4([4]byte(rt.Dst.IP.To4()))) && rt.Type != syscall.RTN_BLACKHOLE && rt.Type != syscall.RTN_UNREACHABLE {
			t.Errorf("workload route left: %s", rt)
		}
	}
	for _, p := range []*cnitest.Pod{server, victim, late} {
		if links, err := p.NS.Handle().LinkList(); err != nil || len(links) != 1 {
			t.Errorf("container %s: links %d left (want only lo), %v", p.RT.ContainerID, len(links), err)
		}
	}
	if err := stopNode(); err != nil {
		t.Errorf("brindle node on SIGTERM: %v", err)
	}
}

// cniTestStartNode runs the brindle binary; stop sends SIGTERM and waits. Its
// output goes to the test log when the test fails.
func cniTestStartNode(t *testing.T, path string, args ...string) (stop func() error) {
	t.Helper()
	cmd := exec.Command(path, args...)
	var out cniTestBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case stopErr = <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				stopErr = errors.New("did not stop within 20s of SIGTERM")
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("brindle node output:\n%s", out.String())
		}
	})
	return stop
}

type cniTestBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *cniTestBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *cniTestBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
