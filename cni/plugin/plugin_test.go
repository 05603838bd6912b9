package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/brindle-net/brindle/cni/wire"
	"github.com/brindle-net/brindle/internal/netnstest"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/google/go-cmp/cmp"
)

// fakeAgent is a CNI service stand-in that records calls.
type fakeAgent struct {
	socket string
	mu     sync.Mutex
	calls  []string // "add <cid>", "del <cid>"
	addErr *wire.Error
}

func newFakeAgent(t *testing.T) *fakeAgent {
	dir, err := os.MkdirTemp("", "bcnip")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeAgent{socket: filepath.Join(dir, "agent.sock")}
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathAdd, func(w http.ResponseWriter, r *http.Request) {
		var req wire.AddRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("fake agent: %v", err)
		}
		f.record("add " + req.ContainerID)
		if f.addErr != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(f.addErr)
			return
		}
		json.NewEncoder(w).Encode(wire.AddResponse{InterfaceName: "calitest0000001", IPs: []string{"10.9.0.5/32"}, Namespace: "default", Name: "n"})
	})
	mux.HandleFunc("POST "+wire.PathDel, func(w http.ResponseWriter, r *http.Request) {
		var req wire.DelRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("fake agent: %v", err)
		}
		f.record("del " + req.ContainerID)
		json.NewEncoder(w).Encode(wire.DelResponse{})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeAgent) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeAgent) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func links(t *testing.T, n *netnstest.NS) []string {
	ls, err := n.Handle().LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	slices.Sort(out)
	return out
}

// TestPrivilegedAddRollsBackEveryStep fails each kernel setup step in turn
// (in-process, with a fake agent) and checks that the veth is gone and the
// agent was asked to release the addresses exactly once — and, when the
// failure comes before the agent was asked, that it was not asked at all.
func TestPrivilegedAddRollsBackEveryStep(t *testing.T) {
	for _, step := range append(slices.Clone(setupSteps), "none") {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			agent := newFakeAgent(t)
			host := netnstest.NewHostNS(t, "phost")
			ctr := netnstest.NewNS(t, "pctr")
			var out bytes.Buffer
			p := New(&out)
			p.fault = func(s string) error {
				if s == step {
					return errors.New("injected")
				}
				return nil
			}
			conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"net1","type":"brindle-cni","agent_socket":%q}`, agent.socket)
			args := &skel.CmdArgs{ContainerID: "cid1", Netns: ctr.Path(), IfName: "eth0", StdinData: []byte(conf)}
			err := host.Do(func() error { return p.Add(args) })
			if step == "none" {
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				if diff := cmp.Diff([]string{"add cid1"}, agent.got()); diff != "" {
					t.Errorf("agent calls (-want +got):\n%s", diff)
				}
				if !strings.Contains(out.String(), `"10.9.0.5/32"`) {
					t.Errorf("result %s lacks the address", out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), step) || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("ADD: %v, want the injected failure at %s", err, step)
			}
			want := []string{"add cid1", "del cid1"}
			if step == stepOpenNetns {
				want = nil
			}
			if diff := cmp.Diff(want, agent.got()); diff != "" {
				t.Errorf("agent calls (-want +got):\n%s", diff)
			}
			if got := links(t, host); !cmp.Equal(got, []string{"lo"}) {
				t.Errorf("host links left: %v", got)
			}
			if got := links(t, ctr); !cmp.Equal(got, []string{"lo"}) {
				t.Errorf("container links left: %v", got)
			}
			if out.Len() != 0 {
				t.Errorf("a failed ADD printed a result: %s", out.String())
			}
		})
	}
}

// TestPrivilegedAddAgentError: when the agent refuses ADD (it rolled back
// itself) the plugin passes the CNI code on and does not call DEL.
func TestPrivilegedAddAgentError(t *testing.T) {
	agent := newFakeAgent(t)
	agent.addErr = &wire.Error{Code: wire.CodeTryAgainLater, Msg: "add: policy for endpoint default/n was not programmed within 1s"}
	host := netnstest.NewHostNS(t, "phost")
	ctr := netnstest.NewNS(t, "pctr")
	p := New(&bytes.Buffer{})
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"net1","type":"brindle-cni","agent_socket":%q}`, agent.socket)
	err := host.Do(func() error {
		return p.Add(&skel.CmdArgs{ContainerID: "cid1", Netns: ctr.Path(), IfName: "eth0", StdinData: []byte(conf)})
	})
	if err == nil || !strings.Contains(err.Error(), "not programmed") {
		t.Fatalf("ADD: %v", err)
	}
	if diff := cmp.Diff([]string{"add cid1"}, agent.got()); diff != "" {
		t.Errorf("agent calls (-want +got):\n%s", diff)
	}
}
