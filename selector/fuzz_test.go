package selector

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// fuzzLabels are the label sets a fuzzed selector is evaluated against.
var fuzzLabels = []map[string]string{
	nil,
	{"a": "b"},
	{"a": "", "b": "c", "k": "v"},
	{"a": "x", "k8s-app": "web", "projectcalico.org/namespace": "ns1"},
	{"has": "has", "in": "in", "not": "", "contains": "contains"},
	{"k": `"`, "a": "'", "c": "d"},
}

// FuzzParse checks that Parse never panics and that an accepted selector's
// canonical form re-parses to a selector that evaluates the same. The
// canonical form is a fixed point after at most one re-parse: Calico
// renders a negated parenthesised negation "!(!x)" as "!!x", which then
// re-parses as x.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"testdata/match.txt", "testdata/canonical.txt", "testdata/bad.txt", "testdata/corpus.txt"} {
		fh, err := os.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if _, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, "#") {
				f.Add(v)
			}
		}
		fh.Close()
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := Parse(s)
		if err != nil {
			pe, ok := err.(*ParseError)
			if !ok {
				t.Fatalf("Parse(%q): error %T, want *ParseError", s, err)
			}
			if pe.Pos < 1 || pe.Pos > len(s)+1 || pe.Selector != s || pe.Msg == "" {
				t.Fatalf("Parse(%q): bad error %+v", s, pe)
			}
			return
		}
		canon := sel.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) ok but its canonical form %q fails: %v", s, canon, err)
		}
		if got := again.String(); got != canon {
			if !strings.Contains(canon, "!!") {
				t.Fatalf("canonical form of %q is %q, which re-parses as %q", s, canon, got)
			}
			third := MustParse(got)
			if third.String() != got || third.UniqueID() != again.UniqueID() {
				t.Fatalf("canonical form of %q not stable after two re-parses: %q → %q → %q", s, canon, got, third.String())
			}
		} else if again.UniqueID() != sel.UniqueID() {
			t.Fatalf("UniqueID changed on round trip of %q", s)
		}
		if wantUID(canon) != sel.UniqueID() {
			t.Fatalf("UniqueID(%q) = %q, want %q", s, sel.UniqueID(), wantUID(canon))
		}
		for _, l := range fuzzLabels {
			want := refEval(sel.root, l)
			if sel.Evaluate(l) != want || again.Evaluate(l) != want || sel.EvaluateLabels(Map(l)) != want {
				t.Fatalf("%q (canonical %q) on %v: want %v from the reference evaluator", s, canon, l, want)
			}
		}
		mapped := sel.MapKeys(func(k string) string { return "p." + k })
		if _, err := Parse(mapped.String()); err != nil && !strings.Contains(err.Error(), "characters long") {
			t.Fatalf("MapKeys result %q of %q does not parse: %v", mapped.String(), s, err)
		}
	})
}

// refEval is a deliberately naive evaluator of the semantics table (compat
// §1.3): no folded Or, linear set search.
func refEval(n *node, l map[string]string) bool {
	v, ok := l[n.key]
	switch n.op {
	case opAll, opGlobal:
		return true
	case opNot:
		return !refEval(n.kids[0], l)
	case opAnd, opOr:
		for _, k := range n.kids {
			if refEval(k, l) == (n.op == opOr) {
				return n.op == opOr
			}
		}
		return n.op == opAnd
	case opHas:
		return ok
	case opEq:
		return ok && v == n.val
	case opNe:
		return !ok || v != n.val
	case opIn, opNotIn:
		return (ok && slices.Contains(n.set, v)) == (n.op == opIn)
	case opContains:
		return ok && strings.Contains(v, n.val)
	case opStartsWith:
		return ok && strings.HasPrefix(v, n.val)
	case opEndsWith:
		return ok && strings.HasSuffix(v, n.val)
	}
	panic("unknown op")
}
