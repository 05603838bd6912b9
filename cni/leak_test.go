package cni_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/brindle-net/brindle/cni"
)

// leakCycles: 1,000 cycles took 262 s on the shared 2-core machine, so the
// default is fewer; run `go test ./cni -run Leak -leak-cycles 1000` for the
// full count.
var leakCycles = flag.Int("leak-cycles", 300, "ADD/DEL cycles of TestPrivilegedLeak")

// TestPrivilegedLeak runs many ADD/DEL cycles through the real plugin with
// failures injected — the agent dying mid-ADD (no rollback), the service
// shut down mid-ADD, the agent refusing readiness, DEL repeated, DEL of
// unknown containers — and then requires IPAM, the datastore and the
// kernel to hold nothing.
func TestPrivilegedLeak(t *testing.T) {
	cycles := *leakCycles
	if testing.Short() {
		cycles = min(cycles, 100)
	}
	h := newHarness(t, harnessOpts{})
	var crash bool // guarded by h.mu
	cni.SetAfterEndpointWrite(h.svc, func() {
		h.mu.Lock()
		c := crash
		h.mu.Unlock()
		if c {
			// The agent dies after writing the endpoint: no rollback runs.
			panic(http.ErrAbortHandler)
		}
	})
	setCrash := func(v bool) {
		h.mu.Lock()
		crash = v
		h.mu.Unlock()
	}
	pods := make([]*pod, 4)
	for i := range pods {
		pods[i] = h.newPod(fmt.Sprintf("leak%d", i), "", i%2 == 0)
	}
	var added, failed int
	for i := 0; i < cycles; i++ {
		p := pods[i%len(pods)]
		p.rt.ContainerID = fmt.Sprintf("leak-%04d", i)
		if p.k8s {
			p.rt.Args[3][1] = p.rt.ContainerID
		}
		wantFail := true
		stopped := make(chan struct{})
		switch i % 10 {
		case 3:
			setCrash(true)
		case 5:
			h.setReady(func(context.Context, string, string, int64) error {
				return errors.New("dataplane apply failing")
			})
		case 1:
			// The service is shut down while the ADD waits for readiness.
			started := make(chan struct{})
			h.setReady(func(ctx context.Context, _, _ string, _ int64) error {
				close(started)
				<-ctx.Done()
				return ctx.Err()
			})
			go func() {
				defer close(stopped)
				<-started
				h.stopServer()
			}()
		default:
			wantFail = false
		}
		_, err := h.add(p)
		setCrash(false)
		h.setReady(nil)
		if i%10 == 1 {
			select {
			case <-stopped:
			case <-time.After(30 * time.Second):
				t.Fatalf("cycle %d: the ADD never reached the readiness wait (err %v)", i, err)
			}
			h.startServer()
		}
		switch {
		case wantFail && err == nil:
			t.Fatalf("cycle %d: ADD succeeded despite the injected failure", i)
		case !wantFail && err != nil:
			t.Fatalf("cycle %d: ADD: %v", i, err)
		case err == nil:
			added++
		default:
			failed++
		}
		// The runtime always follows a failed ADD with DEL; sometimes it
		// repeats DEL, or sends DEL for containers it never added.
		dels := 1
		if i%10 == 7 {
			dels = 3
		}
		for j := 0; j < dels; j++ {
			if err := h.del(p); err != nil {
				t.Fatalf("cycle %d: DEL %d: %v", i, j, err)
			}
		}
		if i%10 == 9 {
			unknown := *p
			rt := *p.rt
			rt.ContainerID = fmt.Sprintf("never-%04d", i)
			unknown.rt = &rt
			if err := h.del(&unknown); err != nil {
				t.Fatalf("cycle %d: DEL of an unknown container: %v", i, err)
			}
		}
	}
	t.Logf("%d cycles: %d ADDs succeeded, %d failed by injection", cycles, added, failed)
	h.requireNothingLeft(pods...)
}
