package routing

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brindle-net/brindle/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// birdConf peers the ToR (AS 65000) with two nodes that have an AS each.
const birdConf = `
router id 10.123.0.1;
protocol device { scan time 1; }
template bgp node {
  local 10.123.0.1 as 65000;
  hold time 6;
  connect retry time 1;
  graceful restart on;
  ipv4 { import all; export all; };
}
protocol bgp b1 from node { neighbor 10.123.0.51 as 64601; }
protocol bgp b2 from node { neighbor 10.123.0.52 as 64602; }
`

// TestPrivilegedBIRD: BIRD 2 as a top-of-rack router (eBGP, a global
// BGPPeer, mesh off, AS per node). BIRD learns each host's block; hosts
// learn each other's blocks through it; a withdrawn block leaves BIRD.
func TestPrivilegedBIRD(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("bird (Debian bird2) is not installed")
	}
	l := newLab(t)
	tor := l.host("tor", "10.123.0.1")
	h1, h2 := l.host("b1", "10.123.0.51"), l.host("b2", "10.123.0.52")

	dir := t.TempDir()
	conf, sock := filepath.Join(dir, "bird.conf"), filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(conf, []byte(birdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	bird := exec.Command("ip", "netns", "exec", tor.ns.Name(), "bird", "-f", "-c", conf, "-s", sock, "-P", filepath.Join(dir, "bird.pid"))
	out := &lockedBuffer{}
	bird.Stdout, bird.Stderr = out, out
	if err := bird.Start(); err != nil {
		t.Fatalf("start bird: %v", err)
	}
	t.Cleanup(func() {
		_ = bird.Process.Signal(syscall.SIGKILL)
		_ = bird.Wait()
		if t.Failed() {
			t.Logf("bird output:\n%s", out.String())
		}
	})

	as := func(n uint32) *api.ASNumber { a := api.ASNumber(n); return &a }
	off := false
	nodes := []api.Node{node("b1", "10.123.0.51", nil), node("b2", "10.123.0.52", nil)}
	nodes[0].Spec.BGP.ASNumber = as(64601)
	nodes[1].Spec.BGP.ASNumber = as(64602)
	cfgs := []api.BGPConfiguration{{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: api.BGPConfigurationSpec{NodeToNodeMeshEnabled: &off}}}
	peers := []api.BGPPeer{{ObjectMeta: metav1.ObjectMeta{Name: "tor"}, Spec: api.BGPPeerSpec{PeerIP: "10.123.0.1", ASNumber: 65000}}}
	in := func(name string, blocks ...string) Inputs {
		return Inputs{NodeName: name, Nodes: nodes, Configs: cfgs, Peers: peers, Blocks: pfxs(blocks...)}
	}
	p1, p2 := startSpeaker(t, h1.ns, fastTimers), startSpeaker(t, h2.ns, fastTimers)
	d1 := mustPlan(t, in("b1", "10.244.1.0/26", "10.244.1.64/26"))
	if len(d1.Peers) != 1 || d1.Peers[0].Type != PeerGlobal || d1.ASNumber != 64601 {
		t.Fatalf("b1 plan: %+v", d1)
	}
	p1.apply(d1)
	p2.apply(mustPlan(t, in("b2", "10.244.2.0/26")))

	routes := func() []string {
		cmd := exec.Command("birdc", "-s", sock, "show", "route")
		b, err := cmd.CombinedOutput()
		if err != nil {
			return []string{fmt.Sprintf("birdc: %v: %s", err, b)}
		}
		re := regexp.MustCompile(`(?m)^(\d+\.\d+\.\d+\.\d+/\d+)\s`)
		var got []string
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		return got
	}
	wantBird := func(want []string) {
		t.Helper()
		eventually(t, 30*time.Second, "bird routes", func() string {
			if got := routes(); !slices.Equal(got, want) {
				return fmt.Sprintf("got %v, want %v", got, want)
			}
			return ""
		})
	}
	wantBird([]string{"10.244.1.0/26", "10.244.1.64/26", "10.244.2.0/26"})

	// Through the ToR, each host learns the other's blocks (AS path
	// 65000 6460x carries no local AS).
	eventually(t, 10*time.Second, "b2 learns b1's blocks via the ToR", func() string {
		got := strings.Join(ourRoutes(t, h2.ns), "\n")
		if !strings.Contains(got, "10.244.1.0/26 via") || !strings.Contains(got, "10.244.1.64/26 via") {
			return got
		}
		return ""
	})
	st := p1.call(helperCmd{Op: "status"}).Status
	if len(st) != 1 || st[0].Name != "Global_10_123_0_1" || st[0].State != "Established" || st[0].RoutesAdvertised < 2 {
		t.Errorf("b1 status: %+v", st)
	}

	p1.apply(mustPlan(t, in("b1", "10.244.1.0/26")))
	wantBird([]string{"10.244.1.0/26", "10.244.2.0/26"})
	eventually(t, 10*time.Second, "b2 drops the withdrawn block", func() string {
		got := strings.Join(ourRoutes(t, h2.ns), "\n")
		if strings.Contains(got, "10.244.1.64/26") {
			return got
		}
		return ""
	})
}
