package nft

import (
	"testing"

	"github.com/brindle-net/brindle/desired"
)

// BenchmarkChangeDetection5000Policies: the user-space part of a
// one-element change on the 5,000-policy state: incremental validation and
// model update (no kernel).
func BenchmarkChangeDetection5000Policies(b *testing.B) {
	s, bl := builtBig(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s = toggleMember(s, i)
		i++
		if err := bl.validate(s); err != nil {
			b.Fatal(err)
		}
		if _, err := bl.build(s); err != nil {
			b.Fatal(err)
		}
		// The set changes in place: one element journaled, nothing
		// replaced.
		if len(bl.dSets) != 0 || len(bl.dChains) != 0 || len(bl.dElems) != 1 {
			b.Fatalf("change recorded %d sets, %d chains, %d element journals; want 0, 0, 1", len(bl.dSets), len(bl.dChains), len(bl.dElems))
		}
	}
}

// BenchmarkLayGeneric5000Policies: laying one direction's generic chains
// out anew for 5,000 policies with nothing changed (what a relayout costs
// in user space before the kernel sees the few segments that differ).
func BenchmarkLayGeneric5000Policies(b *testing.B) {
	_, bl := builtBig(b)
	bl.layPending = false
	bl.layGeneric(true)
	if n := len(bl.lay[0].pos); n < 5000 {
		b.Fatalf("the layout holds %d items, want every policy", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		bl.layGeneric(true)
	}
}

// builtBig returns the 5,000-policy state and a builder that has built it.
func builtBig(b *testing.B) (*desired.State, *builder) {
	s := bigState(5000, 5000, 200)
	bl := newBuilder(Config{}.withDefaults())
	if err := bl.validate(s); err != nil {
		b.Fatal(err)
	}
	if _, err := bl.build(s); err != nil {
		b.Fatal(err)
	}
	return s, bl
}
