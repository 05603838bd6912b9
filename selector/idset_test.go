package selector

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestIDSet drives idSet with random adds and removes over ID ranges that
// take it through all three forms (slice, hash set, bitmap) and back, and
// checks every result against a map.
func TestIDSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ids    uint32 // IDs drawn from 0..ids-1
		addPct int    // share of adds among operations
		forms  []string
	}{
		{"tiny range", 20, 50, []string{"dense", "small"}},
		{"dense grows", 3000, 80, []string{"big", "dense", "small"}},
		{"dense shrinks", 3000, 20, []string{"big", "dense", "small"}},
		{"sparse", 1 << 20, 70, []string{"big", "dense", "small"}},
		{"sparse stays", 1 << 24, 70, []string{"big", "small"}},
		{"churn", 500, 50, []string{"dense", "small"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tc.ids), uint64(tc.addPct)))
			var s idSet
			want := map[uint32]bool{}
			forms := map[string]bool{}
			for step := range 40000 {
				id := r.Uint32N(tc.ids)
				if step%10000 < 5000 == (r.IntN(100) < tc.addPct) || tc.name == "churn" && r.IntN(2) == 0 {
					if got := s.add(id); got != !want[id] {
						t.Fatalf("step %d: add(%d) = %v with %d present=%v", step, id, got, id, want[id])
					}
					want[id] = true
				} else {
					if got := s.remove(id); got != want[id] {
						t.Fatalf("step %d: remove(%d) = %v with %d present=%v", step, id, got, id, want[id])
					}
					delete(want, id)
				}
				forms[setForm(&s)] = true
				if s.len() != len(want) || s.has(id) != want[id] {
					t.Fatalf("step %d: len %d has(%d) %v, want %d %v", step, s.len(), id, s.has(id), len(want), want[id])
				}
				if step%997 == 0 {
					got := slices.Sorted(slices.Values(s.appendTo(nil)))
					if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), got); diff != "" {
						t.Fatalf("step %d (%s form): contents (-want +got):\n%s", step, setForm(&s), diff)
					}
				}
			}
			if got := slices.Sorted(maps.Keys(forms)); !slices.Equal(got, tc.forms) {
				t.Errorf("forms used %v, want %v", got, tc.forms)
			}
		})
	}
}

func setForm(s *idSet) string {
	switch {
	case s.dense != nil:
		return "dense"
	case s.big != nil:
		return "big"
	}
	return "small"
}

// TestIDSetFormsBySize checks the form chosen: a slice up to
// idSetSmallMax, a bitmap for many IDs in a compact range, a hash set for
// many IDs scattered over a large one.
func TestIDSetFormsBySize(t *testing.T) {
	var small, dense, sparse idSet
	for i := range uint32(idSetSmallMax) {
		small.add(i * 1000)
	}
	for i := range uint32(10000) {
		dense.add(i)
		sparse.add(i * 1000)
	}
	for _, c := range []struct {
		s    *idSet
		want string
	}{{&small, "small"}, {&dense, "dense"}, {&sparse, "big"}} {
		if got := setForm(c.s); got != c.want {
			t.Errorf("form %s, want %s", got, c.want)
		}
	}
	far := dense // a copy sharing nothing once it changes form
	far.dense = slices.Clone(dense.dense)
	if !far.add(1<<24) || setForm(&far) != "big" || far.len() != 10001 || !far.has(9999) || !far.has(1<<24) {
		t.Errorf("bitmap plus a far ID: form %s len %d, want big 10001", setForm(&far), far.len())
	}
	for i := range uint32(10000 - 4) {
		dense.remove(i)
	}
	if got := setForm(&dense); got != "small" || dense.len() != 4 {
		t.Errorf("after removals: form %s len %d, want small 4", got, dense.len())
	}
}
