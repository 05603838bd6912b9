package calc

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/brindle-net/brindle/selector"
)

func TestRequirements(t *testing.T) {
	for _, tc := range []struct {
		sel  string
		want []string // "key=v1|v2"
	}{
		{`a == "x"`, []string{"a=x"}},
		{`a == "x" && b in {"p", "q"}`, []string{"a=x", "b=p|q"}},
		{`(a == "x" && b == "y") && c == "z"`, []string{"a=x", "b=y", "c=z"}},
		{`a == "x" || b == "y"`, nil},
		{`!a == "x"`, nil},
		{`!(a == "x" && b == "y")`, nil},
		{`has(a)`, nil},
		{`all()`, nil},
		{`a != "x"`, nil},
		{`a not in {"x"}`, nil},
		{`a contains "x"`, nil},
		{`a == "x && b == 'y'"`, []string{"a=x && b == 'y'"}},
		{`a == 'say "hi" && (go)'`, []string{`a=say "hi" && (go)`}},
		{`(a == "(" || b == ")") && c == "z"`, []string{"c=z"}},
		{`projectcalico.org/namespace == 'ns1' && (app == 'web' || app == 'api')`, []string{"projectcalico.org/namespace=ns1"}},
		{`a in {}`, nil},
	} {
		var got []string
		for _, r := range requirements(selector.MustParse(tc.sel)) {
			got = append(got, r.key+"="+strings.Join(r.values, "|"))
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("requirements(%s) (-want +got):\n%s", tc.sel, diff)
		}
	}
}

// TestRequirementsImplied checks, over random selectors and label sets,
// that every requirement returned holds for every label set the selector
// matches — the property the label index relies on.
func TestRequirementsImplied(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "b", "c"}
	vals := []string{"x", "y", "x && a == 'y'", "(y)", `say "hi"`, "a || b"}
	quote := func(v string) string {
		if strings.Contains(v, `"`) {
			return "'" + v + "'"
		}
		return `"` + v + `"`
	}
	var gen func(depth int) string
	gen = func(depth int) string {
		k := keys[rng.IntN(len(keys))]
		v := vals[rng.IntN(len(vals))]
		n := rng.IntN(9)
		if depth > 3 {
			n = rng.IntN(5)
		}
		switch n {
		case 0:
			return k + " == " + quote(v)
		case 1:
			return k + " in {" + quote(v) + ", " + quote(vals[rng.IntN(len(vals))]) + "}"
		case 2:
			return "has(" + k + ")"
		case 3:
			return k + " != " + quote(v)
		case 4:
			return k + " not in {" + quote(v) + "}"
		case 5:
			return "!(" + gen(depth+1) + ")"
		case 6, 7:
			return "(" + gen(depth+1) + ") && (" + gen(depth+1) + ")"
		default:
			return "(" + gen(depth+1) + ") || (" + gen(depth+1) + ")"
		}
	}
	withReqs := 0
	for range 3000 {
		src := gen(0)
		sel, err := selector.Parse(src)
		if err != nil {
			t.Fatalf("generated selector %q does not parse: %v", src, err)
		}
		reqs := requirements(sel)
		if len(reqs) > 0 {
			withReqs++
		}
		for range 50 {
			labels := map[string]string{}
			for _, k := range keys {
				if rng.IntN(3) > 0 {
					labels[k] = vals[rng.IntN(len(vals))]
				}
			}
			if !sel.Evaluate(labels) {
				continue
			}
			for _, r := range reqs {
				v, ok := labels[r.key]
				if !ok || !slices.Contains(r.values, v) {
					t.Fatalf("selector %s matches %v but requirement %s in %q fails", sel, labels, r.key, r.values)
				}
			}
		}
	}
	if withReqs < 300 {
		t.Errorf("only %d of 3000 random selectors had requirements; the generator is too weak", withReqs)
	}
}
