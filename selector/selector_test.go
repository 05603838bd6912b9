package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func parseLabels(t *testing.T, at, s string) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%s: bad labels %s: %v", at, s, err)
	}
	return m
}

// layered is a Labels made of own labels over parent labels.
type layered struct{ own, parent map[string]string }

func (l layered) Get(k string) (string, bool) {
	if v, ok := l.own[k]; ok {
		return v, true
	}
	v, ok := l.parent[k]
	return v, ok
}

// TestMatch checks selector × labels → match from testdata/match.txt,
// through Evaluate, EvaluateLabels (plain and layered) and after a
// canonical round trip.
func TestMatch(t *testing.T) {
	const path = "testdata/match.txt"
	cases, _ := readCases(t, path, "sel")
	if len(cases) < 50 {
		t.Fatalf("only %d cases in %s", len(cases), path)
	}
	for _, c := range cases {
		at := where(path, c[0])
		sel, err := Parse(c[0].val)
		if err != nil {
			t.Errorf("%s: Parse(%q): %v", at, c[0].val, err)
			continue
		}
		again, err := Parse(sel.String())
		if err != nil {
			t.Errorf("%s: re-parse of %q: %v", at, sel.String(), err)
			continue
		}
		for _, d := range c[1:] {
			var want bool
			switch d.key {
			case "match":
				want = true
			case "nomatch":
			default:
				t.Fatalf("%s: unknown directive %q", where(path, d), d.key)
			}
			labels := parseLabels(t, where(path, d), d.val)
			// Split the labels between own and parent to exercise
			// layering; the parent also holds a different value for
			// each own key, which must be shadowed.
			own, parent := map[string]string{}, map[string]string{}
			i := 0
			for k, v := range labels {
				if i%2 == 0 {
					own[k] = v
					parent[k] = v + "-shadowed"
				} else {
					parent[k] = v
				}
				i++
			}
			got := map[string]bool{
				"reference":              refEval(sel.root, labels),
				"Evaluate":               sel.Evaluate(labels),
				"EvaluateLabels":         sel.EvaluateLabels(Map(labels)),
				"EvaluateLabels/layered": sel.EvaluateLabels(layered{own, parent}),
				"reparsed":               again.Evaluate(labels),
			}
			for how, g := range got {
				if g != want {
					t.Errorf("%s: %s: %q on %s = %v, want %v", where(path, d), how, c[0].val, d.val, g, want)
				}
			}
		}
	}
}

// TestLayeredOwnWins checks that a label source's own value shadows the
// parent's.
func TestLayeredOwnWins(t *testing.T) {
	sel := MustParse(`role == "db"`)
	l := layered{own: map[string]string{"role": "web"}, parent: map[string]string{"role": "db"}}
	if sel.EvaluateLabels(l) {
		t.Error(`role == "db" matched own role=web over parent role=db`)
	}
	l.own = nil
	if !sel.EvaluateLabels(l) {
		t.Error(`role == "db" did not match parent role=db`)
	}
}

func wantUID(canonical string) string {
	sum := sha256.Sum224([]byte("s:" + canonical))
	return "s:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestCanonical checks canonical forms and unique IDs from
// testdata/canonical.txt (including Calico's published UIDs), round trips,
// and MapKeys when the case gives a prefix.
func TestCanonical(t *testing.T) {
	const path = "testdata/canonical.txt"
	cases, _ := readCases(t, path, "in")
	for _, c := range cases {
		at := where(path, c[0])
		dirs := map[string]string{}
		for _, d := range c[1:] {
			dirs[d.key] = d.val
		}
		out, ok := dirs["out"]
		if !ok {
			t.Fatalf("%s: case has no out:", at)
		}
		sel, err := Parse(c[0].val)
		if err != nil {
			t.Errorf("%s: Parse(%q): %v", at, c[0].val, err)
			continue
		}
		if p, ok := dirs["prefix"]; ok {
			orig := sel.String()
			sel = sel.MapKeys(func(k string) string { return p + k })
			if got := MustParse(c[0].val).String(); got != orig {
				t.Errorf("%s: MapKeys changed the original: %q", at, got)
			}
		}
		if got := sel.String(); got != out {
			t.Errorf("%s: String(%q) = %q, want %q", at, c[0].val, got, out)
		}
		if got, want := sel.UniqueID(), wantUID(out); got != want {
			t.Errorf("%s: UniqueID = %q, want %q", at, got, want)
		}
		if uid, ok := dirs["uid"]; ok && sel.UniqueID() != uid {
			t.Errorf("%s: UniqueID = %q, want Calico's %q", at, sel.UniqueID(), uid)
		}
		reparse := out
		if r, ok := dirs["reparse"]; ok {
			reparse = r
		}
		again, err := Parse(out)
		if err != nil {
			t.Errorf("%s: re-parse %q: %v", at, out, err)
			continue
		}
		if got := again.String(); got != reparse {
			t.Errorf("%s: re-parsed String = %q, want %q", at, got, reparse)
		}
	}
}

// TestBad checks rejected selectors: error type, position and message.
func TestBad(t *testing.T) {
	const path = "testdata/bad.txt"
	cases, lines := readCases(t, path, "bad")
	repl := map[int]string{}
	for _, c := range cases {
		at := where(path, c[0])
		_, err := Parse(c[0].val)
		if err == nil {
			t.Errorf("%s: Parse(%q) succeeded, want error", at, c[0].val)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: error %v is %T, want *ParseError", at, err, err)
			continue
		}
		if pe.Selector != c[0].val || !strings.Contains(err.Error(), strconv.Quote(c[0].val)) {
			t.Errorf("%s: error %q does not name the selector", at, err)
		}
		got := fmt.Sprintf("%d %s", pe.Pos, pe.Msg)
		if len(c) < 2 || c[1].key != "err" {
			if !*rewrite {
				t.Errorf("%s: no err: line; got %q", at, got)
			}
			continue
		}
		repl[c[1].line] = "err: " + got
		wantPos, wantMsg, _ := strings.Cut(c[1].val, " ")
		if strconv.Itoa(pe.Pos) != wantPos || !strings.Contains(pe.Msg, wantMsg) {
			t.Errorf("%s: Parse(%q) error = %q, want position %s and message containing %q", at, c[0].val, got, wantPos, wantMsg)
		}
	}
	rewriteLines(t, path, lines, repl)
}

// TestTokens checks the lexer against testdata/tokens.txt.
func TestTokens(t *testing.T) {
	const path = "testdata/tokens.txt"
	cases, lines := readCases(t, path, "in")
	repl := map[int]string{}
	for _, c := range cases {
		got := tokenDump(c[0].val)
		if len(c) < 2 || c[1].key != "tokens" {
			t.Errorf("%s: no tokens: line; got %q", where(path, c[0]), got)
			continue
		}
		repl[c[1].line] = "tokens: " + got
		if got != c[1].val {
			t.Errorf("%s: tokens of %q:\n got %s\nwant %s", where(path, c[0]), c[0].val, got, c[1].val)
		}
	}
	rewriteLines(t, path, lines, repl)
}

func tokenDump(s string) string {
	l := lexer{s: s}
	var out []string
	for {
		tok, err := l.next()
		if err != nil {
			return "error"
		}
		switch tok.kind {
		case tokLabel:
			out = append(out, "label("+tok.val+")")
		case tokString:
			out = append(out, "string("+tok.val+")")
		case tokHas:
			out = append(out, "has("+tok.val+")")
		case tokEOF:
			return strings.Join(append(out, "EOF"), " ")
		default:
			out = append(out, strings.Trim(tokNames[tok.kind], `"`))
		}
	}
}

func TestLabelLength(t *testing.T) {
	ok := strings.Repeat("k", MaxLabelLength)
	for _, s := range []string{ok + ` == "v"`, "has(" + ok + ")"} {
		if _, err := Parse(s); err != nil {
			t.Errorf("%d-character label: %v", MaxLabelLength, err)
		}
	}
	long := ok + "k"
	for _, s := range []string{long + ` == "v"`, "has(" + long + ")", `a == "b" && ` + long + ` != "c"`} {
		_, err := Parse(s)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "513 characters") {
			t.Errorf("%d-character label: err = %v, want too-long error", MaxLabelLength+1, err)
		}
	}
}

func TestNesting(t *testing.T) {
	nest := func(n int) string {
		return strings.Repeat("!(", n) + "a == 'b'" + strings.Repeat(")", n)
	}
	sel, err := Parse(nest(MaxNesting))
	if err != nil {
		t.Fatalf("%d levels: %v", MaxNesting, err)
	}
	if sel.Evaluate(map[string]string{"a": "b"}) != (MaxNesting%2 == 0) {
		t.Errorf("%d nested negations evaluated wrongly", MaxNesting)
	}
	_, err = Parse(nest(MaxNesting + 1))
	var pe *ParseError
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "nested") || pe.Pos != 2*MaxNesting+2 {
		t.Errorf("%d levels: err = %v, want nesting error at character %d", MaxNesting+1, err, 2*MaxNesting+2)
	}
	if _, err := Parse(strings.Repeat("(", 1_000_000)); err == nil {
		t.Error("a million open parentheses parsed")
	}
}

func TestAPI(t *testing.T) {
	tests := []struct {
		sel                 string
		isGlobal, hasGlobal bool
		isAll               bool
		keys                []string
	}{
		{sel: "global()", isGlobal: true, hasGlobal: true},
		{sel: " ( global( ) ) ", isGlobal: true, hasGlobal: true},
		{sel: "global() && a == 'b'", hasGlobal: true, keys: []string{"a"}},
		{sel: "!global()", hasGlobal: true},
		{sel: "", isAll: true},
		{sel: "all()", isAll: true},
		{sel: "a == 'x' || has(b) && c in {'1'} || !d not in {} || a != 'y'", keys: []string{"a", "b", "c", "d"}},
	}
	for _, tt := range tests {
		s := MustParse(tt.sel)
		got := []any{s.IsGlobal(), s.ContainsGlobal(), s.IsAll(), s.LabelKeys()}
		want := []any{tt.isGlobal, tt.hasGlobal, tt.isAll, tt.keys}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q: [IsGlobal ContainsGlobal IsAll LabelKeys] (-want +got):\n%s", tt.sel, diff)
		}
	}
	if got := All().String(); got != "all()" {
		t.Errorf("All() = %q", got)
	}
	a, b := MustParse("a == 'x' && b == 'y'"), MustParse("c == 'z' || has(d)")
	and := And(a, b)
	want := MustParse("(" + a.String() + ") && (" + b.String() + ")")
	if and.String() != want.String() || and.UniqueID() != want.UniqueID() {
		t.Errorf("And = %q, want %q", and, want)
	}
	if !And(All(), MustParse("global()")).ContainsGlobal() {
		t.Error("And(all(), global()).ContainsGlobal() = false")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("MustParse of a bad selector did not panic")
			}
		}()
		MustParse("a = 'b'")
	}()
}

// TestConcurrentString checks the lazily cached String/UniqueID under the
// race detector.
func TestConcurrentString(t *testing.T) {
	s := MustParse("a in {'x', 'y'} && !has(b)")
	done := make(chan string)
	for range 4 {
		go func() { done <- s.String() + s.UniqueID() }()
	}
	first := <-done
	for range 3 {
		if got := <-done; got != first {
			t.Errorf("concurrent String/UniqueID differ: %q vs %q", got, first)
		}
	}
}
