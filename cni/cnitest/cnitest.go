// Package cnitest is the container runtime's side of CNI for privileged
// tests: libcni running plugin binaries from a directory with one conflist,
// from inside a host network namespace, on pods that are throwaway
// namespaces (internal/netnstest).
//
// Contract: every helper takes the test's testing.TB and fails it (Fatal)
// on setup errors; files and namespaces are removed when the test ends.
// The CNI operations (Add, Del, Check, GC, Status) return the plugin's
// error for the test to judge, and run libcni on a thread inside the host
// namespace, so the plugin binary it starts runs there too (a child process
// inherits its thread's namespace).
package cnitest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/brindle-net/brindle/internal/netprobe"
)

// Runtime runs one network configuration list.
type Runtime struct {
	host *netnstest.NS
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// NewRuntime writes conflist (a whole conflist document: cniVersion, name,
// plugins) to a file, loads it and returns a runtime that finds plugins in
// binDir (CNI_PATH) and runs them in host.
func NewRuntime(t testing.TB, binDir string, host *netnstest.NS, conflist map[string]any) *Runtime {
	t.Helper()
	b, err := json.Marshal(conflist)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "10-brindle.conflist")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Runtime{host: host}
	if r.list, err = libcni.ConfListFromFile(path); err != nil {
		t.Fatalf("cnitest: load conflist: %v", err)
	}
	r.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
	return r
}

// InHost runs f on a thread in the host namespace, so a plugin that libcni
// starts from f runs there.
func (r *Runtime) InHost(f func() error) error { return r.host.Do(f) }

// Add runs ADD for the container rt describes and returns its result.
func (r *Runtime) Add(ctx context.Context, rt *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := r.InHost(func() error {
		var err error
		res, err = r.cni.AddNetworkList(ctx, r.list, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

// Del runs DEL for the container rt describes.
func (r *Runtime) Del(ctx context.Context, rt *libcni.RuntimeConf) error {
	return r.InHost(func() error { return r.cni.DelNetworkList(ctx, r.list, rt) })
}

// Check runs CHECK for the container rt describes.
func (r *Runtime) Check(ctx context.Context, rt *libcni.RuntimeConf) error {
	return r.InHost(func() error { return r.cni.CheckNetworkList(ctx, r.list, rt) })
}

// GC runs GC with valid as the attachments to keep.
func (r *Runtime) GC(ctx context.Context, valid ...*libcni.RuntimeConf) error {
	args := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}
	for _, rt := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: rt.ContainerID, IfName: rt.IfName})
	}
	return r.InHost(func() error { return r.cni.GCNetworkList(ctx, r.list, args) })
}

// Status runs STATUS.
func (r *Runtime) Status(ctx context.Context) error {
	return r.InHost(func() error { return r.cni.GetStatusNetworkList(ctx, r.list) })
}

// Pod is one container: its network namespace and runtime arguments.
type Pod struct {
	NS *netnstest.NS
	RT *libcni.RuntimeConf
}

// NewPod makes a namespace for a container and its runtime arguments:
// interface eth0 and args (CNI_ARGS pairs, nil for none).
func NewPod(t testing.TB, name, containerID string, args [][2]string) *Pod {
	t.Helper()
	n := netnstest.NewNS(t, name)
	return &Pod{NS: n, RT: &libcni.RuntimeConf{ContainerID: containerID, NetNS: n.Path(), IfName: "eth0", Args: args}}
}

// K8sArgs are the CNI_ARGS a Kubernetes runtime passes for pod
// namespace/name in sandbox containerID.
func K8sArgs(namespace, name, containerID string) [][2]string {
	return [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", namespace},
		{"K8S_POD_NAME", name},
		{"K8S_POD_INFRA_CONTAINER_ID", containerID},
	}
}

// ResultIP is the first address of an ADD result; no address fails the
// test.
func ResultIP(t testing.TB, r *current.Result) netip.Addr {
	t.Helper()
	if len(r.IPs) == 0 {
		t.Fatalf("result has no IPs: %+v", r)
	}
	a, ok := netip.AddrFromSlice(r.IPs[0].Address.IP)
	if !ok {
		t.Fatalf("bad IP %v", r.IPs[0].Address)
	}
	return a.Unmap()
}

// ServeEcho starts a TCP echo server on port inside n (each connection
// gets back what it sends, for up to 5 s). It stops when the test ends.
func ServeEcho(t testing.TB, n *netnstest.NS, port int) {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go netprobe.EchoConn(c, 5*time.Second)
		}
	}()
}

// TeamObjects are the default-deny fixture of the CNI tests: namespace and
// service-account profiles for team-a and team-b, and a GlobalNetworkPolicy
// that selects every team-a endpoint with no rules (default deny both
// ways), defaulted and ready to write.
func TeamObjects() []api.Object {
	objs := []api.Object{
		api.NamespaceProfile("team-a", nil), api.ServiceAccountProfile("team-a", "default", nil),
		api.NamespaceProfile("team-b", nil), api.ServiceAccountProfile("team-b", "default", nil),
		&api.GlobalNetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: api.APIVersion, Kind: "GlobalNetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: "default-deny-team-a"},
			Spec: api.GlobalNetworkPolicySpec{
				Selector: "projectcalico.org/namespace == 'team-a'",
				Types:    []api.PolicyType{api.PolicyTypeIngress, api.PolicyTypeEgress},
			},
		},
	}
	for _, o := range objs {
		api.Default(o)
	}
	return objs
}
