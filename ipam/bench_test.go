package ipam

import (
	"context"
	"fmt"
	"testing"

	"github.com/brindle-net/brindle/datastore/datastoretest"
)

// benchCycle measures the CNI hot path on a node that already owns a block:
// one AutoAssign of one IPv4 address (ADD) followed by ReleaseByHandle (DEL),
// so the block never fills. (b.StopTimer reads memory statistics, which
// stops the world and would dominate a ~20µs operation, so the two are timed
// together; split with BenchmarkReleaseByHandle*.)
func benchCycle(b *testing.B, st Store, release bool) {
	ctx := context.Background()
	m, _ := newTestIPAM(b, nil, "10.0.0.0/16")
	m.store = st
	if _, err := m.AutoAssign(ctx, AutoAssignArgs{Num4: 1, HandleID: "warm"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h := fmt.Sprintf("net.bench-%d", i)
		if _, err := m.AutoAssign(ctx, AutoAssignArgs{Num4: 1, HandleID: h}); err != nil {
			b.Fatal(err)
		}
		if release {
			if _, err := m.ReleaseByHandle(ctx, h); err != nil {
				b.Fatal(err)
			}
		} else if i%60 == 59 {
			// Keep the block from filling; amortised over 60 ops.
			b.StopTimer()
			for j := i - 59; j <= i; j++ {
				if _, err := m.ReleaseByHandle(ctx, fmt.Sprintf("net.bench-%d", j)); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
		}
	}
}

func BenchmarkAutoAssignMemStore(b *testing.B)    { benchCycle(b, NewMemStore(), false) }
func BenchmarkAssignReleaseMemStore(b *testing.B) { benchCycle(b, NewMemStore(), true) }
func BenchmarkAutoAssignEtcd(b *testing.B) {
	benchCycle(b, NewEtcdStore(datastoretest.New(b).Client), false)
}
func BenchmarkAssignReleaseEtcd(b *testing.B) {
	benchCycle(b, NewEtcdStore(datastoretest.New(b).Client), true)
}

// BenchmarkAssign50Etcd: 50 single addresses for 50 handles on a node
// that owns a block, on embedded etcd: mode=sequential is 50 AutoAssigns
// one after another (what a host-wide lock gives), mode=many is one
// AutoAssignMany (what the CNI service's group commit gives). ns/op is
// the 50; the addresses are released outside the timer.
func BenchmarkAssign50Etcd(b *testing.B) {
	for _, mode := range []string{"sequential", "many"} {
		b.Run("mode="+mode, func(b *testing.B) {
			ctx := context.Background()
			m, _ := newTestIPAM(b, nil, "10.0.0.0/16")
			m.store = NewEtcdStore(datastoretest.New(b).Client)
			if _, err := m.AutoAssign(ctx, AutoAssignArgs{Num4: 1, HandleID: "warm"}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				round++
				args := make([]AutoAssignArgs, 50)
				for i := range args {
					args[i] = AutoAssignArgs{Num4: 1, HandleID: fmt.Sprintf("net.r%d-%d", round, i)}
				}
				if mode == "many" {
					for i, r := range m.AutoAssignMany(ctx, args) {
						if r.Err != nil {
							b.Fatalf("request %d: %v", i, r.Err)
						}
					}
				} else {
					for _, a := range args {
						if _, err := m.AutoAssign(ctx, a); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				for _, a := range args {
					if _, err := m.ReleaseByHandle(ctx, a.HandleID); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}
