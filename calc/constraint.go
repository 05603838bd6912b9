package calc

import (
	"strings"

	"github.com/brindle-net/brindle/selector"
)

// requirement is a label a selector cannot match without: every item the
// selector matches has label key with one of values. The label index uses
// requirements to find candidate items for a selector (instead of scanning
// every item) and candidate selectors for an item.
type requirement struct {
	key    string
	values []string
}

// requirements returns the requirements of s: the `k == "v"` and
// `k in {...}` terms that are conjuncts of the whole selector (at any depth
// of nested &&, never under || or !). It reads them off the canonical form,
// which is unambiguous: values are quoted and contain no quote of the kind
// that encloses them, And and Or groups are parenthesised, and each
// comparison renders as `key OP literal`. A selector with none (all(),
// has(k), a disjunction, ...) returns nil and is matched by scanning.
//
// It only ever under-reports: a term is returned only when it parses
// exactly, so a requirement is always implied by the selector
// (TestRequirementsImplied checks this on random selectors).
func requirements(s *selector.Selector) []requirement {
	var out []requirement
	collectConjuncts(s.String(), &out)
	return out
}

func collectConjuncts(s string, out *[]requirement) {
	if inner, ok := stripParens(s); ok {
		parts, isOr := splitTopLevel(inner)
		if isOr {
			return
		}
		for _, p := range parts {
			collectConjuncts(p, out)
		}
		return
	}
	if r, ok := parseLeaf(s); ok {
		*out = append(*out, r)
	}
}

// stripParens returns the inside of s when s is "(...)" with the opening
// parenthesis matched by the final one.
func stripParens(s string) (string, bool) {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return "", false
	}
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 && i != len(s)-1 {
				return "", false
			}
		}
	}
	return s[1 : len(s)-1], depth == 0 && quote == 0
}

// splitTopLevel splits s on " && " outside quotes and parentheses. isOr
// reports a " || " at the top level (then s is a disjunction).
func splitTopLevel(s string) (parts []string, isOr bool) {
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(' || c == '{':
			depth++
		case c == ')' || c == '}':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], " || "):
			return nil, true
		case depth == 0 && strings.HasPrefix(s[i:], " && "):
			parts = append(parts, s[start:i])
			i += len(" && ") - 1
			start = i + 1
		}
	}
	return append(parts, s[start:]), false
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '/' || c == '-'
}

// parseLeaf recognises exactly `key == "v"` and `key in {"a", "b"}`.
func parseLeaf(s string) (requirement, bool) {
	i := 0
	for i < len(s) && isKeyChar(s[i]) {
		i++
	}
	if i == 0 {
		return requirement{}, false
	}
	key, rest := s[:i], s[i:]
	switch {
	case strings.HasPrefix(rest, " == "):
		v, tail, ok := quoted(rest[len(" == "):])
		if !ok || tail != "" {
			return requirement{}, false
		}
		return requirement{key: key, values: []string{v}}, true
	case strings.HasPrefix(rest, " in {"):
		rest = rest[len(" in {"):]
		var vals []string
		for {
			v, tail, ok := quoted(rest)
			if !ok {
				return requirement{}, false
			}
			vals = append(vals, v)
			switch {
			case tail == "}":
				return requirement{key: key, values: vals}, true
			case strings.HasPrefix(tail, ", "):
				rest = tail[2:]
			default:
				return requirement{}, false
			}
		}
	}
	return requirement{}, false
}

// quoted reads one quoted literal at the start of s.
func quoted(s string) (val, tail string, ok bool) {
	if len(s) < 2 || (s[0] != '"' && s[0] != '\'') {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", false
	}
	return s[1 : 1+end], s[2+end:], true
}
