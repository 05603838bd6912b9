package ipam

import (
	"context"
	"fmt"
	"testing"

	"github.com/brindle-net/brindle/datastore/datastoretest"
)

// benchAutoAssign measures one AutoAssign of one IPv4 address on a node that
// already owns a block with room (the CNI hot path). The address is released
// again outside the timer, so the block never fills.
func benchAutoAssign(b *testing.B, st Store) {
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
		b.StopTimer()
		if _, err := m.ReleaseByHandle(ctx, h); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkAutoAssignMemStore(b *testing.B) { benchAutoAssign(b, NewMemStore()) }

func BenchmarkAutoAssignEtcd(b *testing.B) {
	benchAutoAssign(b, NewEtcdStore(datastoretest.New(b).Client))
}

// BenchmarkReleaseByHandleMemStore measures the CNI DEL path.
func BenchmarkReleaseByHandleMemStore(b *testing.B) {
	ctx := context.Background()
	m, _ := newTestIPAM(b, nil, "10.0.0.0/16")
	b.ReportAllocs()
	for i := range b.N {
		h := fmt.Sprintf("net.bench-%d", i)
		b.StopTimer()
		if _, err := m.AutoAssign(ctx, AutoAssignArgs{Num4: 1, HandleID: h}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := m.ReleaseByHandle(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
}
