package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/api"
)

// binDir holds brindle and brindle-cni, built once by TestMain for the
// privileged tests.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		// BRINDLE_LAB_BIN names a directory with brindle and brindle-cni
		// already built (skips the build).
		if dir := os.Getenv("BRINDLE_LAB_BIN"); dir != "" {
			binDir = dir
		} else if os.Geteuid() == 0 {
			dir, err := os.MkdirTemp("", "lab-bin-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/brindle-net/brindle/cmd/brindle", "github.com/brindle-net/brindle/cmd/brindle-cni").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build brindle and brindle-cni: %v\n%s", err, out)
				return 1
			}
			binDir = dir
		}
		return m.Run()
	}()
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab: privileged test needs root (network namespaces, veths, routes); run `go test` as root to include it")
	}
}

// testLab builds a uniquely named lab that is removed when the test ends.
func testLab(t *testing.T, o UpOptions) (Config, *State) {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	o.Name = "lt" + hex.EncodeToString(b)
	cfg := Config{StateDir: t.TempDir(), Brindle: filepath.Join(binDir, "brindle"), CNIDir: binDir}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := Up(ctx, cfg, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := Down(context.Background(), cfg, st.Name); err != nil {
			t.Errorf("lab down: %v", err)
		}
		assertGone(t, st)
	})
	return cfg, st
}

// assertGone checks that nothing of a lab is left on the machine.
func assertGone(t *testing.T, st *State) {
	t.Helper()
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), st.Name+"-") {
			t.Errorf("namespace %s is left after down", e.Name())
		}
	}
	if _, err := net.InterfaceByName("bl-" + st.Name); err == nil {
		t.Errorf("root veth bl-%s is left after down", st.Name)
	}
	if _, err := os.Stat(st.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s is left after down (%v)", st.Dir, err)
	}
	for _, p := range st.Procs {
		if ours(p.PID, st.Dir) {
			t.Errorf("process %s (pid %d) still runs after down", p.Role, p.PID)
		}
	}
}

// TestPrivilegedLab: three hosts on two subnets, a pod on each, routed
// connectivity, one kernel route per remote block, and scenario files
// giving the evaluator's matrix on real packets.
func TestPrivilegedLab(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	cfg, st := testLab(t, UpOptions{Hosts: 3})
	if !st.BGP {
		t.Fatal("brindle node has no --ip: the lab runs without BGP")
	}
	ctx := context.Background()

	t.Run("routed", func(t *testing.T) {
		var pods []*Pod
		for i := 1; i <= 3; i++ {
			for j := 0; j < 2; j++ {
				p, err := AddPod(ctx, cfg, st, PodSpec{Namespace: "e2e", Name: fmt.Sprintf("p%d-%d", i, j), Host: fmt.Sprint(i), Labels: map[string]string{"app": "e2e"}})
				if err != nil {
					t.Fatal(err)
				}
				pods = append(pods, p)
			}
		}
		defer func() {
			var ids []string
			for _, p := range pods {
				ids = append(ids, p.ID())
			}
			if err := RemovePods(ctx, cfg, st, ids); err != nil {
				t.Error(err)
			}
		}()
		// Every pod reaches every other one, across hosts and subnets.
		res, err := Matrix(ctx, cfg, st, []string{"80/TCP", "53/UDP", "ICMP"}, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Probes) != 3*6*5 {
			t.Errorf("matrix sent %d probes, want %d", len(res.Probes), 3*6*5)
		}
		for _, r := range res.Probes {
			if !r.Result.Allowed || r.Skipped != "" {
				t.Errorf("%s -> %s %s: allowed %v (skipped %q), want allowed", r.Probe.From, r.Probe.To, r.Probe.Label(), r.Result.Allowed, r.Skipped)
			}
		}
		// Each host's table: one route per remote block (no per-pod
		// routes for remote pods), a /32 per local pod, a blackhole for
		// its own block.
		blocks := map[string]netip.Prefix{} // host → its block
		for _, p := range pods {
			a := netip.MustParseAddr(p.IP)
			b, _ := a.Prefix(26)
			if old, ok := blocks[p.Host]; ok && old != b {
				t.Fatalf("host %s has pods in two blocks %s and %s", p.Host, old, b)
			}
			blocks[p.Host] = b
		}
		for _, h := range st.Hosts {
			rs, err := Routes(ctx, h.NS)
			if err != nil {
				t.Fatal(err)
			}
			var remote, local, black []string
			for _, r := range rs {
				switch {
				case r.Type == "blackhole":
					black = append(black, r.Dst)
				case strings.HasPrefix(r.Dst, "10.244.") && r.Gateway != "":
					remote = append(remote, r.Dst)
				case strings.HasPrefix(r.Dst, "10.244."):
					local = append(local, r.Dst)
				}
			}
			var wantRemote []string
			for host, b := range blocks {
				if host != h.Name {
					wantRemote = append(wantRemote, b.String())
				}
			}
			sort.Strings(wantRemote)
			sort.Strings(remote)
			if diff := cmp.Diff(wantRemote, remote); diff != "" {
				t.Errorf("%s: routes to remote workloads (-want one per remote block +got):\n%s\nall routes: %+v", h.Name, diff, rs)
			}
			if len(local) != 2 {
				t.Errorf("%s: %d local workload routes %v, want 2", h.Name, len(local), local)
			}
			if want := []string{blocks[h.Name].String()}; !cmp.Equal(want, black) {
				t.Errorf("%s: blackholes %v, want %v", h.Name, black, want)
			}
		}
	})

	t.Run("scenarios", func(t *testing.T) {
		// Every policy-semantics scenario, on real packets across hosts.
		files, err := filepath.Glob(filepath.Join("..", "testdata", "scenarios", "*.yaml"))
		if err != nil || len(files) < 30 {
			t.Fatalf("scenario files: %d (%v), want at least 30", len(files), err)
		}
		for _, file := range files {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml"), func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				res, err := Run(ctx, cfg, st, data, RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if res.Wrong != 0 || res.Disagree != 0 {
					var out strings.Builder
					_ = res.WriteText(&out)
					t.Errorf("%d wrong, %d where the evaluator disagrees with the packets:\n%s", res.Wrong, res.Disagree, out.String())
				}
				// The same matrix as the evaluator: every probe the lab
				// sent has the evaluator's verdict.
				sent := 0
				for _, r := range res.Probes {
					if r.NotPoliced || r.Skipped != "" {
						continue
					}
					sent++
					if r.Result.Allowed != r.Evaluator {
						t.Errorf("%s -> %s %s: packets %v, evaluator %v", r.Probe.From, r.Probe.To, r.Probe.Label(), r.Result.Allowed, r.Evaluator)
					}
				}
				if sent == 0 {
					t.Error("no probe was sent")
				}
				// The run leaves no pod behind.
				if fresh, err := Load(cfg.StateDir, st.Name); err != nil || len(fresh.Pods) != 0 {
					t.Errorf("after the run the lab has pods %v (%v)", fresh.Pods, err)
				}
			})
		}
	})

	t.Run("bad-input", func(t *testing.T) {
		_, err := Run(ctx, cfg, st, []byte("name: x\npods: [{namespace: x, name: a, bogus: 1}]\n"), RunOptions{})
		var bad *BadInputError
		if !errors.As(err, &bad) {
			t.Errorf("Run(unknown field) = %v, want a BadInputError", err)
		}
	})
}

// TestPrivilegedTOR: BIRD 2 in the router learns every host's block and
// passes them on; the outside host behind it reaches a pod.
func TestPrivilegedTOR(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("bird (Debian bird2) is not installed")
	}
	t.Parallel()
	cfg, st := testLab(t, UpOptions{Hosts: 2, TOR: true})
	ctx := context.Background()
	var ips []string
	for i := 1; i <= 2; i++ {
		p, err := AddPod(ctx, cfg, st, PodSpec{Namespace: "tor", Name: fmt.Sprintf("p%d", i), Host: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		ips = append(ips, p.IP)
	}
	out, err := output(ctx, nil, "birdc", "-s", st.BirdSocket(), "show", "route")
	if err != nil {
		t.Fatal(err)
	}
	for _, ip := range ips {
		b, _ := netip.MustParseAddr(ip).Prefix(26)
		if !strings.Contains(out, b.String()) {
			t.Errorf("BIRD has no route for %s:\n%s", b, out)
		}
	}
	sc := fmt.Sprint(`name: tor
pods:
  - {namespace: tor, name: a}
  - {namespace: tor, name: b}
probes:
  - {from: tor/a, to: tor/b, port: 80, allowed: true}
externalProbes:
  - {from: 192.0.2.10, to: tor/a, port: 80, allowed: true}
  - {from: 192.0.2.10, to: tor/b, port: 80, allowed: true}
`)
	res, err := Run(ctx, cfg, st, []byte(sc), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Wrong != 0 {
		var w strings.Builder
		_ = res.WriteText(&w)
		t.Errorf("through the top-of-rack router:\n%s", w.String())
	}

	// Withdrawal: deleting host2's Node (its BGP goes off) takes its
	// block out of BIRD; host1's stays.
	c, err := st.Client(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kind, _ := api.LookupKind("Node")
	if _, err := c.Delete(ctx, kind, "", "host2", ""); err != nil {
		t.Fatal(err)
	}
	b1, _ := netip.MustParseAddr(ips[0]).Prefix(26)
	b2, _ := netip.MustParseAddr(ips[1]).Prefix(26)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := output(ctx, nil, "birdc", "-s", st.BirdSocket(), "show", "route")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, b2.String()) {
			if !strings.Contains(out, b1.String()) {
				t.Errorf("BIRD lost host1's block %s too:\n%s", b1, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD still has host2's block %s 15 s after its Node was deleted:\n%s", b2, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPrivilegedUpCleansUp: a failing Up and a cancelled Up leave nothing.
func TestPrivilegedUpCleansUp(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	for _, tc := range []struct {
		name    string
		brindle string
		cancel  time.Duration
	}{
		{"datastore-fails", "/bin/false", 0},
		{"cancelled", "", 150 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, 3)
			_, _ = rand.Read(b)
			name := "lc" + hex.EncodeToString(b)
			cfg := Config{StateDir: t.TempDir(), Brindle: filepath.Join(binDir, "brindle"), CNIDir: binDir}
			if tc.brindle != "" {
				cfg.Brindle = tc.brindle
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel > 0 {
				time.AfterFunc(tc.cancel, cancel)
			}
			st, err := Up(ctx, cfg, UpOptions{Name: name, Hosts: 2})
			if err == nil {
				Down(context.Background(), cfg, name)
				t.Fatalf("Up succeeded (state %v), want an error", st)
			}
			assertGone(t, &State{Name: name, Dir: filepath.Join(cfg.StateDir, name)})
		})
	}
}

// TestPrivilegedVXLAN: the same three hosts with the pool's vxlanMode
// Always (every remote block through the VXLAN device) and CrossSubnet
// (only toward the other subnet).
func TestPrivilegedVXLAN(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"Always", "CrossSubnet"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cfg, st := testLab(t, UpOptions{Hosts: 3, VXLANMode: mode})
			ctx := context.Background()
			blocks := map[string]string{}
			for i := 1; i <= 3; i++ {
				p, err := AddPod(ctx, cfg, st, PodSpec{Namespace: "vx", Name: fmt.Sprintf("p%d", i), Host: fmt.Sprint(i)})
				if err != nil {
					t.Fatal(err)
				}
				b, _ := netip.MustParseAddr(p.IP).Prefix(26)
				blocks[p.Host] = b.String()
			}
			res, err := Matrix(ctx, cfg, st, []string{"80/TCP", "53/UDP"}, RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Probes {
				if !r.Result.Allowed {
					t.Errorf("%s -> %s %s: denied, want allowed", r.Probe.From, r.Probe.To, r.Probe.Label())
				}
			}
			// host1 and host3 share a subnet; host2 is across the router.
			rs, err := Routes(ctx, st.Hosts[0].NS)
			if err != nil {
				t.Fatal(err)
			}
			dev := map[string]string{}
			for _, r := range rs {
				dev[r.Dst] = r.Dev
			}
			want := map[string]string{blocks["host2"]: "vxlan.calico", blocks["host3"]: "vxlan.calico"}
			if mode == "CrossSubnet" {
				want[blocks["host3"]] = "eth0"
			}
			for b, d := range want {
				if dev[b] != d {
					t.Errorf("host1: route to %s goes through %q, want %q (routes %+v)", b, dev[b], d, rs)
				}
			}
		})
	}
}
