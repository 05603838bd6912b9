package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

// allocationsByAddr reads every block and maps each in-use address to its
// handle.
func allocationsByAddr(t testing.TB, m *IPAM) map[netip.Addr]string {
	t.Helper()
	bs, err := m.listBlocks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for _, kb := range bs {
		for o := range kb.block.Allocations {
			if kb.block.inUse(o) {
				out[ordinalAddr(kb.cidr, o)] = kb.block.handleOf(o)
			}
		}
	}
	return out
}

// runConcurrency drives hosts×perHost allocations at once (workers per
// host), releases half of them at once (by handle and by address), and
// checks that no address was handed out twice and that blocks and handles
// agree exactly.
//
// With batch > 1, each worker assigns through AutoAssignMany, batch handles
// at a time, and odd workers keep using AutoAssign, so batched and single
// assignments race for the same blocks.
func runConcurrency(t *testing.T, newStore func(t *testing.T) Store, hosts, perHost, workers, batch int) {
	ctx := context.Background()
	st := newStore(t)
	// 512 addresses in eight /26 blocks for 500 allocations: hosts race to
	// claim blocks, and the last ones must borrow.
	src := &StaticSource{Pools: []*api.IPPool{{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: api.IPPoolSpec{CIDR: "10.20.0.0/23"}}}}
	ipams := make([]*IPAM, hosts)
	for h := range hosts {
		m, err := New(st, Config{Node: fmt.Sprintf("host-%d", h), Source: src})
		if err != nil {
			t.Fatal(err)
		}
		ipams[h] = m
	}
	type result struct {
		handle string
		addr   netip.Addr
		err    error
	}
	results := make(chan result, hosts*perHost)
	var wg sync.WaitGroup
	for h := range hosts {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []AutoAssignArgs
				for i := w; i < perHost; i += workers {
					handle := fmt.Sprintf("net.host-%d-%03d", h, i)
					mine = append(mine, AutoAssignArgs{Num4: 1, HandleID: handle, Attrs: map[string]string{"pod": handle}})
				}
				n := 1
				if batch > 1 && w%2 == 0 {
					n = batch
				}
				for len(mine) > 0 {
					k := min(n, len(mine))
					var res []AssignResult
					if k == 1 && n == 1 {
						got, err := ipams[h].AutoAssign(ctx, mine[0])
						res = []AssignResult{{Prefixes: got, Err: err}}
					} else {
						res = ipams[h].AutoAssignMany(ctx, mine[:k])
					}
					for j, a := range mine[:k] {
						r := result{handle: a.HandleID, err: res[j].Err}
						if r.err == nil {
							if len(res[j].Prefixes) != 1 {
								r.err = fmt.Errorf("got %d addresses, want 1", len(res[j].Prefixes))
							} else {
								r.addr = res[j].Prefixes[0].Addr()
							}
						}
						results <- r
					}
					mine = mine[k:]
				}
			}()
		}
	}
	wg.Wait()
	close(results)
	want := map[netip.Addr]string{}
	handles := map[string]netip.Addr{}
	for r := range results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.handle, r.err)
		}
		if prev, ok := want[r.addr]; ok {
			t.Fatalf("%s handed out twice: to %s and %s", r.addr, prev, r.handle)
		}
		want[r.addr] = r.handle
		handles[r.handle] = r.addr
	}
	if len(want) != hosts*perHost {
		t.Fatalf("got %d distinct addresses, want %d", len(want), hosts*perHost)
	}
	if diff := cmp.Diff(want, allocationsByAddr(t, ipams[0])); diff != "" {
		t.Fatalf("blocks disagree with what AutoAssign returned (-want +got):\n%s", diff)
	}
	if r := mustCheck(t, ipams[0]); len(r) != 0 || t.Failed() {
		t.FailNow()
	}

	// Release half at once: i%4==0 by handle, i%4==2 by address.
	errs := make(chan error, hosts*perHost)
	for h := range hosts {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perHost; i += workers {
					handle := fmt.Sprintf("net.host-%d-%03d", h, i)
					switch i % 4 {
					case 0:
						got, err := ipams[h].ReleaseByHandle(ctx, handle)
						if err == nil && (len(got) != 1 || got[0] != handles[handle]) {
							err = fmt.Errorf("released %v, want %s", got, handles[handle])
						}
						errs <- err
					case 2:
						un, err := ipams[h].ReleaseIPs(ctx, ReleaseOptions{Address: handles[handle], HandleID: handle})
						if err == nil && len(un) != 0 {
							err = fmt.Errorf("%s was not allocated", handles[handle])
						}
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for h, a := range handles {
		var i int
		fmt.Sscanf(h[len(h)-3:], "%d", &i)
		if i%2 == 0 {
			delete(want, a)
		}
	}
	if diff := cmp.Diff(want, allocationsByAddr(t, ipams[0])); diff != "" {
		t.Fatalf("after releases, blocks disagree (-want +got):\n%s", diff)
	}
	rep, err := ipams[0].Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Allocations != len(want) {
		t.Fatalf("check: %d allocations (want %d), problems %v", rep.Allocations, len(want), rep.Problems)
	}

	// The check must find a planted leak: an allocation whose handle goes.
	var victim string
	for _, h := range want {
		victim = h
		break
	}
	raw, rev, err := st.Get(ctx, HandleKey(victim))
	if err != nil || raw == nil {
		t.Fatalf("read handle %s: %v", victim, err)
	}
	if err := st.Delete(ctx, HandleKey(victim), rev); err != nil {
		t.Fatal(err)
	}
	rep, err = ipams[0].Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Kind != ProblemAllocationWithoutHandle || rep.Problems[0].Handle != victim {
		t.Fatalf("check did not find the planted leak of %s: %v", victim, rep.Problems)
	}
}

func TestConcurrencyMemStore(t *testing.T) {
	runConcurrency(t, func(*testing.T) Store { return NewMemStore() }, 5, 100, 10, 1)
}

func TestConcurrencyBatchedMemStore(t *testing.T) {
	runConcurrency(t, func(*testing.T) Store { return NewMemStore() }, 5, 100, 4, 16)
}
