package selector

import (
	"encoding/json"
	"testing"
)

func loadCorpus(tb testing.TB) (sels []string, labels []map[string]string) {
	tb.Helper()
	cases, _ := readCases(tb, "testdata/corpus.txt", "")
	for _, d := range cases[0] {
		switch d.key {
		case "sel":
			sels = append(sels, d.val)
		case "labels":
			var m map[string]string
			if err := json.Unmarshal([]byte(d.val), &m); err != nil {
				tb.Fatalf("corpus labels %s: %v", d.val, err)
			}
			labels = append(labels, m)
		}
	}
	if len(sels) == 0 || len(labels) == 0 {
		tb.Fatal("empty corpus")
	}
	return sels, labels
}

// TestCorpus checks the benchmark corpus parses, so a broken corpus fails
// tests rather than only benchmarks.
func TestCorpus(t *testing.T) {
	sels, _ := loadCorpus(t)
	for _, s := range sels {
		if _, err := Parse(s); err != nil {
			t.Error(err)
		}
	}
}

// longSelector is the length from which a corpus selector counts as long
// (the || chains and big sets).
const longSelector = 200

// BenchmarkParse reports the average time to parse one selector over the
// whole corpus, and separately over its typical and its long selectors.
func BenchmarkParse(b *testing.B) {
	sels, _ := loadCorpus(b)
	groups := map[string][]string{"corpus": sels}
	for _, s := range sels {
		g := "typical"
		if len(s) >= longSelector {
			g = "long"
		}
		groups[g] = append(groups[g], s)
	}
	for _, name := range []string{"corpus", "typical", "long"} {
		group := groups[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			clock := startCPUClock(b)
			i := 0
			for b.Loop() {
				if _, err := Parse(group[i]); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(group) {
					i = 0
				}
			}
			clock.report()
		})
	}
}

// BenchmarkEvaluate reports the average time of one Evaluate over every
// corpus selector × label set pair.
func BenchmarkEvaluate(b *testing.B) {
	sels, labels := loadCorpus(b)
	type pair struct {
		s *Selector
		l map[string]string
	}
	var pairs []pair
	for _, s := range sels {
		sel := MustParse(s)
		for _, l := range labels {
			pairs = append(pairs, pair{sel, l})
		}
	}
	b.ReportAllocs()
	clock := startCPUClock(b)
	i, n := 0, 0
	for b.Loop() {
		p := pairs[i]
		if p.s.Evaluate(p.l) {
			n++
		}
		if i++; i == len(pairs) {
			i = 0
		}
	}
	clock.report()
	if n == 0 {
		b.Fatal("nothing matched")
	}
}

// BenchmarkEvaluateLabels is BenchmarkEvaluate through the Labels
// interface.
func BenchmarkEvaluateLabels(b *testing.B) {
	sels, labels := loadCorpus(b)
	var ss []*Selector
	for _, s := range sels {
		ss = append(ss, MustParse(s))
	}
	var ls []Labels
	for _, l := range labels {
		ls = append(ls, Map(l))
	}
	b.ReportAllocs()
	i, j := 0, 0
	for b.Loop() {
		ss[i].EvaluateLabels(ls[j])
		if i++; i == len(ss) {
			i = 0
			if j++; j == len(ls) {
				j = 0
			}
		}
	}
}

// BenchmarkStringUniqueID reports canonicalising and hashing a fresh
// selector (the per-selector cost on first use as an IP-set ID).
func BenchmarkStringUniqueID(b *testing.B) {
	sels, _ := loadCorpus(b)
	var ss []*Selector
	for _, s := range sels {
		ss = append(ss, MustParse(s))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := newSelector(ss[i].root)
		_ = s.UniqueID()
		if i++; i == len(ss) {
			i = 0
		}
	}
}
