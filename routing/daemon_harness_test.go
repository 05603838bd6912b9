package routing

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
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/datastore/datastoretest"
	"github.com/brindle-net/brindle/ipam"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The daemon's privileged tests run one Daemon process per host namespace
// (as brindle node runs), all watching one embedded etcd. etcd listens on
// the test process's loopback, which other namespaces cannot reach, so the
// test process also serves it on a unix socket (a file, reachable from
// every namespace) and the daemons connect to that.
//
// Exported names here are for the tests of package routing_test too
// (they check brindlectl, and package ctl imports routing).

const daemonHelperEnv = "BRINDLE_ROUTING_DAEMON"

// daemonHelperConfig is a daemon process's configuration.
type daemonHelperConfig struct {
	Node        string        `json:"node"`
	Endpoint    string        `json:"endpoint"`
	HoldTime    time.Duration `json:"holdTime"`
	RestartTime time.Duration `json:"restartTime"`
	// Socket serves StatusPath.
	Socket string `json:"socket"`
	// ReadyFile: Ready is true once this file exists ("" = always).
	ReadyFile string `json:"readyFile"`
}

// runDaemonHelper is the daemon process: it runs until SIGTERM (graceful
// Stop) or SIGKILL.
func runDaemonHelper(cfgJSON string) int {
	var hc daemonHelperConfig
	if err := json.Unmarshal([]byte(cfgJSON), &hc); err != nil {
		fmt.Fprintf(os.Stderr, "daemon helper config: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := context.Background()
	client, err := datastore.New(ctx, datastore.Config{Endpoints: []string{hc.Endpoint}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer client.Close()
	d, err := NewDaemon(DaemonConfig{
		NodeName:  hc.Node,
		Datastore: client,
		Speaker:   Config{HoldTime: hc.HoldTime, RestartTime: hc.RestartTime, ConnectRetry: time.Second},
		Debounce:  50 * time.Millisecond,
		Ready: func() bool {
			if hc.ReadyFile == "" {
				return true
			}
			_, err := os.Stat(hc.ReadyFile)
			return err == nil
		},
		Logger: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	if err := d.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_ = os.Remove(hc.Socket)
	ln, err := net.Listen("unix", hc.Socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+StatusPath, d)
	go func() { _ = http.Serve(ln, mux) }()
	<-sigs
	if err := d.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// DaemonLab is hosts on one segment, an embedded etcd reachable from all
// of them, and an IPAM over it with the pool 10.244.0.0/16 (/26 blocks).
type DaemonLab struct {
	T      *testing.T
	Client *datastore.Client
	IPAM   *ipam.IPAM
	// Dir holds the etcd socket and each host's status socket.
	Dir         string
	HoldTime    time.Duration
	RestartTime time.Duration
	lab         *lab
}

// NewDaemonLab builds the lab; sessions use the given timers.
func NewDaemonLab(t *testing.T, hold, restart time.Duration) *DaemonLab {
	t.Helper()
	l := newLab(t) // skips unless root
	m := datastoretest.New(t)
	dir := t.TempDir()
	unixProxy(t, filepath.Join(dir, "etcd.sock"), strings.TrimPrefix(m.Endpoints[0], "http://"))
	src := &ipam.StaticSource{Pools: []*api.IPPool{{
		ObjectMeta: metav1.ObjectMeta{Name: "pool"},
		Spec:       api.IPPoolSpec{CIDR: "10.244.0.0/16", BlockSize: 26},
	}}}
	im, err := ipam.New(ipam.NewEtcdStore(m.Client), ipam.Config{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	return &DaemonLab{T: t, Client: m.Client, IPAM: im, Dir: dir, HoldTime: hold, RestartTime: restart, lab: l}
}

// unixProxy serves the TCP service at target on a unix socket at path
// until the test ends.
func unixProxy(t *testing.T, path, target string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}

// DaemonHost is a host namespace with its Node resource and, once
// started, a daemon process.
type DaemonHost struct {
	Name string
	IP   netip.Addr
	// Socket serves the daemon's StatusPath.
	Socket string
	lab    *DaemonLab
	h      *labHost
	proc   *speakerProc
}

// Host adds a host namespace and writes its Node (spec.bgp.ipv4Address
// ip/24).
func (l *DaemonLab) Host(name, ip string) *DaemonHost {
	l.T.Helper()
	h := l.lab.host(name, ip)
	n := node(name, ip, nil)
	if _, err := l.Client.Create(context.Background(), &n); err != nil {
		l.T.Fatalf("create Node %s: %v", name, err)
	}
	return &DaemonHost{Name: name, IP: h.ip, Socket: filepath.Join(l.Dir, name+".sock"), lab: l, h: h}
}

func (h *DaemonHost) readyFile() string { return filepath.Join(h.lab.Dir, h.Name+".ready") }

// Start starts the host's daemon process. With ready false its Ready gate
// stays closed until SetReady.
func (h *DaemonHost) Start(ready bool) {
	h.lab.T.Helper()
	_ = os.Remove(h.readyFile())
	if ready {
		h.SetReady()
	}
	cfg, _ := json.Marshal(daemonHelperConfig{
		Node: h.Name, Endpoint: "unix://etcd.sock", HoldTime: h.lab.HoldTime, RestartTime: h.lab.RestartTime,
		Socket: h.Socket, ReadyFile: h.readyFile(),
	})
	h.proc = startHelperProc(h.lab.T, h.h.ns, daemonHelperEnv, string(cfg), h.lab.Dir)
}

// SetReady opens the daemon's Ready gate.
func (h *DaemonHost) SetReady() {
	if err := os.WriteFile(h.readyFile(), nil, 0o644); err != nil {
		h.lab.T.Fatal(err)
	}
}

// Kill signals the daemon process; SIGKILL and SIGTERM wait for it to
// exit.
func (h *DaemonHost) Kill(sig syscall.Signal) {
	h.proc.kill(sig)
	if sig == syscall.SIGTERM {
		select {
		case <-h.proc.exited:
		case <-time.After(30 * time.Second):
			h.lab.T.Fatalf("%s: daemon did not exit after SIGTERM", h.Name)
		}
	}
}

// Routes lists the host's kernel routes of protocol 99, as "<dst> via
// <gw>" or "blackhole <dst>", sorted.
func (h *DaemonHost) Routes() []string { return ourRoutes(h.lab.T, h.h.ns) }

// HasRoute reports whether the host has route r (as Routes spells it).
func (h *DaemonHost) HasRoute(r string) bool { return slices.Contains(h.Routes(), r) }

// WantRoutes waits until Routes equals want.
func (h *DaemonHost) WantRoutes(want []string, timeout time.Duration) {
	h.lab.T.Helper()
	Eventually(h.lab.T, timeout, "routes on "+h.Name, func() string {
		if d := cmp.Diff(want, h.Routes()); d != "" {
			return "(-want +got)\n" + d
		}
		return ""
	})
}

// Status asks the daemon for its status over its socket.
func (h *DaemonHost) Status() (DaemonStatus, error) {
	var st DaemonStatus
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.Socket)
	}}}
	resp, err := hc.Get("http://node" + StatusPath)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, errors.New(resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Claim assigns one address to node through IPAM and returns it with the
// length of its block (a new block on the node's first claim); Masked()
// is the block.
func (l *DaemonLab) Claim(node string) netip.Prefix {
	l.T.Helper()
	got, err := l.IPAM.AutoAssign(context.Background(), ipam.AutoAssignArgs{Num4: 1, HandleID: "h-" + node + "-" + fmt.Sprint(time.Now().UnixNano()), Node: node})
	if err != nil || len(got) != 1 {
		l.T.Fatalf("assign for %s: %v %v", node, got, err)
	}
	return got[0]
}

// Eventually polls cond every 100 ms until it returns "" or timeout
// passes, then fails with cond's last complaint.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	eventually(t, timeout, what, cond)
}
