package cni_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brindle-net/brindle/agent"
	"github.com/brindle-net/brindle/cni/cnitest"
	"github.com/brindle-net/brindle/datastore"
	"github.com/brindle-net/brindle/internal/netnstest"
)

// startAgent runs the real agent programming the harness's host namespace
// and makes it the service's Ready.
func (h *harness) startAgent() *agent.Agent {
	h.t.Helper()
	a, err := agent.New(agent.Config{
		Hostname:  testNode,
		Datastore: h.member.Connect(datastore.Config{}),
		Netns:     h.host.Path(),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		RetryMin:  10 * time.Millisecond,
		RetryMax:  time.Second,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("agent: %v", err)
			}
		case <-time.After(20 * time.Second):
			h.t.Errorf("agent did not stop in 20s")
		}
	})
	h.setReady(func(ctx context.Context, ns, name string, rev int64) error {
		if r := a.WaitEndpoint(ctx, ns, name, rev); !r.Ready {
			return errors.New(r.Reason)
		}
		return nil
	})
	return a
}

// TestPrivilegedDefaultDenyFromFirstPacket: with the real agent behind
// Ready, a pod created where a default-deny policy already selects it can
// send nothing, from its first packet: a prober inside the new pod fires
// connections in a tight loop from before ADD starts until after it
// returns, and none gets through. A pod the policy does not select reaches
// the same server at once, so it is the policy that blocks.
// startAgentProgrammed starts the agent and waits until it has programmed
// the datastore as it is now.
func (h *harness) startAgentProgrammed() *agent.Agent {
	h.t.Helper()
	a := h.startAgent()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := h.member.Client.Revision(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if !a.WaitProgrammed(ctx, rev) {
		h.t.Fatalf("agent did not program revision %d: %+v", rev, a.Status())
	}
	return a
}

func TestPrivilegedDefaultDenyFromFirstPacket(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	if _, err := h.member.Client.WriteBatch(ctx, datastore.OpApply, cnitest.TeamObjects()); err != nil {
		t.Fatal(err)
	}
	a := h.startAgent()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rev, err := h.member.Client.Revision(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if !a.WaitProgrammed(wctx, rev) {
		t.Fatalf("agent did not program revision %d: %+v", rev, a.Status())
	}

	server := h.newPod("server", "cid-server", true)
	setNamespace(server, "team-b")
	rs, err := h.add(server)
	if err != nil {
		t.Fatalf("ADD server: %v", err)
	}
	serverIP := resultIP(t, rs)
	serveEcho(t, server.ns, 7100)

	// The control: a team-b pod gets through right after its ADD.
	friend := h.newPod("friend", "cid-friend", true)
	setNamespace(friend, "team-b")
	if _, err := h.add(friend); err != nil {
		t.Fatalf("ADD friend: %v", err)
	}
	if ok, err := netnstest.Probe(friend.ns, serverIP, 7100, "TCP", 2*time.Second); err != nil || !ok {
		t.Fatalf("control probe team-b -> server: %v %v (want allowed)", ok, err)
	}

	// The denied pod: probe from inside it throughout its ADD.
	victim := h.newPod("victim", "cid-victim", true)
	var attempts, routed, successes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := victim.ns.Do(func() error {
			d := net.Dialer{Timeout: 50 * time.Millisecond}
			addr := net.JoinHostPort(serverIP.String(), "7100")
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				attempts.Add(1)
				c, err := d.Dial("tcp", addr)
				if err == nil {
					b := []byte{1}
					c.SetDeadline(time.Now().Add(100 * time.Millisecond))
					if _, werr := c.Write(b); werr == nil {
						if _, rerr := c.Read(b); rerr == nil {
							successes.Add(1)
						}
					}
					c.Close()
					continue
				}
				// A timeout (not "network unreachable") means the address and
				// routes were up and the packet went out: it was dropped.
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					routed.Add(1)
				} else {
					time.Sleep(time.Millisecond)
				}
			}
		})
		if err != nil {
			t.Errorf("prober: %v", err)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := h.add(victim); err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("ADD victim: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("prober: %d attempts, %d timed out after the interface was up, %d got through", attempts.Load(), routed.Load(), successes.Load())
	if successes.Load() != 0 {
		t.Errorf("%d connections from the default-denied pod got through", successes.Load())
	}
	if routed.Load() == 0 {
		t.Errorf("the prober never sent a routed packet; the test proved nothing")
	}
	if ok, _ := netnstest.Probe(victim.ns, serverIP, 7100, "TCP", 300*time.Millisecond); ok {
		t.Errorf("the default-denied pod reaches the server after ADD")
	}

	for _, p := range []*pod{victim, friend, server} {
		if err := h.del(p); err != nil {
			t.Fatal(err)
		}
	}
	if eps := h.endpoints(); len(eps) > 0 {
		t.Errorf("endpoints left: %v", eps)
	}
	if n := h.inUse(); n != 0 {
		t.Errorf("%d addresses still allocated", n)
	}
	h.requireIPAMClean()
}

func setNamespace(p *pod, ns string) {
	for i, kv := range p.rt.Args {
		if kv[0] == "K8S_POD_NAMESPACE" {
			p.rt.Args[i][1] = ns
		}
	}
}
