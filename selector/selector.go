package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"sync/atomic"
)

type op uint8

const (
	opAll op = iota
	opGlobal
	opHas
	opEq
	opNe
	opIn
	opNotIn
	opContains
	opStartsWith
	opEndsWith
	opNot
	opAnd
	opOr
)

// linearSetMax is the largest "in" set searched linearly; bigger sets are
// binary searched (a hash set would cost more to build at parse time than
// it saves at evaluation).
const linearSetMax = 8

// node is one AST node. Nodes are immutable once built and may be shared
// between selectors.
type node struct {
	op   op
	key  string   // label key (has, comparisons, folded or)
	val  string   // literal (==, !=, contains, starts/ends with)
	set  []string // sorted, deduplicated (in, not in, folded or)
	kids []*node  // operands (not: exactly one; and/or: two or more)
}

// minOrEqFold is the shortest Or of "k == v" terms on one key that is
// evaluated as a single lookup of k in a set (see newOr).
const minOrEqFold = 3

// fillOr makes n an Or node of kids. When every operand is k == v on the
// same key k, it also records k and the sorted values in key and set, so
// evaluation does one label lookup instead of one per operand. Rendering
// always uses kids, so the canonical form is unaffected.
func fillOr(n *node, kids []*node) {
	*n = node{op: opOr, kids: kids}
	if len(kids) < minOrEqFold {
		return
	}
	for _, k := range kids {
		if k.op != opEq || k.key != kids[0].key {
			return
		}
	}
	vals := make([]string, len(kids))
	for i, k := range kids {
		vals[i] = k.val
	}
	if !slices.IsSorted(vals) {
		slices.Sort(vals)
	}
	n.key, n.set = kids[0].key, slices.Clip(slices.Compact(vals))
}

var (
	allNode    = &node{op: opAll}
	globalNode = &node{op: opGlobal}
)

// Selector is a parsed selector. It is immutable and safe for concurrent
// use; it must not be copied after first use.
type Selector struct {
	root   *node
	canon  atomic.Pointer[string]
	uid    atomic.Pointer[string]
	global bool // some node is global()
	// Parse's first nodes and operand slots: a selector of up to three
	// terms needs no other allocation.
	inline    [3]node
	inlineOps [2]*node
}

func newSelector(root *node) *Selector {
	return &Selector{root: root, global: containsOp(root, opGlobal)}
}

func containsOp(n *node, o op) bool {
	if n.op == o {
		return true
	}
	for _, k := range n.kids {
		if containsOp(k, o) {
			return true
		}
	}
	return false
}

// All returns the selector all(), which matches everything.
func All() *Selector { return &Selector{root: allNode} }

// And returns a selector matching what both a and b match. It is exactly
// what Parse("(" + a.String() + ") && (" + b.String() + ")") returns: an And
// node of the two roots, neither flattened nor simplified.
func And(a, b *Selector) *Selector {
	return newSelector(&node{op: opAnd, kids: []*node{a.root, b.root}})
}

// IsGlobal reports whether the whole selector is exactly global().
func (s *Selector) IsGlobal() bool { return s.root.op == opGlobal }

// ContainsGlobal reports whether global() appears anywhere in the selector.
// Parse accepts it anywhere; callers enforce where it is allowed.
func (s *Selector) ContainsGlobal() bool { return s.global }

// IsAll reports whether the selector is exactly all() (including the empty
// selector).
func (s *Selector) IsAll() bool { return s.root.op == opAll }

// MapKeys returns a copy of s with every label key k replaced by f(k), as
// Calico's prefix visitor does when it scopes a namespaceSelector
// (team == "a" becomes pcns.team == "a"). f must return valid label keys
// for the result to re-parse.
func (s *Selector) MapKeys(f func(key string) string) *Selector {
	return newSelector(mapKeys(s.root, f))
}

func mapKeys(n *node, f func(string) string) *node {
	switch n.op {
	case opAll, opGlobal:
		return n
	case opNot, opAnd, opOr:
		kids := make([]*node, len(n.kids))
		for i, k := range n.kids {
			kids[i] = mapKeys(k, f)
		}
		c := &node{op: n.op, kids: kids}
		if n.op == opOr {
			fillOr(c, kids)
		}
		return c
	}
	c := *n // set is immutable and shared
	c.key = f(n.key)
	return &c
}

// LabelKeys returns the sorted, deduplicated label keys the selector
// mentions.
func (s *Selector) LabelKeys() []string {
	var keys []string
	var walk func(n *node)
	walk = func(n *node) {
		if n.key != "" && n.op != opOr {
			keys = append(keys, n.key)
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(s.root)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// String returns Calico's canonical form of the selector.
func (s *Selector) String() string {
	if p := s.canon.Load(); p != nil {
		return *p
	}
	var b strings.Builder
	writeNode(&b, s.root)
	str := b.String()
	s.canon.Store(&str)
	return str
}

// UniqueID returns "s:" + base64url_nopad(SHA-224("s:" + String())). Two
// selectors are the same selector iff their unique IDs are equal.
func (s *Selector) UniqueID() string {
	if p := s.uid.Load(); p != nil {
		return *p
	}
	id := makeUniqueID("s", s.String())
	s.uid.Store(&id)
	return id
}

func makeUniqueID(prefix, content string) string {
	sum := sha256.Sum224([]byte(prefix + ":" + content))
	return prefix + ":" + base64.RawURLEncoding.EncodeToString(sum[:])
}

func writeQuoted(b *strings.Builder, v string) {
	q := byte('"')
	if strings.IndexByte(v, '"') >= 0 {
		q = '\''
	}
	b.WriteByte(q)
	b.WriteString(v)
	b.WriteByte(q)
}

var opText = [...]string{
	opEq:         " == ",
	opNe:         " != ",
	opContains:   " contains ",
	opStartsWith: " starts with ",
	opEndsWith:   " ends with ",
	opIn:         " in {",
	opNotIn:      " not in {",
	opAnd:        " && ",
	opOr:         " || ",
}

func writeNode(b *strings.Builder, n *node) {
	switch n.op {
	case opAll:
		b.WriteString("all()")
	case opGlobal:
		b.WriteString("global()")
	case opHas:
		b.WriteString("has(")
		b.WriteString(n.key)
		b.WriteByte(')')
	case opEq, opNe, opContains, opStartsWith, opEndsWith:
		b.WriteString(n.key)
		b.WriteString(opText[n.op])
		writeQuoted(b, n.val)
	case opIn, opNotIn:
		b.WriteString(n.key)
		b.WriteString(opText[n.op])
		for i, v := range n.set {
			if i > 0 {
				b.WriteString(", ")
			}
			writeQuoted(b, v)
		}
		b.WriteByte('}')
	case opNot:
		b.WriteByte('!')
		writeNode(b, n.kids[0])
	case opAnd, opOr:
		b.WriteByte('(')
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(opText[n.op])
			}
			writeNode(b, k)
		}
		b.WriteByte(')')
	}
}
