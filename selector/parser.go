package selector

import (
	"fmt"
	"slices"
	"strings"
)

// ParseError describes why a selector was rejected.
type ParseError struct {
	Selector string // the selector as given
	Pos      int    // 1-based character (byte) position of the problem
	Msg      string // what was wrong there
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("selector %q: at character %d: %s", e.Selector, e.Pos, e.Msg)
}

// MaxNesting is how deep parentheses may nest. Calico has no such limit,
// but its selector fields hold at most 1024 characters, which cannot nest
// deeper; the limit keeps absurd inputs from exhausting the stack.
const MaxNesting = 1024

// Parse parses a selector. The empty or blank selector is all().
func Parse(s string) (*Selector, error) {
	sel := &Selector{}
	p := parser{lex: lexer{s: s}, nodes: sel.inline[:], ptrs: sel.inlineOps[:]}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		sel.root = allNode
		return sel, nil
	}
	root, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf("expected \"&&\", \"||\" or the end of the selector, found %s", p.tok.describe())
	}
	sel.root, sel.global = root, containsOp(root, opGlobal)
	return sel, nil
}

// MustParse is Parse for selectors known to be valid; it panics otherwise.
// Use it only for constants.
func MustParse(s string) *Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// parser is a recursive-descent parser over the lexer's tokens with one
// token of lookahead. To keep Parse to a few allocations it carves nodes
// and operand lists out of slabs (starting with the Selector's own inline
// nodes) and gathers operands and set values in stack buffers.
type parser struct {
	lex   lexer
	tok   token
	nodes []node  // unused nodes
	chunk int     // size of the last node slab
	depth int     // open parentheses
	ptrs  []*node // unused operand slots
}

func (p *parser) newNode(n node) *node {
	if len(p.nodes) == 0 {
		p.chunk = min(max(2*p.chunk, 4), 128)
		p.nodes = make([]node, p.chunk)
	}
	nd := &p.nodes[0]
	p.nodes = p.nodes[1:]
	*nd = n
	return nd
}

// operands returns a copy of src carved from the operand slab.
func (p *parser) operands(src []*node) []*node {
	if len(p.ptrs) < len(src) {
		p.ptrs = make([]*node, max(len(src), 8))
	}
	out := p.ptrs[:len(src):len(src)]
	p.ptrs = p.ptrs[len(src):]
	copy(out, src)
	return out
}

func (p *parser) advance() error {
	t, err := p.lex.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) errorf(format string, args ...any) error {
	return &ParseError{Selector: p.lex.s, Pos: p.tok.pos + 1, Msg: fmt.Sprintf(format, args...)}
}

// parseOr parses andExpr ("||" andExpr)*. A single operand is returned
// as is; two or more make an Or node (never flattened into a parent Or).
func (p *parser) parseOr() (*node, error) {
	first, err := p.parseAnd()
	if err != nil || p.tok.kind != tokOr {
		return first, err
	}
	var buf [8]*node
	ops := append(buf[:0], first)
	for p.tok.kind == tokOr {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		ops = append(ops, n)
	}
	n := p.newNode(node{})
	fillOr(n, p.operands(ops))
	return n, nil
}

func (p *parser) parseAnd() (*node, error) {
	first, err := p.parseUnary()
	if err != nil || p.tok.kind != tokAnd {
		return first, err
	}
	var buf [8]*node
	ops := append(buf[:0], first)
	for p.tok.kind == tokAnd {
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		ops = append(ops, n)
	}
	return p.newNode(node{op: opAnd, kids: p.operands(ops)}), nil
}

// parseUnary folds a run of "!" into at most one negation, as Calico does.
func (p *parser) parseUnary() (*node, error) {
	negated := false
	for p.tok.kind == tokNot {
		negated = !negated
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	n, err := p.parsePrimary()
	if err != nil || !negated {
		return n, err
	}
	return p.newNode(node{op: opNot, kids: p.operands([]*node{n})}), nil
}

func (p *parser) parsePrimary() (*node, error) {
	t := p.tok
	switch t.kind {
	case tokHas, tokAll, tokGlobal:
		if err := p.advance(); err != nil {
			return nil, err
		}
		switch t.kind {
		case tokHas:
			return p.newNode(node{op: opHas, key: t.val}), nil
		case tokAll:
			return allNode, nil
		}
		return globalNode, nil
	case tokLParen:
		if p.depth++; p.depth > MaxNesting {
			return nil, p.errorf("parentheses nested more than %d deep", MaxNesting)
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		p.depth--
		if p.tok.kind != tokRParen {
			return nil, p.errorf("expected \")\" to close the \"(\" at character %d, found %s", t.pos+1, p.tok.describe())
		}
		return n, p.advance()
	case tokLabel:
		return p.parseComparison()
	case tokString:
		return nil, p.errorf("a comparison must be label OP literal; found %s where a label was expected", t.describe())
	}
	return nil, p.errorf("expected a label, has(…), all(), global(), \"!\" or \"(\", found %s", t.describe())
}

// parseComparison parses label OP literal, with p.tok on the label.
func (p *parser) parseComparison() (*node, error) {
	key := p.tok.val
	if err := p.advance(); err != nil {
		return nil, err
	}
	opTok := p.tok
	var o op
	switch opTok.kind {
	case tokEq:
		o = opEq
	case tokNe:
		o = opNe
	case tokContains:
		o = opContains
	case tokStartsWith:
		o = opStartsWith
	case tokEndsWith:
		o = opEndsWith
	case tokIn, tokNotIn:
		return p.parseSet(key, opTok.kind == tokNotIn)
	default:
		hint := ""
		if opTok.kind == tokLParen && (key == "has" || key == "all" || key == "global") {
			hint = fmt.Sprintf(" (write %s( with no space before the parenthesis)", key)
		}
		return nil, p.errorf("expected an operator %s after label %q, found %s%s", operatorList, key, opTok.describe(), hint)
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokString {
		return nil, p.errorf("expected a quoted string after %s, found %s", opTok.describe(), p.tok.describe())
	}
	val := p.tok.val
	if err := p.advance(); err != nil {
		return nil, err
	}
	return p.newNode(node{op: o, key: key, val: val}), nil
}

func (p *parser) parseSet(key string, negated bool) (*node, error) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind != tokLBrace {
		return nil, p.errorf("expected a set literal {\"…\", …} after \"in\", found %s", p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	var buf [16]string
	vals := buf[:0]
	if n := estimateSetSize(p.lex.s[p.tok.pos:]); n > len(buf) {
		vals = make([]string, 0, n)
	}
	for p.tok.kind == tokString {
		vals = append(vals, p.tok.val)
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokComma {
			break
		}
		if err := p.advance(); err != nil {
			return nil, err
		}
	}
	if p.tok.kind != tokRBrace {
		return nil, p.errorf("expected a quoted string, \",\" or \"}\" in set literal, found %s", p.tok.describe())
	}
	if err := p.advance(); err != nil {
		return nil, err
	}
	o := opIn
	if negated {
		o = opNotIn
	}
	if cap(vals) > len(buf) { // already on the heap: sort in place
		if !slices.IsSorted(vals) {
			slices.Sort(vals)
		}
		vals = slices.Clip(slices.Compact(vals))
	} else {
		vals = sortedSet(vals)
	}
	return p.newNode(node{op: o, key: key, set: vals}), nil
}

// estimateSetSize guesses how many values a set literal starting at s
// holds (half the quotes before the first "}"), to size the value list.
func estimateSetSize(s string) int {
	if end := strings.IndexByte(s, '}'); end >= 0 {
		s = s[:end]
	}
	return (strings.Count(s, `"`) + strings.Count(s, "'")) / 2
}

// sortedSet returns the sorted, deduplicated values in a new exact-size
// slice (nil when empty).
func sortedSet(vals []string) []string {
	if !slices.IsSorted(vals) {
		slices.Sort(vals)
	}
	vals = slices.Compact(vals)
	if len(vals) == 0 {
		return nil
	}
	return slices.Clone(vals)
}
