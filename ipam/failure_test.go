package ipam

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/brindle-net/brindle/api"
)

var errDisk = errors.New("disk on fire")

// newTestIPAM returns an IPAM over a MemStore with the given pools.
func newTestIPAM(t testing.TB, cfg *api.IPAMConfigurationSpec, pools ...string) (*IPAM, *MemStore) {
	t.Helper()
	src := &StaticSource{Config: cfg}
	for i, c := range pools {
		p := &api.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "pool" + string(rune('0'+i))}, Spec: api.IPPoolSpec{CIDR: c}}
		if netip.MustParsePrefix(c).Bits() >= 26 && netip.MustParsePrefix(c).Addr().Is4() {
			p.Spec.BlockSize = 30
		}
		src.Pools = append(src.Pools, p)
	}
	st := NewMemStore()
	m, err := New(st, Config{Node: "host-a", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	return m, st
}

func mustCheck(t testing.TB, m *IPAM, allow ...ProblemKind) []Problem {
	t.Helper()
	r, err := m.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var bad []Problem
	for _, p := range r.Problems {
		ok := false
		for _, a := range allow {
			ok = ok || p.Kind == a
		}
		if !ok {
			bad = append(bad, p)
		}
	}
	if len(bad) > 0 {
		t.Errorf("check found problems:\n%v", bad)
	}
	return r.Problems
}

// TestInjectedFailures fails each write of an operation in turn (the n-th
// write, for n = 1, 2, ... until the operation no longer reaches n writes)
// and checks that the store is left consistent: no handle without its
// address, no address without its handle, no half-claimed block.
func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	auto := func(node, handle string, n4, n6 int) func(*IPAM) error {
		return func(m *IPAM) error {
			_, err := m.AutoAssign(ctx, AutoAssignArgs{Node: node, HandleID: handle, Num4: n4, Num6: n6})
			return err
		}
	}
	assign := func(ip, handle string) func(*IPAM) error {
		return func(m *IPAM) error {
			return m.AssignIP(ctx, AssignIPArgs{IP: netip.MustParseAddr(ip), HandleID: handle, Node: "host-a"})
		}
	}
	release := func(ip string) func(*IPAM) error {
		return func(m *IPAM) error {
			_, err := m.ReleaseIPs(ctx, ReleaseOptions{Address: netip.MustParseAddr(ip)})
			return err
		}
	}
	releaseHandle := func(h string) func(*IPAM) error {
		return func(m *IPAM) error {
			_, err := m.ReleaseByHandle(ctx, h)
			return err
		}
	}
	later := func(m *IPAM) error {
		m.cfg.Now = func() time.Time { return time.Now().Add(2 * EmptyBlockMinReclaimAge) }
		return nil
	}
	tests := []struct {
		name  string
		pools []string
		setup []func(*IPAM) error
		plant map[string]string
		allow []ProblemKind
		op    func(*IPAM) error
		// repair is the handle a caller re-releases after a failed release
		// (CNI DEL is retried): afterwards the check must be clean.
		repair string
	}{
		{name: "auto claims a block", pools: []string{"10.0.0.0/24"}, op: auto("host-a", "h1", 2, 0)},
		{name: "auto uses own block", pools: []string{"10.0.0.0/24"},
			setup: []func(*IPAM) error{auto("host-a", "h0", 1, 0)}, op: auto("host-a", "h1", 2, 0)},
		{name: "auto spans two blocks", pools: []string{"10.0.0.0/28"},
			setup: []func(*IPAM) error{auto("host-a", "h0", 3, 0)}, op: auto("host-a", "h1", 3, 0)},
		{name: "auto borrows", pools: []string{"10.0.0.0/30"},
			setup: []func(*IPAM) error{auto("host-b", "h0", 1, 0)}, op: auto("host-a", "h1", 2, 0)},
		{name: "auto dual stack rolls back", pools: []string{"10.0.0.0/24", "fd00::/120"}, op: auto("host-a", "h1", 2, 2)},
		{name: "auto reclaims an empty block", pools: []string{"10.0.0.0/30"},
			setup: []func(*IPAM) error{auto("host-b", "h0", 1, 0), releaseHandle("h0"), later},
			op:    auto("host-a", "h1", 1, 0),
			// If the last step (deleting host-b's affinity) fails, it stays
			// pendingDeletion: it counts as absent, and check lists it.
			allow: []ProblemKind{ProblemAffinityNotConfirmed}},
		{name: "assign into new block", pools: []string{"10.0.0.0/24"}, op: assign("10.0.0.9", "s1")},
		{name: "assign into existing block", pools: []string{"10.0.0.0/24"},
			setup: []func(*IPAM) error{assign("10.0.0.9", "s1")}, op: assign("10.0.0.10", "s2")},
		{name: "release by ip", pools: []string{"10.0.0.0/24"},
			setup: []func(*IPAM) error{assign("10.0.0.9", "s1")}, op: release("10.0.0.9"), repair: "s1"},
		{name: "release empties a block with no affinity", pools: []string{"10.0.0.0/30"},
			plant: map[string]string{
				BlockKey(netip.MustParsePrefix("10.0.0.0/30")): `{"cidr":"10.0.0.0/30","affinity":null,` +
					`"allocations":[null,0,null,null],"unallocated":[0,2,3],` +
					`"attributes":[{"handle_id":"h0","secondary":{"node":"host-b"}}],` +
					`"sequenceNumber":7,"sequenceNumberForAllocation":{"1":6},"deleted":false}`,
				HandleKey("h0"): `{"handleID":"h0","block":{"10.0.0.0/30":1},"deleted":false}`,
			},
			op: release("10.0.0.1"), repair: "h0"},
		{name: "release by handle across blocks", pools: []string{"10.0.0.0/28"},
			setup: []func(*IPAM) error{auto("host-a", "h1", 6, 0)}, op: releaseHandle("h1"), repair: "h1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for n := 1; ; n++ {
				m, st := newTestIPAM(t, nil, tt.pools...)
				for k, v := range tt.plant {
					st.Put(k, []byte(v))
				}
				for _, s := range tt.setup {
					if err := s(m); err != nil {
						t.Fatalf("setup: %v", err)
					}
				}
				before, err := m.Check(ctx)
				if err != nil {
					t.Fatal(err)
				}
				st.FailWrite(n, errDisk)
				err = tt.op(m)
				fired := st.Failed()
				st.FailWrite(0, nil)
				if !fired {
					if err != nil {
						t.Fatalf("no fault injected (op makes %d writes) but op failed: %v", n-1, err)
					}
					mustCheck(t, m)
					if n <= 2 {
						t.Fatalf("op made %d writes; the test needs at least 2", n-1)
					}
					return
				}
				if err != nil && !errors.Is(err, errDisk) {
					t.Errorf("write %d failed: error does not wrap the cause: %v", n, err)
				}
				if err != nil && tt.repair == "" {
					// A failed assignment is all or nothing.
					after, cerr := m.Check(ctx)
					if cerr != nil {
						t.Fatal(cerr)
					}
					if after.Allocations != before.Allocations {
						t.Errorf("failed op changed allocations from %d to %d", before.Allocations, after.Allocations)
					}
				}
				if tt.repair == "" || err == nil {
					if t.Failed() {
						return
					}
					mustCheck(t, m, tt.allow...)
					if t.Failed() {
						t.Fatalf("after failing write %d (op error: %v)", n, err)
					}
					continue
				}
				// A failed release may leave the handle counting an address
				// already freed; re-releasing the handle repairs it.
				mustCheck(t, m, ProblemHandleWithoutAllocation)
				if _, rerr := m.ReleaseByHandle(ctx, tt.repair); rerr != nil && !errors.Is(rerr, ErrHandleNotFound) {
					t.Fatalf("repair: %v", rerr)
				}
				mustCheck(t, m)
				if t.Failed() {
					t.Fatalf("after failing write %d and repairing (op error: %v)", n, err)
				}
			}
		})
	}
}
