package selector

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

const (
	benchItems      = 100_000
	benchSelectors  = 10_000
	benchNamespaces = 100
	benchApps       = 2_000
	benchSAs        = 5 // per namespace
)

// benchWorld is a Kubernetes-like population: pods with namespace, app,
// tier, version and template-hash labels, whose parents are their
// namespace profile (pcns.* labels) and service-account profile (pcsa.*).
type benchWorld struct {
	itemLabels  []map[string]string
	itemParents [][]string
	parents     map[string]map[string]string
	selectors   []string
}

func itemLabels(i, version int) map[string]string {
	return map[string]string{
		"projectcalico.org/namespace":      fmt.Sprint("ns-", i%benchNamespaces),
		"projectcalico.org/orchestrator":   "k8s",
		"projectcalico.org/serviceaccount": fmt.Sprint("sa-", i%benchSAs),
		"app":                              fmt.Sprint("app-", i%benchApps),
		"tier":                             []string{"web", "api", "db", "cache"}[(i+2*(version-1))%4],
		"version":                          fmt.Sprint("v", version),
		"pod-template-hash":                fmt.Sprintf("%08x", i/5),
	}
}

func newBenchWorld() *benchWorld {
	r := rand.New(rand.NewPCG(1, 2))
	w := &benchWorld{parents: map[string]map[string]string{}}
	for n := range benchNamespaces {
		w.parents[fmt.Sprint("kns.ns-", n)] = map[string]string{
			"pcns.projectcalico.org/name": fmt.Sprint("ns-", n),
			"pcns.team":                   fmt.Sprint("team-", n%10),
			"pcns.env":                    []string{"prod", "dev"}[n%2],
		}
		for s := range benchSAs {
			w.parents[fmt.Sprintf("ksa.ns-%d.sa-%d", n, s)] = map[string]string{
				"pcsa.projectcalico.org/name": fmt.Sprint("sa-", s),
			}
		}
	}
	for i := range benchItems {
		w.itemLabels = append(w.itemLabels, itemLabels(i, 1))
		ns := i % benchNamespaces
		w.itemParents = append(w.itemParents, []string{
			fmt.Sprint("kns.ns-", ns), fmt.Sprintf("ksa.ns-%d.sa-%d", ns, i%benchSAs),
		})
	}
	for s := range benchSelectors {
		i := r.IntN(benchItems) // build most selectors around a real pod
		ns, app := i%benchNamespaces, i%benchApps
		var sel string
		switch p := s % 1000; { // shares in per mille
		case p < 550: // Kubernetes NetworkPolicy podSelector, namespaced
			sel = fmt.Sprintf("projectcalico.org/namespace == 'ns-%d' && (projectcalico.org/orchestrator == 'k8s' && app == 'app-%d')", ns, app)
		case p < 700:
			sel = fmt.Sprintf("projectcalico.org/namespace == 'ns-%d' && tier in {'web', 'api'} && version != 'v0'", ns)
		case p < 780:
			sel = fmt.Sprintf("app in {'app-%d', 'app-%d', 'app-%d', 'app-%d'}", app, (app+1)%benchApps, (app+7)%benchApps, (app+100)%benchApps)
		case p < 860: // namespaceSelector && podSelector
			sel = fmt.Sprintf("pcns.team == 'team-%d' && app == 'app-%d'", ns%10, app)
		case p < 920:
			sel = fmt.Sprintf("pcsa.projectcalico.org/name == 'sa-%d' && projectcalico.org/namespace == 'ns-%d'", i%benchSAs, ns)
		case p < 950:
			sel = fmt.Sprintf("projectcalico.org/namespace == 'ns-%d'", ns)
		case p < 990:
			sel = fmt.Sprintf("projectcalico.org/namespace == 'ns-%d' && !has(debug)", ns)
		case p < 992: // indexable only on a common key: every item's candidate
			// app numbers 1000-1999 have four digits, so the prefix is exact.
			sel = fmt.Sprintf("has(tier) && app starts with 'app-%d'", 1000+app%1000)
		case p < 999: // an Or, indexed on both values
			sel = fmt.Sprintf("app == 'app-%d' || (tier == 'db' && app == 'app-%d')", app, (app+3)%benchApps)
		default: // unindexable: re-evaluated on every change
			sel = fmt.Sprintf("!has(skip-%d)", s)
		}
		w.selectors = append(w.selectors, sel)
	}
	return w
}

func (w *benchWorld) build(tb testing.TB) *Index {
	tb.Helper()
	x := NewIndex(nil, nil)
	for id, l := range w.parents {
		x.UpdateParent(id, l)
	}
	for s, src := range w.selectors {
		x.UpdateSelector(fmt.Sprint("sel-", s), MustParse(src))
	}
	for i := range w.itemLabels {
		x.UpdateItemWithParents(fmt.Sprint("pod-", i), w.itemLabels[i], w.itemParents[i])
	}
	return x
}

// BenchmarkIndexItemLabelChange measures one item's label change (its
// version and tier labels flip back and forth) with 10,000 selectors and
// 100,000 items indexed.
func BenchmarkIndexItemLabelChange(b *testing.B) {
	w := newBenchWorld()
	x := w.build(b)
	const pool = 1000
	type change struct {
		id      string
		labels  [2]map[string]string
		parents []string
	}
	changes := make([]change, pool)
	for c := range changes {
		i := c * (benchItems / pool)
		changes[c] = change{fmt.Sprint("pod-", i), [2]map[string]string{itemLabels(i, 2), itemLabels(i, 1)}, w.itemParents[i]}
	}
	var started, stopped int
	x.onStart = func(string, string, any) { started++ }
	x.onStop = func(string, string, any) { stopped++ }
	b.ReportAllocs()
	clock := startCPUClock(b)
	n := 0
	for b.Loop() {
		c := &changes[n%pool]
		x.UpdateItemWithParents(c.id, c.labels[(n/pool)%2], c.parents)
		n++
	}
	clock.report()
	if started+stopped == 0 && n > pool {
		b.Error("no membership changed; the benchmark exercises nothing")
	}
}

// BenchmarkIndexMemory builds 100,000 items × 10,000 selectors and reports
// the live heap it holds (heap-MB, including the label maps and selectors
// it refers to) and the number of (selector, item) matches. Run it with
// -benchtime 1x: one iteration is the whole measurement.
func BenchmarkIndexMemory(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := newBenchWorld() // counted: the index keeps the label maps
		x := w.build(b)
		runtime.GC()
		runtime.ReadMemStats(&after)
		matches := 0
		for i := range x.nItems {
			matches += len(x.item(i).matches)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MB")
		b.ReportMetric(float64(matches), "matches")
		runtime.KeepAlive(x)
		runtime.KeepAlive(w)
	}
}
