package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stepStore hides a store's Txn, so the allocator writes step by step.
type stepStore struct{ Store }

// storeModes runs f with the MemStore as it is (transactions) and hidden
// behind stepStore (handles then block, step by step).
func storeModes(t *testing.T, f func(t *testing.T, wrap func(m *IPAM, st *MemStore) *IPAM)) {
	t.Run("txn", func(t *testing.T) { f(t, func(m *IPAM, _ *MemStore) *IPAM { return m }) })
	t.Run("steps", func(t *testing.T) {
		f(t, func(m *IPAM, st *MemStore) *IPAM {
			w, err := New(stepStore{st}, m.cfg)
			if err != nil {
				t.Fatal(err)
			}
			return w
		})
	})
}

// handleAddrs maps each handle to the addresses the blocks say it holds.
func handleAddrs(t testing.TB, m *IPAM) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for a, h := range allocationsByAddr(t, m) {
		out[h] = append(out[h], a.String())
	}
	for _, as := range out {
		sort.Strings(as)
	}
	return out
}

func addrsOf(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Addr().String()
	}
	sort.Strings(out)
	return out
}

// TestAutoAssignMany: results in request order; what the blocks hold per
// handle is exactly what each request got; failed requests hold nothing;
// one request's failure leaves the others alone.
func TestAutoAssignMany(t *testing.T) {
	type req struct {
		handle     string
		n4, n6     int
		pools      []string
		wantErr    string // substring; "" = success
		wantPrefix string // every address of a success lies in it ("" = any)
	}
	tests := []struct {
		name  string
		pools []string // /26 and smaller v4 pools get /30 blocks (newTestIPAM)
		reqs  []req
	}{{
		name:  "one block serves all",
		pools: []string{"10.0.0.0/24"},
		reqs:  []req{{handle: "a", n4: 1}, {handle: "b", n4: 1}, {handle: "c", n4: 2}},
	}, {
		name:  "requests spill into new blocks",
		pools: []string{"10.0.0.0/26"}, // /30 blocks: 4 addresses each
		reqs:  []req{{handle: "a", n4: 3}, {handle: "b", n4: 3}, {handle: "c", n4: 3}, {handle: "d", n4: 1}},
	}, {
		name:  "exhaustion fails only the requests that do not fit",
		pools: []string{"10.0.0.0/29"}, // 8 addresses
		reqs: []req{{handle: "a", n4: 3}, {handle: "b", n4: 3}, {handle: "c", n4: 3, wantErr: "no free address"},
			{handle: "d", n4: 2}},
	}, {
		name:  "dual stack; a request for a missing family rolls back its other",
		pools: []string{"10.0.0.0/24", "fd00::/120"},
		reqs: []req{{handle: "a", n4: 1, n6: 1}, {handle: "b", n4: 1, n6: 1, pools: []string{"pool0"}, wantErr: "no enabled IPv6 pool"},
			{handle: "c", n6: 2}},
	}, {
		name:  "bad requests fail alone",
		pools: []string{"10.0.0.0/24"},
		reqs: []req{{handle: "a", n4: 1}, {handle: "", n4: 1, wantErr: "handle"}, {handle: "a", n4: 1, wantErr: "requested twice"},
			{handle: "neg", n4: -1, wantErr: "negative count"}, {handle: "nopool", n4: 1, pools: []string{"nope"}, wantErr: `requested pool "nope" does not exist`},
			{handle: "b", n4: 1}},
	}, {
		name:  "different pools are separate groups",
		pools: []string{"10.0.0.0/24", "10.1.0.0/24"},
		reqs: []req{{handle: "a", n4: 1, pools: []string{"pool0"}, wantPrefix: "10.0.0.0/24"}, {handle: "b", n4: 1, pools: []string{"pool1"}, wantPrefix: "10.1.0.0/24"},
			{handle: "c", n4: 1, pools: []string{"10.1.0.0/24"}, wantPrefix: "10.1.0.0/24"}},
	}}
	storeModes(t, func(t *testing.T, wrap func(*IPAM, *MemStore) *IPAM) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := wrap(newTestIPAM(t, nil, tt.pools...))
				args := make([]AutoAssignArgs, len(tt.reqs))
				for i, r := range tt.reqs {
					args[i] = AutoAssignArgs{HandleID: r.handle, Num4: r.n4, Num6: r.n6, Pools: r.pools}
				}
				res := m.AutoAssignMany(context.Background(), args)
				if len(res) != len(args) {
					t.Fatalf("%d results for %d requests", len(res), len(args))
				}
				want := map[string][]string{}
				for i, r := range tt.reqs {
					got := res[i]
					if r.wantErr != "" {
						if got.Err == nil || !strings.Contains(got.Err.Error(), r.wantErr) {
							t.Errorf("request %d (%s): error %v, want one containing %q", i, r.handle, got.Err, r.wantErr)
						}
						if len(got.Prefixes) != 0 {
							t.Errorf("request %d (%s) failed but returned %v", i, r.handle, got.Prefixes)
						}
						continue
					}
					if got.Err != nil {
						t.Errorf("request %d (%s): %v", i, r.handle, got.Err)
						continue
					}
					var n4, n6 int
					for _, p := range got.Prefixes {
						if p.Addr().Is4() {
							n4++
						} else {
							n6++
						}
						if r.wantPrefix != "" && !netip.MustParsePrefix(r.wantPrefix).Contains(p.Addr()) {
							t.Errorf("request %d (%s): %s is not in %s", i, r.handle, p, r.wantPrefix)
						}
					}
					if n4 != r.n4 || n6 != r.n6 {
						t.Errorf("request %d (%s): got %d IPv4 and %d IPv6 addresses, want %d and %d", i, r.handle, n4, n6, r.n4, r.n6)
					}
					want[r.handle] = addrsOf(got.Prefixes)
				}
				if diff := cmp.Diff(want, handleAddrs(t, m)); diff != "" {
					t.Errorf("blocks per handle (-what AutoAssignMany returned +what the blocks hold):\n%s", diff)
				}
				mustCheck(t, m)
			})
		}
	})
}

// TestAutoAssignManySharesBlockWrite: N requests served from one block
// write the block once: with a TxnStore in one transaction with all the
// handles, otherwise one block update after the N handle creates (where
// N AutoAssigns update the block N times).
func TestAutoAssignManySharesBlockWrite(t *testing.T) {
	storeModes(t, func(t *testing.T, wrap func(*IPAM, *MemStore) *IPAM) {
		m0, st := newTestIPAM(t, nil, "10.0.0.0/24")
		m := wrap(m0, st)
		// Claim the block first, so only assignment writes are counted.
		if _, err := m.AutoAssign(context.Background(), AutoAssignArgs{HandleID: "warm", Num4: 1}); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		writes := map[string]int{}
		st.SetWriteHook(func(op WriteOp, key string) error {
			mu.Lock()
			defer mu.Unlock()
			kind := "handle"
			if strings.HasPrefix(key, blockPrefix) {
				kind = "block"
			}
			writes[string(op)+" "+kind]++
			return nil
		})
		var args []AutoAssignArgs
		for i := range 20 {
			args = append(args, AutoAssignArgs{HandleID: fmt.Sprintf("h%d", i), Num4: 1})
		}
		for i, r := range m.AutoAssignMany(context.Background(), args) {
			if r.Err != nil {
				t.Fatalf("request %d: %v", i, r.Err)
			}
		}
		want := map[string]int{"txn block": 1}
		if _, ok := m.store.(TxnStore); !ok {
			want = map[string]int{"update block": 1, "create handle": 20}
		}
		if diff := cmp.Diff(want, writes); diff != "" {
			t.Errorf("writes (-want +got):\n%s", diff)
		}
		mustCheck(t, m)
	})
}

// TestAutoAssignManyExistingHandle: a handle that already holds an
// address gets a second one; its count is 2 (the transaction, which
// expects new handles, gives way to the step-by-step path).
func TestAutoAssignManyExistingHandle(t *testing.T) {
	storeModes(t, func(t *testing.T, wrap func(*IPAM, *MemStore) *IPAM) {
		m := wrap(newTestIPAM(t, nil, "10.0.0.0/24"))
		ctx := context.Background()
		first, err := m.AutoAssign(ctx, AutoAssignArgs{HandleID: "old", Num4: 1})
		if err != nil {
			t.Fatal(err)
		}
		res := m.AutoAssignMany(ctx, []AutoAssignArgs{{HandleID: "new", Num4: 1}, {HandleID: "old", Num4: 1}})
		for i, r := range res {
			if r.Err != nil {
				t.Fatalf("request %d: %v", i, r.Err)
			}
		}
		want := map[string][]string{"new": addrsOf(res[0].Prefixes), "old": addrsOf(append(first, res[1].Prefixes...))}
		if diff := cmp.Diff(want, handleAddrs(t, m)); diff != "" {
			t.Errorf("blocks per handle (-want +got):\n%s", diff)
		}
		mustCheck(t, m)
		got, err := m.ReleaseByHandle(ctx, "old")
		if err != nil || len(got) != 2 {
			t.Errorf("release old: %v, %v; want its 2 addresses", got, err)
		}
	})
}

// TestAutoAssignManyInjectedFailures fails each write of a batch in turn:
// every request either succeeded and its handle holds exactly what it got,
// or failed (with the cause wrapped) and holds nothing; the check is clean.
func TestAutoAssignManyInjectedFailures(t *testing.T) {
	tests := []struct {
		name  string
		pools []string
		nodeB bool // host-b holds a block first, so host-a must borrow
		reqs  []AutoAssignArgs
	}{
		{name: "claim and share", pools: []string{"10.0.0.0/24"},
			reqs: []AutoAssignArgs{{HandleID: "a", Num4: 1}, {HandleID: "b", Num4: 2}, {HandleID: "c", Num4: 1}}},
		{name: "spill into a second block", pools: []string{"10.0.0.0/28"},
			reqs: []AutoAssignArgs{{HandleID: "a", Num4: 3}, {HandleID: "b", Num4: 3}}},
		{name: "borrow", pools: []string{"10.0.0.0/30"}, nodeB: true,
			reqs: []AutoAssignArgs{{HandleID: "a", Num4: 1}, {HandleID: "b", Num4: 1}}},
		{name: "dual stack", pools: []string{"10.0.0.0/24", "fd00::/120"},
			reqs: []AutoAssignArgs{{HandleID: "a", Num4: 1, Num6: 1}, {HandleID: "b", Num4: 1, Num6: 1}}},
	}
	ctx := context.Background()
	storeModes(t, func(t *testing.T, wrap func(*IPAM, *MemStore) *IPAM) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for n := 1; ; n++ {
					m0, st := newTestIPAM(t, nil, tt.pools...)
					m := wrap(m0, st)
					before := map[string][]string{}
					if tt.nodeB {
						got, err := m.AutoAssign(ctx, AutoAssignArgs{Node: "host-b", HandleID: "b0", Num4: 1})
						if err != nil {
							t.Fatal(err)
						}
						before["b0"] = addrsOf(got)
					}
					st.FailWrite(n, errDisk)
					res := m.AutoAssignMany(ctx, tt.reqs)
					fired := st.Failed()
					st.FailWrite(0, nil)
					want := before
					failed := 0
					for i, r := range res {
						if r.Err != nil {
							failed++
							if !errors.Is(r.Err, errDisk) {
								t.Errorf("write %d: request %d failed without the cause: %v", n, i, r.Err)
							}
							continue
						}
						want[tt.reqs[i].HandleID] = addrsOf(r.Prefixes)
					}
					if !fired && failed > 0 {
						t.Fatalf("no fault injected (batch makes %d writes) but %d requests failed", n-1, failed)
					}
					if diff := cmp.Diff(want, handleAddrs(t, m)); diff != "" {
						t.Errorf("after failing write %d: blocks per handle (-want +got):\n%s", n, diff)
					}
					mustCheck(t, m)
					if t.Failed() {
						t.FailNow()
					}
					if !fired {
						if n <= 2 {
							t.Fatalf("batch made %d writes; the test needs at least 2", n-1)
						}
						return
					}
				}
			})
		}
	})
}
