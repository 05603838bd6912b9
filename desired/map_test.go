package desired

import (
	"fmt"
	"iter"
	"maps"
	"math/rand/v2"
	"testing"
)

// TestMapRandomEdits applies random Sets and Deletes, through Map's own
// methods and through edits, to a Map and a plain map side by side: the
// Map must hold what the plain map holds after every step, Diff must name
// the keys the step added, removed and (with an eq) changed, each once,
// and every Map value taken earlier must keep its contents.
func TestMapRandomEdits(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 0x3a9))
		var m Map[int, string]
		want := map[int]string{}
		type snap struct {
			m    Map[int, string]
			want map[int]string
		}
		var snaps []snap
		prev, prevWant := m, map[int]string{}
		for step := range 200 {
			switch rng.IntN(3) {
			case 0: // one change through the Map
				k := rng.IntN(300)
				if rng.IntN(3) == 0 {
					m.Delete(k)
					delete(want, k)
				} else {
					v := string(rune('a' + rng.IntN(26)))
					m.Set(k, v)
					want[k] = v
				}
			default: // a batch through an edit, its Map taken mid-way too
				e := m.Edit()
				for i := range 1 + rng.IntN(40) {
					k := rng.IntN(300)
					if rng.IntN(4) == 0 {
						e.Delete(k)
						delete(want, k)
					} else {
						e.Set(k, string(rune('A'+rng.IntN(26))))
						v, _ := e.Map().Get(k) // the edit goes on after Map
						want[k] = v
					}
					if i == 5 {
						snaps = append(snaps, snap{e.Map(), maps.Clone(want)})
					}
				}
				m = e.Map()
			}
			if got := maps.Collect(m.All()); !maps.Equal(got, want) || m.Len() != len(want) {
				t.Fatalf("seed %d step %d: Map holds %d entries %v, want %d %v", seed, step, m.Len(), got, len(want), want)
			}
			for k, v := range want {
				if got, ok := m.Get(k); !ok || got != v || !m.Has(k) {
					t.Fatalf("seed %d step %d: Get(%d) = %q, %v; want %q", seed, step, k, got, ok, v)
				}
			}
			// Diff names exactly the keys added and removed, and with an
			// eq those whose value changed.
			added, changed := map[int]bool{}, map[int]bool{}
			for k, v := range want {
				if w, ok := prevWant[k]; !ok {
					added[k], changed[k] = true, true
				} else if w != v {
					changed[k] = true
				}
			}
			for k := range prevWant {
				if _, ok := want[k]; !ok {
					added[k], changed[k] = true, true
				}
			}
			if got := setOf(m.Diff(prev, nil)); !maps.Equal(got, added) {
				t.Fatalf("seed %d step %d: Diff %v, want %v", seed, step, got, added)
			}
			if got := setOf(m.Diff(prev, func(a, b string) bool { return a == b })); !maps.Equal(got, changed) {
				t.Fatalf("seed %d step %d: Diff with values %v, want %v", seed, step, got, changed)
			}
			eq := func(a, b string) bool { return a == b }
			if got := m.EqualFunc(prev, eq); got != maps.Equal(want, prevWant) {
				t.Fatalf("seed %d step %d: EqualFunc with the previous Map = %v", seed, step, got)
			}
			prev, prevWant = m, maps.Clone(want)
			snaps = append(snaps, snap{m, maps.Clone(want)})
			for i, s := range snaps {
				if got := maps.Collect(s.m.All()); !maps.Equal(got, s.want) || s.m.Len() != len(s.want) {
					t.Fatalf("seed %d step %d: the Map taken at snapshot %d changed", seed, step, i)
				}
				// Snapshots share some shards with m, or were resharded.
				if got := m.EqualFunc(s.m, eq); got != maps.Equal(want, s.want) {
					t.Fatalf("seed %d step %d: EqualFunc with snapshot %d = %v", seed, step, i, got)
				}
			}
			if len(snaps) > 20 {
				snaps = snaps[len(snaps)-20:]
			}
		}
	}
}

// TestMapSharesUnchangedShards: an edit of one key copies that key's
// shard only, so Same tells an unchanged Map; a Map's zero value and
// MapOf(nil) are empty; the shard count follows the size.
func TestMapSharesUnchangedShards(t *testing.T) {
	src := map[int]int{}
	for i := range 1000 {
		src[i] = i
	}
	a := MapOf(src)
	b := a
	b.Set(7, 70)
	if a.Same(b) {
		t.Fatal("a Map and its edit are the Same")
	}
	if v, _ := a.Get(7); v != 7 {
		t.Fatalf("Set on a copy changed the original: a[7] = %d", v)
	}
	shared, full := 0, 0
	if len(a.shards) != shardsFor(1000) || len(a.shards) < 2 {
		t.Fatalf("1000 entries in %d shards, want %d", len(a.shards), shardsFor(1000))
	}
	for i := range a.shards {
		if len(a.shards[i]) > 0 {
			full++
			if sameShard(a.shards[i], b.shards[i]) {
				shared++
			}
		}
	}
	if shared != full-1 {
		t.Fatalf("%d of %d non-empty shards shared after one Set, want %d", shared, full, full-1)
	}
	// Growing and shrinking spreads the entries over more or fewer
	// shards, keeping them all.
	g := a
	for i := 1000; i < 10000; i++ {
		g.Set(i, i)
	}
	if len(g.shards) != maxShards || g.Len() != 10000 || len(a.shards) != shardsFor(1000) {
		t.Fatalf("grown to %d entries in %d shards (the original has %d)", g.Len(), len(g.shards), len(a.shards))
	}
	e := g.Edit()
	for i := 10; i < 10000; i++ {
		e.Delete(i)
	}
	small := e.Map()
	if len(small.shards) != 1 || !maps.Equal(maps.Collect(small.All()), map[int]int{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9}) {
		t.Fatalf("shrunk to %v in %d shards", maps.Collect(small.All()), len(small.shards))
	}
	c := a.Edit().Map()
	if !c.Same(a) {
		t.Fatal("an edit with no change is not the Same Map")
	}
	if !a.EqualFunc(MapOf(src), func(x, y int) bool { return x == y }) || a.EqualFunc(b, func(x, y int) bool { return x == y }) {
		t.Fatal("EqualFunc is wrong")
	}
	var z Map[string, int]
	if z.Len() != 0 || z.Has("x") || !z.Same(MapOf[string, int](nil)) {
		t.Fatal("the zero Map is not empty")
	}
	z.Delete("x")
	if z.Len() != 0 {
		t.Fatalf("Delete of an absent key: Len %d", z.Len())
	}
}

func sameShard(a, b map[int]int) bool {
	if len(a) != len(b) {
		return false
	}
	// Same map object: a write through one shows in the other.
	for k, v := range a {
		a[k] = v + 1
		same := b[k] == v+1
		a[k] = v
		return same
	}
	return true
}

// setOf collects keys, failing on a repeat.
func setOf(keys iter.Seq[int]) map[int]bool {
	out := map[int]bool{}
	for k := range keys {
		if out[k] {
			panic(fmt.Sprintf("key %d yielded twice", k))
		}
		out[k] = true
	}
	return out
}

// TestMapDiffStops: a loop over Diff may stop early, whether the two Maps
// share a shard count or not (the resharded path compares them whole in
// two passes).
func TestMapDiffStops(t *testing.T) {
	var small, big Map[int, int]
	small.Set(1000, 1)
	e := big.Edit()
	for i := range 100 {
		e.Set(i, i)
	}
	big = e.Map()
	bigger := big
	bigger.Set(1000, 1)
	bigger.Set(1001, 1)
	for _, pair := range [][2]Map[int, int]{{big, small}, {small, big}, {bigger, big}} {
		n := 0
		for range pair[0].Diff(pair[1], nil) {
			n++
			break
		}
		if n != 1 {
			t.Errorf("Diff of maps of %d and %d entries yielded %d keys before the break, want 1", pair[0].Len(), pair[1].Len(), n)
		}
	}
}

// TestMapEditGrow fills an edit of an empty Map after Grow: the entries
// go straight to the shards their count needs (Map does not reshard:
// the shards Map returns are the ones Grow made), and the contents are
// those of the same entries set without Grow. Grow leaves an edit that
// has changes or a base alone.
func TestMapEditGrow(t *testing.T) {
	for _, n := range []int{0, 5, shardSize + 1, 600, 5000} {
		var e MapEdit[int, int]
		e.Grow(n)
		grown := e.shards
		if n > shardSize && len(grown) != shardsFor(n) {
			t.Fatalf("Grow(%d): %d shards, want %d", n, len(grown), shardsFor(n))
		}
		src := map[int]int{}
		for i := range n {
			e.Set(i*7, i)
			src[i*7] = i
		}
		m := e.Map()
		if got := maps.Collect(m.All()); !maps.Equal(got, src) || m.Len() != n {
			t.Fatalf("Grow(%d) then %d Sets: the Map holds %d entries, want %d", n, n, len(got), n)
		}
		if n > shardSize && &m.shards[0] != &grown[0] {
			t.Fatalf("Grow(%d): Map resharded the entries Grow had placed", n)
		}
	}
	base := MapOf(map[int]int{1: 1})
	e := base.Edit()
	e.Grow(1000)
	if e.shards != nil {
		t.Fatal("Grow changed an edit of a non-empty Map")
	}
	var f MapEdit[int, int]
	f.Set(1, 1)
	f.Grow(1000)
	if len(f.shards) != 1 {
		t.Fatalf("Grow after a Set: %d shards, want the 1 the Set made", len(f.shards))
	}
}
