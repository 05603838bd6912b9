package selector

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLabelLength is the longest label key the language accepts.
const MaxLabelLength = 512

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokLabel
	tokString
	tokLBrace
	tokRBrace
	tokComma
	tokEq
	tokNe
	tokIn
	tokNotIn
	tokNot
	tokContains
	tokStartsWith
	tokEndsWith
	tokAll
	tokHas
	tokGlobal
	tokLParen
	tokRParen
	tokAnd
	tokOr
)

var tokNames = [...]string{
	tokEOF:        "end of selector",
	tokLabel:      "label",
	tokString:     "string",
	tokLBrace:     `"{"`,
	tokRBrace:     `"}"`,
	tokComma:      `","`,
	tokEq:         `"=="`,
	tokNe:         `"!="`,
	tokIn:         `"in"`,
	tokNotIn:      `"not in"`,
	tokNot:        `"!"`,
	tokContains:   `"contains"`,
	tokStartsWith: `"starts with"`,
	tokEndsWith:   `"ends with"`,
	tokAll:        `"all()"`,
	tokHas:        `"has(…)"`,
	tokGlobal:     `"global()"`,
	tokLParen:     `"("`,
	tokRParen:     `")"`,
	tokAnd:        `"&&"`,
	tokOr:         `"||"`,
}

type token struct {
	kind tokKind
	pos  int    // byte offset of the token's first character
	val  string // label key or string literal contents
}

func (t token) describe() string {
	switch t.kind {
	case tokLabel:
		return fmt.Sprintf("label %q", t.val)
	case tokString:
		return fmt.Sprintf("string %q", t.val)
	case tokHas:
		return fmt.Sprintf(`"has(%s)"`, t.val)
	}
	return tokNames[t.kind]
}

// lexer produces tokens on demand. It reproduces Calico's tokenizer: the
// only context it needs is whether the previous token was a label, because
// operator keywords are recognised only there.
type lexer struct {
	s         string
	pos       int
	afterLbl  bool
	lastToken token
}

func isIdentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '/' || c == '-'
}

func (l *lexer) skipSpace() {
	for l.pos < len(l.s) && (l.s[l.pos] == ' ' || l.s[l.pos] == '\t') {
		l.pos++
	}
}

// next returns the next token or a *ParseError.
func (l *lexer) next() (token, error) {
	t, err := l.scan()
	if err == nil {
		l.afterLbl = t.kind == tokLabel
		l.lastToken = t
	}
	return t, err
}

func (l *lexer) errAt(pos int, format string, args ...any) error {
	return &ParseError{Selector: l.s, Pos: pos + 1, Msg: fmt.Sprintf(format, args...)}
}

func (l *lexer) scan() (token, error) {
	l.skipSpace()
	start := l.pos
	if start >= len(l.s) {
		return token{kind: tokEOF, pos: start}, nil
	}
	simple := func(k tokKind, n int) (token, error) {
		l.pos += n
		return token{kind: k, pos: start}, nil
	}
	rest := l.s[start:]
	switch c := rest[0]; c {
	case '(':
		return simple(tokLParen, 1)
	case ')':
		return simple(tokRParen, 1)
	case '{':
		return simple(tokLBrace, 1)
	case '}':
		return simple(tokRBrace, 1)
	case ',':
		return simple(tokComma, 1)
	case '"', '\'':
		end := strings.IndexByte(rest[1:], c)
		if end < 0 {
			return token{}, l.errAt(start, "unterminated string: no closing %c", c)
		}
		l.pos += end + 2
		return token{kind: tokString, pos: start, val: rest[1 : end+1]}, nil
	case '=':
		if strings.HasPrefix(rest, "==") {
			return simple(tokEq, 2)
		}
		return token{}, l.errAt(start, `expected "==" (a single "=" is not an operator)`)
	case '!':
		if strings.HasPrefix(rest, "!=") {
			return simple(tokNe, 2)
		}
		return simple(tokNot, 1)
	case '&':
		if strings.HasPrefix(rest, "&&") {
			return simple(tokAnd, 2)
		}
		return token{}, l.errAt(start, `expected "&&" (a single "&" is not an operator)`)
	case '|':
		if strings.HasPrefix(rest, "||") {
			return simple(tokOr, 2)
		}
		return token{}, l.errAt(start, `expected "||" (a single "|" is not an operator)`)
	}
	if l.afterLbl {
		return l.scanOperator(start)
	}
	for _, fn := range [...]struct {
		prefix string
		kind   tokKind
	}{{"has(", tokHas}, {"all(", tokAll}, {"global(", tokGlobal}} {
		if !strings.HasPrefix(rest, fn.prefix) {
			continue
		}
		l.pos += len(fn.prefix)
		l.skipSpace()
		var key string
		if fn.kind == tokHas {
			keyPos := l.pos
			var err error
			if key, err = l.scanIdent(); err != nil {
				return token{}, err
			}
			if key == "" {
				return token{}, l.errAt(keyPos, "expected a label name inside has(…)")
			}
			l.skipSpace()
		}
		if l.pos >= len(l.s) || l.s[l.pos] != ')' {
			return token{}, l.errAt(l.pos, "expected \")\" to close %s", strings.TrimSuffix(fn.prefix, "("))
		}
		l.pos++
		return token{kind: fn.kind, pos: start, val: key}, nil
	}
	key, err := l.scanIdent()
	if err != nil {
		return token{}, err
	}
	if key == "" {
		return token{}, l.errAt(start, "unexpected character %s", quoteChar(l.s, start))
	}
	return token{kind: tokLabel, pos: start, val: key}, nil
}

// scanIdent consumes a maximal run of label characters; it may be empty.
func (l *lexer) scanIdent() (string, error) {
	start := l.pos
	for l.pos < len(l.s) && isIdentChar(l.s[l.pos]) {
		l.pos++
	}
	if l.pos-start > MaxLabelLength {
		return "", l.errAt(start, "label is %d characters long; the limit is %d", l.pos-start, MaxLabelLength)
	}
	return l.s[start:l.pos], nil
}

// scanOperator recognises the keyword operators that may follow a label.
// Two-word operators may be written with any run of blanks, or none,
// between the words; the last word must end at a non-label character.
func (l *lexer) scanOperator(start int) (token, error) {
	for _, op := range [...]struct {
		words [2]string
		kind  tokKind
	}{
		{[2]string{"contains"}, tokContains},
		{[2]string{"starts", "with"}, tokStartsWith},
		{[2]string{"ends", "with"}, tokEndsWith},
		{[2]string{"not", "in"}, tokNotIn},
		{[2]string{"in"}, tokIn},
	} {
		p, ok := start, true
		for _, w := range op.words {
			if w == "" {
				break
			}
			if !strings.HasPrefix(l.s[p:], w) {
				ok = false
				break
			}
			p += len(w)
			if op.words[1] != "" && w == op.words[0] {
				for p < len(l.s) && (l.s[p] == ' ' || l.s[p] == '\t') {
					p++
				}
			}
		}
		if ok && (p == len(l.s) || !isIdentChar(l.s[p])) {
			l.pos = p
			return token{kind: op.kind, pos: start}, nil
		}
	}
	return token{}, l.errAt(start, "expected an operator %s after label %q, found %s",
		operatorList, l.lastToken.val, quoteChar(l.s, start))
}

const operatorList = "(==, !=, in, not in, contains, starts with, ends with)"

// quoteChar quotes the word (up to 16 label characters) or the single
// character at pos, for error messages.
func quoteChar(s string, pos int) string {
	if !isIdentChar(s[pos]) {
		r, _ := utf8.DecodeRuneInString(s[pos:])
		return strconv.QuoteRune(r)
	}
	end := pos + 1
	for end < len(s) && end-pos < 16 && isIdentChar(s[end]) {
		end++
	}
	return strconv.Quote(s[pos:end])
}
