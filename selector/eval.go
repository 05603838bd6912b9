package selector

import (
	"slices"
	"strings"
)

// Labels is a source of labels. Get reports a label's value and whether it
// is present. An endpoint's labels are typically its own labels layered
// over its profiles' labels, with its own winning; implementing Labels
// lets a selector see that merge without building a map.
type Labels interface {
	Get(key string) (value string, ok bool)
}

// Map adapts a plain map to Labels.
type Map map[string]string

// Get implements Labels.
func (m Map) Get(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// Evaluate reports whether the selector matches labels. A nil map is an
// item with no labels. It does not allocate.
func (s *Selector) Evaluate(labels map[string]string) bool {
	return evalMap(s.root, labels)
}

// EvaluateLabels is Evaluate over a label source.
func (s *Selector) EvaluateLabels(labels Labels) bool {
	return evalLabels(s.root, labels)
}

func (n *node) setContains(v string) bool {
	if len(n.set) > linearSetMax {
		_, ok := slices.BinarySearch(n.set, v)
		return ok
	}
	for _, s := range n.set {
		if s == v {
			return true
		}
	}
	return false
}

// compare evaluates a leaf comparison given the label's value and presence.
func (n *node) compare(v string, ok bool) bool {
	switch n.op {
	case opHas:
		return ok
	case opEq:
		return ok && v == n.val
	case opNe:
		return !ok || v != n.val
	case opIn:
		return ok && n.setContains(v)
	case opNotIn:
		return !ok || !n.setContains(v)
	case opContains:
		return ok && strings.Contains(v, n.val)
	case opStartsWith:
		return ok && strings.HasPrefix(v, n.val)
	case opEndsWith:
		return ok && strings.HasSuffix(v, n.val)
	}
	return false
}

func evalMap(n *node, m map[string]string) bool {
	switch n.op {
	case opAll, opGlobal:
		return true
	case opNot:
		return !evalMap(n.kids[0], m)
	case opAnd:
		for _, k := range n.kids {
			if !evalMap(k, m) {
				return false
			}
		}
		return true
	case opOr:
		if n.key != "" {
			v, ok := m[n.key]
			return ok && n.setContains(v)
		}
		for _, k := range n.kids {
			if evalMap(k, m) {
				return true
			}
		}
		return false
	case opEq:
		v, ok := m[n.key]
		return ok && v == n.val
	}
	v, ok := m[n.key]
	return n.compare(v, ok)
}

func evalLabels(n *node, l Labels) bool {
	switch n.op {
	case opAll, opGlobal:
		return true
	case opNot:
		return !evalLabels(n.kids[0], l)
	case opAnd:
		for _, k := range n.kids {
			if !evalLabels(k, l) {
				return false
			}
		}
		return true
	case opOr:
		if n.key != "" {
			v, ok := l.Get(n.key)
			return ok && n.setContains(v)
		}
		for _, k := range n.kids {
			if evalLabels(k, l) {
				return true
			}
		}
		return false
	}
	v, ok := l.Get(n.key)
	return n.compare(v, ok)
}
