package routing

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Privileged tests run each speaker as a separate process inside its host's
// namespace, as the lab runs agents: GoBGP dials peers from goroutines on
// arbitrary OS threads, so a speaker inside the test process would dial
// from the root namespace. The test binary doubles as the speaker process
// when helperEnv is set; it reads one JSON command per line on stdin and
// answers one JSON line on stdout.
const helperEnv = "BRINDLE_ROUTING_SPEAKER"

// helperConfig is the speaker process's configuration (helperEnv's value).
type helperConfig struct {
	HoldTime               time.Duration `json:"holdTime"`
	RestartTime            time.Duration `json:"restartTime"`
	DisableGracefulRestart bool          `json:"disableGracefulRestart"`
	Debug                  bool          `json:"debug"`
}

type helperCmd struct {
	Op      string   `json:"op"` // apply, status, stop, withdraw
	Desired *Desired `json:"desired,omitempty"`
}

type helperResp struct {
	Err    string       `json:"err,omitempty"`
	Status []PeerStatus `json:"status,omitempty"`
	Stats  Stats        `json:"stats"`
	Routes string       `json:"routes,omitempty"`
}

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(runHelper(v))
	}
	if v := os.Getenv(daemonHelperEnv); v != "" {
		os.Exit(runDaemonHelper(v))
	}
	os.Exit(m.Run())
}

func runHelper(cfgJSON string) int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(cfgJSON), &hc); err != nil {
		fmt.Fprintf(os.Stderr, "helper config: %v\n", err)
		return 2
	}
	level := slog.LevelInfo
	if hc.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	sp, err := New(Config{
		Logger: log, HoldTime: hc.HoldTime, RestartTime: hc.RestartTime,
		DisableGracefulRestart: hc.DisableGracefulRestart, ConnectRetry: time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := sp.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c helperCmd
		var r helperResp
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			r.Err = err.Error()
			_ = out.Encode(r)
			continue
		}
		exit := false
		switch c.Op {
		case "apply":
			if err := sp.Apply(*c.Desired); err != nil {
				r.Err = err.Error()
			}
		case "status":
			r.Status = sp.Status()
			r.Routes = sp.Routes()
		case "stop":
			if err := sp.Stop(); err != nil {
				r.Err = err.Error()
			}
			exit = true
		case "withdraw":
			if err := sp.StopAndWithdraw(); err != nil {
				r.Err = err.Error()
			}
			exit = true
		default:
			r.Err = "unknown op " + c.Op
		}
		r.Stats = sp.Stats()
		_ = out.Encode(r)
		if exit {
			return 0
		}
	}
	_ = sp.Stop()
	return 0
}

// speakerProc is a speaker process in a host namespace.
type speakerProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startSpeaker(t *testing.T, ns *netnstest.NS, hc helperConfig) *speakerProc {
	t.Helper()
	cfg, _ := json.Marshal(hc)
	return startHelperProc(t, ns, helperEnv, string(cfg), "")
}

// startHelperProc re-executes the test binary in ns as a helper process
// (env=value selects which), in directory dir ("" = the current one).
func startHelperProc(t *testing.T, ns *netnstest.NS, env, value, dir string) *speakerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name(), exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+value)
	cmd.Dir = dir
	p := &speakerProc{t: t, cmd: cmd, lines: make(chan string, 16), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	p.in, err = cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper process in %s: %v", ns.Name(), err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	name := ns.Name()
	t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("speaker in %s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// kill signals the speaker (ip netns exec execs it, so the PID is the
// speaker's) and waits for it to exit.
func (p *speakerProc) kill(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-p.exited
	}
}

func (p *speakerProc) call(c helperCmd) helperResp {
	p.t.Helper()
	b, _ := json.Marshal(c)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("speaker %s: write: %v\nstderr:\n%s", c.Op, err, p.stderr.String())
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			p.t.Fatalf("speaker %s: process exited\nstderr:\n%s", c.Op, p.stderr.String())
		}
		var r helperResp
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			p.t.Fatalf("speaker %s: bad reply %q: %v", c.Op, line, err)
		}
		return r
	case <-time.After(30 * time.Second):
		p.t.Fatalf("speaker %s: no reply in 30s\nstderr:\n%s", c.Op, p.stderr.String())
	}
	return helperResp{}
}

func (p *speakerProc) apply(d Desired) helperResp {
	p.t.Helper()
	r := p.call(helperCmd{Op: "apply", Desired: &d})
	if r.Err != "" {
		p.t.Fatalf("apply: %s", r.Err)
	}
	return r
}

// lab is hosts on one L2 segment: a switch namespace with a bridge, and a
// veth from it to eth0 of each host namespace.
type lab struct {
	t   *testing.T
	sw  *netnstest.NS
	br  netlink.Link
	net netip.Prefix
}

type labHost struct {
	ns *netnstest.NS
	ip netip.Addr
}

func newLab(t *testing.T) *lab {
	t.Helper()
	sw := netnstest.NewNS(t, "sw")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := sw.Handle().LinkAdd(br); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	l, err := sw.Handle().LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.Handle().LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return &lab{t: t, sw: sw, br: l, net: netip.MustParsePrefix("10.123.0.0/24")}
}

// host adds a namespace whose eth0 is on the segment with address ip.
func (l *lab) host(name string, ip string) *labHost {
	l.t.Helper()
	ns := netnstest.NewNS(l.t, name)
	port := "p-" + name
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MasterIndex: l.br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns.NsHandle())),
	}
	if err := l.sw.Handle().LinkAdd(veth); err != nil {
		l.t.Fatalf("veth %s: %v", port, err)
	}
	pl, err := l.sw.Handle().LinkByName(port)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.sw.Handle().LinkSetUp(pl); err != nil {
		l.t.Fatal(err)
	}
	eth, err := ns.Handle().LinkByName("eth0")
	if err != nil {
		l.t.Fatal(err)
	}
	a := netip.MustParseAddr(ip)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(l.net.Bits(), 32)}}
	if err := ns.Handle().AddrAdd(eth, addr); err != nil {
		l.t.Fatal(err)
	}
	if err := ns.Handle().LinkSetUp(eth); err != nil {
		l.t.Fatal(err)
	}
	return &labHost{ns: ns, ip: a}
}

// ourRoutes lists the namespace's main-table routes of our protocol,
// `ip route` style, sorted.
func ourRoutes(t *testing.T, ns *netnstest.NS) []string {
	t.Helper()
	rs, err := ns.Handle().RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: DefaultRouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatalf("list routes in %s: %v", ns.Name(), err)
	}
	var out []string
	for _, r := range rs {
		if r.Type == unix.RTN_BLACKHOLE {
			out = append(out, "blackhole "+r.Dst.String())
			continue
		}
		out = append(out, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
	}
	sort.Strings(out)
	return out
}

// eventually polls cond every 100 ms until it returns "" or the timeout
// passes, then fails with cond's last complaint.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", what, timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
