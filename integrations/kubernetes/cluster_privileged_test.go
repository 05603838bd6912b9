package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/brindle-net/brindle/agent"
	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/cni"
	"github.com/brindle-net/brindle/datastore"
	k8sint "github.com/brindle-net/brindle/integrations/kubernetes"
	"github.com/brindle-net/brindle/integrations/kubernetes/kubepod"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/internal/netprobe"
	"github.com/brindle-net/brindle/ipam"
	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const clusterNode = "knode1"

// The brindle-cni binary, built once per test binary by the first
// privileged test that needs it.
var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

func plugin(t testing.TB) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "brindle-kube-cni")
		if err != nil {
			pluginErr = err
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "brindle-cni"), "github.com/brindle-net/brindle/cmd/brindle-cni").CombinedOutput()
		if err != nil {
			pluginErr = fmt.Errorf("building brindle-cni: %v\n%s", err, out)
			return
		}
		pluginDir = dir
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginDir
}

// cluster is one Kubernetes node without a kubelet: the real API server,
// Brindle's datastore, the agent programming a host network namespace,
// the CNI service (with pod lookups through kubepod, as `brindle node
// --kubeconfig` wires it) behind the real plugin binary driven by libcni,
// and the kube-controllers.
type cluster struct {
	*env
	host  *netnstest.NS
	agent *agent.Agent
	ctrl  *running
	cni   *libcni.CNIConfig
	list  *libcni.NetworkConfigList
	pods  map[string]*kpod // by "ns/name"
}

type kpod struct {
	ns  *netnstest.NS
	rt  *libcni.RuntimeConf
	ip  netip.Addr
	key string
}

func newCluster(t testing.TB, pools ...string) *cluster {
	t.Helper()
	netnstest.RequireRoot(t)
	e := newEnv(t)
	bin := plugin(t)
	ctx := context.Background()
	for i, cidr := range pools {
		p := &api.IPPool{TypeMeta: metav1.TypeMeta{APIVersion: "projectcalico.org/v3", Kind: "IPPool"},
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pool-%d", i)}, Spec: api.IPPoolSpec{CIDR: cidr}}
		if _, err := e.ds.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	c := &cluster{env: e, host: netnstest.NewHostNS(t, "khost"), pods: map[string]*kpod{}}
	if err := netnstest.EnableForwarding(c.host); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Hostname: clusterNode, Datastore: e.member.Connect(datastore.Config{}), Netns: c.host.Path(),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		RetryMin: 10 * time.Millisecond, RetryMax: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			// Run sometimes reports its datastore stream ending when the
			// stream's context is cancelled with its own (a race in the
			// agent's shutdown, not in what this package tests).
			if err != nil {
				t.Logf("agent stopped with: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("agent did not stop in 20 s")
		}
	})
	c.agent = a
	im, err := ipam.New(ipam.NewEtcdStore(e.ds), ipam.Config{Node: clusterNode, Source: cni.NewDatastoreSource(e.ds)})
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := kubepod.Lookup(e.rest)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cni.NewService(cni.ServiceConfig{
		Datastore: e.ds, IPAM: im, Node: clusterNode, PodInfo: lookup,
		Ready: func(ctx context.Context, ns, name string, rev int64) error {
			if r := a.WaitEndpoint(ctx, ns, name, rev); !r.Ready {
				return errors.New(r.Reason)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "bkube")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: svc}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })

	conf := map[string]any{"cniVersion": "1.1.0", "name": "k8s-pod-network", "plugins": []any{map[string]any{
		"type": "brindle-cni", "agent_socket": sock, "policy_setup_timeout_seconds": 10,
	}}}
	b, _ := json.Marshal(conf)
	path := filepath.Join(t.TempDir(), "10-brindle.conflist")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if c.list, err = libcni.ConfListFromFile(path); err != nil {
		t.Fatal(err)
	}
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{bin}, t.TempDir(), nil)
	c.ctrl = e.start(k8sint.Config{ResyncPeriod: -1})
	return c
}

// addPod creates the pod in the API server and attaches it the way a
// kubelet would: CNI ADD with the pod's Kubernetes arguments (and IP=
// when the test fixes its address).
func (c *cluster) addPod(p *corev1.Pod, ip string) *kpod {
	c.t.Helper()
	p.Spec.NodeName = clusterNode
	c.createPod(p)
	key := p.Namespace + "/" + p.Name
	n := netnstest.NewNS(c.t, "kp")
	cid := fmt.Sprintf("cid-%s-%s", p.Namespace, p.Name)
	rt := &libcni.RuntimeConf{ContainerID: cid, NetNS: n.Path(), IfName: "eth0", Args: [][2]string{
		{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name}, {"K8S_POD_INFRA_CONTAINER_ID", cid},
	}}
	if ip != "" {
		rt.Args = append(rt.Args, [2]string{"IP", ip})
	}
	var res *current.Result
	err := c.host.Do(func() error {
		r, err := c.cni.AddNetworkList(context.Background(), c.list, rt)
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		c.t.Fatalf("CNI ADD %s: %v", key, err)
	}
	if len(res.IPs) == 0 {
		c.t.Fatalf("CNI ADD %s: no address", key)
	}
	addr, _ := netip.AddrFromSlice(res.IPs[0].Address.IP)
	kp := &kpod{ns: n, rt: rt, ip: addr.Unmap(), key: key}
	c.pods[key] = kp
	c.t.Cleanup(func() {
		_ = c.host.Do(func() error { return c.cni.DelNetworkList(context.Background(), c.list, rt) })
	})
	return kp
}

// serve starts an echo server for port/proto ("TCP" or "UDP") in the pod.
func (c *cluster) serve(p *kpod, port uint16, proto string) {
	c.t.Helper()
	addr := ":" + strconv.Itoa(int(port))
	switch proto {
	case "TCP":
		var ln net.Listener
		if err := p.ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
			c.t.Fatalf("serve %s %d/TCP: %v", p.key, port, err)
		}
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer conn.Close()
					_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(conn, conn)
				}()
			}
		}()
		c.t.Cleanup(func() { ln.Close() })
	case "UDP":
		var pc net.PacketConn
		if err := p.ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return }); err != nil {
			c.t.Fatalf("serve %s %d/UDP: %v", p.key, port, err)
		}
		go netprobe.EchoUDP(pc)
		c.t.Cleanup(func() { pc.Close() })
	default:
		c.t.Fatalf("serve: protocol %q", proto)
	}
}

// probe reports whether from reaches to on port/proto.
func (c *cluster) probe(from, to *kpod, port uint16, proto string, timeout time.Duration) bool {
	c.t.Helper()
	ok, err := netnstest.Probe(from.ns, to.ip, port, proto, timeout)
	if err != nil {
		c.t.Fatalf("probe %s -> %s %d/%s: %v", from.key, to.key, port, proto, err)
	}
	return ok
}

// check is one expected probe outcome.
type check struct {
	from, to *kpod
	port     uint16
	proto    string
	allowed  bool
}

func (k check) String() string {
	return fmt.Sprintf("%s -> %s %d/%s allowed=%v", k.from.key, k.to.key, k.port, k.proto, k.allowed)
}

// await polls the checks until all hold, and returns how long that took;
// it fails the test if they do not hold within limit.
func (c *cluster) await(limit time.Duration, checks ...check) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		var wrong []check
		for _, k := range checks {
			// A denied probe costs its timeout: keep it short while
			// polling.
			if c.probe(k.from, k.to, k.port, k.proto, 100*time.Millisecond) != k.allowed {
				wrong = append(wrong, k)
			}
		}
		if len(wrong) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			c.t.Fatalf("after %s, still wrong: %v", limit, wrong)
		}
	}
}

// settle waits until the datastore matches the API server and the agent
// has programmed it.
func (c *cluster) settle() {
	c.t.Helper()
	c.converged(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rev, err := c.ds.Revision(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	if !c.agent.WaitProgrammed(ctx, rev) {
		c.t.Fatalf("agent did not program revision %d: %+v", rev, c.agent.Status())
	}
}
