package selector

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// event is one reported membership change, rendered "+sel item" (start) or
// "-sel item" (stop). With data set, each callback's data must be the
// item's entry there (a missing entry: nil), else "!item" is logged too.
type eventLog struct {
	events []string
	data   map[string]any
}

func (l *eventLog) start(sel, item string, data any) { l.log("+"+sel+" "+item, item, data) }
func (l *eventLog) stop(sel, item string, data any)  { l.log("-"+sel+" "+item, item, data) }

func (l *eventLog) log(ev, item string, data any) {
	l.events = append(l.events, ev)
	if l.data != nil && data != l.data[item] {
		l.events = append(l.events, fmt.Sprintf("!%s: data %v, want %v", item, data, l.data[item]))
	}
}

func (l *eventLog) take() []string {
	e := l.events
	l.events = nil
	slices.Sort(e)
	return e
}

// oracle is the brute-force model: it keeps the inputs and evaluates every
// selector on every item's merged labels.
type oracle struct {
	sels    map[string]*Selector
	items   map[string]map[string]string
	itemPar map[string][]string
	parents map[string]map[string]string
}

func newOracle() *oracle {
	return &oracle{
		sels:    map[string]*Selector{},
		items:   map[string]map[string]string{},
		itemPar: map[string][]string{},
		parents: map[string]map[string]string{},
	}
}

func (o *oracle) merged(item string) map[string]string {
	m := map[string]string{}
	pars := o.itemPar[item]
	for i := len(pars) - 1; i >= 0; i-- {
		for k, v := range o.parents[pars[i]] {
			m[k] = v
		}
	}
	for k, v := range o.items[item] {
		m[k] = v
	}
	return m
}

func (o *oracle) state() map[string]bool {
	st := map[string]bool{}
	for it := range o.items {
		m := o.merged(it)
		for sid, s := range o.sels {
			if refEval(s.root, m) {
				st[sid+" "+it] = true
			}
		}
	}
	return st
}

func diffEvents(before, after map[string]bool) []string {
	var out []string
	for p := range after {
		if !before[p] {
			out = append(out, "+"+p)
		}
	}
	for p := range before {
		if !after[p] {
			out = append(out, "-"+p)
		}
	}
	slices.Sort(out)
	return out
}

// randSelector builds a random selector over a small label vocabulary so
// that matches are frequent and every operator and index path is used.
func randSelector(r *rand.Rand, depth int) string {
	key := func() string { return string(rune('a' + r.IntN(5))) }
	val := func() string { return fmt.Sprintf("'%d'", r.IntN(4)) }
	if depth > 0 && r.IntN(3) == 0 {
		n := 2 + r.IntN(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = randSelector(r, depth-1)
		}
		op := " && "
		if r.IntN(2) == 0 {
			op = " || "
		}
		s := "(" + strings.Join(parts, op) + ")"
		if r.IntN(5) == 0 {
			s = "!" + s
		}
		return s
	}
	switch r.IntN(12) {
	case 0:
		return key() + " != " + val()
	case 1:
		return key() + " in {" + val() + ", " + val() + "}"
	case 2:
		return key() + " not in {" + val() + "}"
	case 3:
		return "has(" + key() + ")"
	case 4:
		return "!has(" + key() + ")"
	case 5:
		return key() + " contains '1'"
	case 6:
		return "all()"
	case 7:
		k := key()
		return "(" + k + " == " + val() + " || " + k + " == " + val() + " || " + k + " == " + val() + ")"
	case 8:
		return key() + " in {}"
	default:
		return key() + " == " + val()
	}
}

func randLabels(r *rand.Rand) map[string]string {
	if r.IntN(8) == 0 {
		return nil
	}
	m := map[string]string{}
	for range r.IntN(4) {
		m[string(rune('a'+r.IntN(5)))] = fmt.Sprint(r.IntN(4))
	}
	return m
}

// TestIndexOracle drives the index with seeded random churn of selectors,
// items and parents, and after every step checks that the reported
// start/stop events are exactly the change in the brute-force match set,
// and that Matches and SelectorsMatching agree with it.
func TestIndexOracle(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 42))
			log := eventLog{data: map[string]any{}}
			x := NewIndex(log.start, log.stop)
			o := newOracle()
			shared := MustParse("a == '1'")
			before := map[string]bool{}
			for step := range 2000 {
				var what string
				switch op := r.IntN(20); {
				case op < 3:
					id := randID(r, "s", 25)
					sel := MustParse(randSelector(r, 2))
					if r.IntN(10) == 0 {
						sel = shared // one object under several IDs
					}
					what = fmt.Sprintf("UpdateSelector(%s, %q)", id, sel)
					x.UpdateSelector(id, sel)
					o.sels[id] = sel
				case op < 4:
					id := randID(r, "s", 25)
					what = "DeleteSelector(" + id + ")"
					if r.IntN(2) == 0 {
						// Silently: its matches end without events.
						what = "DropSelector(" + id + ")"
						x.DropSelector(id)
						delete(o.sels, id)
						for k := range before {
							if strings.HasPrefix(k, id+" ") {
								delete(before, k)
							}
						}
						break
					}
					x.DeleteSelector(id)
					delete(o.sels, id)
				case op < 12:
					id := randID(r, "i", 40)
					own := randLabels(r)
					var pars []string
					for range r.IntN(3) {
						pars = append(pars, fmt.Sprint("p", r.IntN(5)))
					}
					what = fmt.Sprintf("UpdateItemWithParents(%s, %v, %v)", id, own, pars)
					if r.IntN(2) == 0 {
						d := fmt.Sprint(id, "@", step) // the callbacks carry it from now on
						what = fmt.Sprintf("UpdateItemWithData(%s, %s, %v, %v)", id, d, own, pars)
						log.data[id] = d
						x.UpdateItemWithData(id, d, own, pars)
					} else {
						delete(log.data, id)
						x.UpdateItemWithParents(id, own, pars)
					}
					o.items[id], o.itemPar[id] = own, pars
					if o.items[id] == nil {
						o.items[id] = map[string]string{}
					}
				case op < 14:
					id := randID(r, "i", 40)
					what = "DeleteItem(" + id + ")"
					x.DeleteItem(id) // its stops carry its last data
					delete(log.data, id)
					delete(o.items, id)
					delete(o.itemPar, id)
				case op < 18:
					id := fmt.Sprint("p", r.IntN(5))
					l := randLabels(r)
					what = fmt.Sprintf("UpdateParent(%s, %v)", id, l)
					x.UpdateParent(id, l)
					o.parents[id] = l
				default:
					id := fmt.Sprint("p", r.IntN(5))
					what = "DeleteParent(" + id + ")"
					x.DeleteParent(id)
					delete(o.parents, id)
				}
				after := o.state()
				if diff := cmp.Diff(diffEvents(before, after), log.take()); diff != "" {
					t.Fatalf("step %d %s: events (-want +got):\n%s", step, what, diff)
				}
				before = after
				if step%50 == 0 {
					checkQueries(t, x, o, after)
					checkTracked(t, x, o)
				}
			}
			checkQueries(t, x, o, before)
			checkTracked(t, x, o)
		})
	}
}

// randID returns prefix+i for a random i < n, or "" for i == 0: the empty
// string is a valid ID too.
func randID(r *rand.Rand, prefix string, n int) string {
	i := r.IntN(n)
	if i == 0 {
		return ""
	}
	return fmt.Sprint(prefix, i)
}

func checkQueries(t *testing.T, x *Index, o *oracle, st map[string]bool) {
	t.Helper()
	for sid := range o.sels {
		var want []string
		for it := range o.items {
			if st[sid+" "+it] {
				want = append(want, it)
			}
		}
		slices.Sort(want)
		if diff := cmp.Diff(want, x.Matches(sid)); diff != "" {
			t.Fatalf("Matches(%s) (-want +got):\n%s", sid, diff)
		}
	}
	for it := range o.items {
		var want []string
		for sid := range o.sels {
			if st[sid+" "+it] {
				want = append(want, sid)
			}
		}
		slices.Sort(want)
		if diff := cmp.Diff(want, x.SelectorsMatching(it)); diff != "" {
			t.Fatalf("SelectorsMatching(%s) (-want +got):\n%s", it, diff)
		}
		wantL := o.merged(it)
		if len(wantL) == 0 {
			wantL = map[string]string{}
		}
		if diff := cmp.Diff(wantL, x.Labels(it)); diff != "" {
			t.Fatalf("Labels(%s) (-want +got):\n%s", it, diff)
		}
	}
}

// TestIndexCandidates checks the point of the index: a label change
// evaluates only candidate selectors, not every selector.
func TestIndexCandidates(t *testing.T) {
	x := NewIndex(nil, nil)
	for i := range 1000 {
		x.UpdateSelector(fmt.Sprint("s", i), MustParse(fmt.Sprintf("app == 'a%d' && tier == 'web'", i)))
	}
	x.UpdateSelector("fallback", MustParse("!has(skip)"))
	x.UpdateItem("i", map[string]string{"app": "a7", "tier": "web"})
	counts := map[string]int{}
	for _, e := range x.sels {
		counts[fmt.Sprint(e.indexed)]++
	}
	if counts["false"] != 1 {
		t.Errorf("unindexed selectors = %d, want 1 (only the fallback)", counts["false"])
	}
	// Collect candidates as relabel does and count them.
	x.nextEpoch()
	x.cand = x.cand[:0]
	x.collectLabelSels(map[string]string{"app": "a8", "tier": "web"})
	x.collectSels(&x.fallback)
	if len(x.cand) > 10 {
		t.Errorf("%d candidate selectors for one item, want a handful", len(x.cand))
	}
	if got := x.SelectorsMatching("i"); !slices.Equal(got, []string{"fallback", "s7"}) {
		t.Errorf("SelectorsMatching = %v", got)
	}
}

// TestIndexReChoose checks that a selector first indexed on a broad label
// (chosen before any item existed) moves to a selective one.
func TestIndexReChoose(t *testing.T) {
	x := NewIndex(nil, nil)
	x.UpdateSelector("s", MustParse("ns == 'default' && app == 'db'"))
	if got := x.sels[0].req.kvs; len(got) != 1 || got[0].k != "ns" {
		t.Fatalf("initial requirement %v, want ns (first of a tie)", got)
	}
	for i := range 200 {
		x.UpdateItem(fmt.Sprint("i", i), map[string]string{"ns": "default", "app": fmt.Sprint("web", i)})
	}
	if got := x.sels[0].req.kvs; len(got) != 1 || got[0].k != "app" {
		t.Errorf("requirement after churn %v, want app", got)
	}
	if got := x.Matches("s"); len(got) != 0 {
		t.Errorf("Matches = %v", got)
	}
}

// checkTracked checks the item side of the index against the items'
// labels: exactly the keys the registered selectors' requirements may use
// are tracked, with one ref per selector, and each tracked key's and
// value's item sets are exactly the items carrying it.
func checkTracked(t *testing.T, x *Index, o *oracle) {
	t.Helper()
	refs := map[string]int{}
	for _, e := range x.sels {
		if e != nil {
			for _, k := range e.tracked {
				refs[k]++
			}
		}
	}
	got := map[string]int{}
	idle := 0
	for k, ki := range x.keys {
		if ki.refs == 0 {
			idle++
			continue
		}
		got[k] = ki.refs
	}
	if diff := cmp.Diff(refs, got); diff != "" {
		t.Fatalf("tracked keys and refs (-want +got):\n%s", diff)
	}
	if idle > maxIdleKeys {
		t.Fatalf("%d idle keys kept, want at most %d", idle, maxIdleKeys)
	}
	for k, ki := range x.keys {
		wantKey := map[string]bool{}
		wantVal := map[string]map[string]bool{}
		for it := range o.items {
			if v, ok := o.merged(it)[k]; ok {
				wantKey[it] = true
				if wantVal[v] == nil {
					wantVal[v] = map[string]bool{}
				}
				wantVal[v][it] = true
			}
		}
		names := func(s *idSet) map[string]bool {
			m := map[string]bool{}
			for it := range s.each {
				m[x.item(it).id] = true
			}
			return m
		}
		if diff := cmp.Diff(wantKey, names(&ki.items)); diff != "" {
			t.Fatalf("items carrying %s (-want +got):\n%s", k, diff)
		}
		for v, vi := range ki.vals {
			if vi.items.len() == 0 && vi.sels.len() == 0 {
				t.Fatalf("empty entry for %s=%s kept", k, v)
			}
			if vi.items.len() == 0 {
				continue
			}
			if diff := cmp.Diff(wantVal[v], names(&vi.items)); diff != "" {
				t.Fatalf("items carrying %s=%s (-want +got):\n%s", k, v, diff)
			}
			delete(wantVal, v)
		}
		if len(wantVal) != 0 {
			t.Fatalf("values of %s with items but no entry: %v", k, wantVal)
		}
	}
}

// TestIndexTracksOnlySelectorKeys checks that items are indexed by label
// only under keys that registered selectors' requirements use, that a new
// selector fills its keys from items indexed before it, and that keys are
// forgotten after their last selector once enough other keys have gone
// idle since.
func TestIndexTracksOnlySelectorKeys(t *testing.T) {
	var log eventLog
	x := NewIndex(log.start, log.stop)
	x.UpdateParent("p", map[string]string{"team": "a"})
	for i := range 100 {
		x.UpdateItemWithParents(fmt.Sprint("i", i), map[string]string{"app": fmt.Sprint("a", i%10), "hash": fmt.Sprint(i)}, []string{"p"})
	}
	if len(x.keys) != 0 {
		t.Fatalf("keys tracked with no selectors: %v", slices.Collect(maps.Keys(x.keys)))
	}
	x.UpdateSelector("s", MustParse("app == 'a3' && team == 'a' && hash != '3'"))
	if got := slices.Sorted(maps.Keys(x.keys)); !slices.Equal(got, []string{"app", "team"}) {
		t.Errorf("tracked keys %v, want [app team]", got)
	}
	if got := len(x.Matches("s")); got != 9 || len(log.take()) != 9 {
		t.Errorf("%d matches, want 9 (and 9 starts)", got)
	}
	x.UpdateSelector("s", MustParse("has(team) && !has(hash)"))
	if got := activeKeys(x); !slices.Equal(got, []string{"team"}) {
		t.Errorf("tracked keys after replacement %v, want [team]", got)
	}
	if got := log.take(); len(got) != 9 || got[0][0] != '-' || got[8][0] != '-' {
		t.Errorf("replacement events %v, want 9 stops", got)
	}
	x.DeleteSelector("s")
	if got := activeKeys(x); len(got) != 0 {
		t.Errorf("keys with refs after the last selector went: %v", got)
	}
	// Idle keys are kept for a selector that comes back: no refill.
	i3 := x.itemIDs["i3"]
	x.keys["app"].vals["a3"].items.remove(i3) // a mark a refill would undo
	x.UpdateSelector("s", MustParse("app == 'a3'"))
	if x.keys["app"].vals["a3"].items.has(i3) {
		t.Errorf("idle key refilled when its selector came back")
	}
	x.keys["app"].vals["a3"].items.add(i3)
	x.DeleteSelector("s")
	for i := range maxIdleKeys {
		id := fmt.Sprint("other", i)
		x.UpdateSelector(id, MustParse(fmt.Sprintf("k%d == 'v'", i)))
		x.DeleteSelector(id)
	}
	if len(x.keys) != maxIdleKeys {
		t.Errorf("%d keys after %d more went idle, want %d", len(x.keys), maxIdleKeys, maxIdleKeys)
	}
	if _, ok := x.keys["app"]; ok {
		t.Errorf("oldest idle key app still tracked")
	}
}

// activeKeys returns the sorted tracked keys that some selector uses.
func activeKeys(x *Index) []string {
	var keys []string
	for k, ki := range x.keys {
		if ki.refs > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
