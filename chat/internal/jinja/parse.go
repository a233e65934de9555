package jinja

import (
	"strconv"
)

// node is a statement of the template.
type node interface{}

type (
	textNode   struct{ s string }
	outputNode struct{ e expr }
	ifNode     struct {
		conds  []expr
		bodies [][]node
		els    []node
	}
	forNode struct {
		vars       []string
		iter, cond expr
		body, els  []node
		line       int
	}
	setNode struct {
		name, attr string // set name = …, or set name.attr = …
		vars       []string
		e          expr
		body       []node // set name %}…{% endset
		block      bool   // the value is body's output
	}
	macroNode struct {
		name   string
		params []string
		defs   []expr // defaults, nil where none
		body   []node
	}
	loopCtl  struct{ brk bool }
	callNode struct { // {% call m(…) %}body{% endcall %}
		call expr
		body []node
	}
	filterNode struct {
		f    *filterExpr
		body []node
	}
)

// expr is an expression; line is where it stands.
type expr interface{ at() int }

type (
	literal struct {
		v    any
		line int
	}
	nameExpr struct {
		n    string
		line int
	}
	attrExpr struct {
		x    expr
		name string
		line int
	}
	indexExpr struct {
		x, i expr
		line int
	}
	sliceExpr struct {
		x, lo, hi, step expr
		line            int
	}
	callExpr struct {
		f    expr
		args []expr
		kw   []kwarg
		line int
	}
	filterExpr struct {
		x    expr // nil inside a filter block
		name string
		args []expr
		kw   []kwarg
		line int
	}
	testExpr struct {
		x    expr
		name string
		args []expr
		neg  bool
		line int
	}
	unaryExpr struct {
		op   string
		x    expr
		line int
	}
	binaryExpr struct {
		op   string
		a, b expr
		line int
	}
	condExpr struct {
		a, cond, b expr
		line       int
	}
	listExpr struct {
		items []expr
		line  int
	}
	dictExpr struct {
		keys, vals []expr
		line       int
	}
)

type kwarg struct {
	name string
	v    expr
}

func (e *literal) at() int    { return e.line }
func (e *nameExpr) at() int   { return e.line }
func (e *attrExpr) at() int   { return e.line }
func (e *indexExpr) at() int  { return e.line }
func (e *sliceExpr) at() int  { return e.line }
func (e *callExpr) at() int   { return e.line }
func (e *filterExpr) at() int { return e.line }
func (e *testExpr) at() int   { return e.line }
func (e *unaryExpr) at() int  { return e.line }
func (e *binaryExpr) at() int { return e.line }
func (e *condExpr) at() int   { return e.line }
func (e *listExpr) at() int   { return e.line }
func (e *dictExpr) at() int   { return e.line }

// maxNesting bounds how deeply blocks and expressions nest, so that a
// hostile template cannot exhaust the parser's stack.
const maxNesting = 200

// parser builds the tree of a template's pieces.
type parser struct {
	pieces []piece
	pi     int // the piece being read
	toks   []token
	ti     int
	depth  int
}

// Template is a parsed template, safe for concurrent Render calls.
type Template struct {
	body []node
}

// Parse parses a template.
func Parse(src string) (*Template, error) {
	pieces, err := split(src)
	if err != nil {
		return nil, err
	}
	p := &parser{pieces: pieces}
	body, end, err := p.block()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, errorf(p.line(), "unexpected {%% %s %%}", end)
	}
	return &Template{body: body}, nil
}

func (p *parser) line() int {
	if p.toks != nil && p.ti < len(p.toks) {
		return p.toks[p.ti].line
	}
	if p.pi > 0 && p.pi <= len(p.pieces) {
		return p.pieces[p.pi-1].line
	}
	return 0
}

// enter and leave count the nesting depth.
func (p *parser) enter() error {
	p.depth++
	if p.depth > maxNesting {
		return &Error{Line: p.line(), Msg: "the template nests deeper than " + strconv.Itoa(maxNesting), Limit: true}
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// enders are the statements that close or divide a block.
var enders = map[string]bool{"endif": true, "elif": true, "else": true, "endfor": true, "endset": true, "endmacro": true,
	"endcall": true, "endfilter": true, "endgeneration": true, "endraw": true}

// block reads nodes up to a statement that ends the block (returned,
// with its tokens left to read) or the end of the template ("").
func (p *parser) block() ([]node, string, error) {
	if err := p.enter(); err != nil {
		return nil, "", err
	}
	defer p.leave()
	var nodes []node
	for p.pi < len(p.pieces) {
		pc := p.pieces[p.pi]
		p.pi++
		p.toks, p.ti = pc.toks, 0
		switch pc.kind {
		case 't':
			nodes = append(nodes, &textNode{pc.text})
		case 'e':
			e, err := p.expr()
			if err != nil {
				return nil, "", err
			}
			if err := p.end(); err != nil {
				return nil, "", err
			}
			nodes = append(nodes, &outputNode{e})
		case 's':
			kw := p.next()
			if kw.kind != tName {
				return nil, "", errorf(kw.line, "a statement must start with a keyword")
			}
			if enders[kw.s] {
				if kw.s != "elif" && kw.s != "else" {
					if err := p.end(); err != nil {
						return nil, "", err
					}
				}
				return nodes, kw.s, nil
			}
			n, err := p.statement(kw)
			if err != nil {
				return nil, "", err
			}
			if n != nil {
				nodes = append(nodes, n)
			}
		}
	}
	return nodes, "", nil
}

func (p *parser) next() token {
	t := p.toks[p.ti]
	if p.ti < len(p.toks)-1 {
		p.ti++
	}
	return t
}

func (p *parser) peek() token { return p.toks[p.ti] }

func (p *parser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tOp && t.s == s
}

func (p *parser) isName(s string) bool {
	t := p.peek()
	return t.kind == tName && t.s == s
}

func (p *parser) accept(s string) bool {
	if p.isOp(s) || p.isName(s) {
		p.next()
		return true
	}
	return false
}

func (p *parser) want(s string) error {
	if !p.accept(s) {
		t := p.peek()
		return errorf(t.line, "expected %q, found %q", s, t.s)
	}
	return nil
}

func (p *parser) end() error {
	if t := p.peek(); t.kind != tEnd {
		return errorf(t.line, "unexpected %q", t.s)
	}
	return nil
}

func (p *parser) ident() (string, error) {
	t := p.next()
	if t.kind != tName {
		return "", errorf(t.line, "expected a name, found %q", t.s)
	}
	return t.s, nil
}

// closeBlock reads a block that must end with one of the given statements.
func (p *parser) closeBlock(ends ...string) ([]node, string, error) {
	body, end, err := p.block()
	if err != nil {
		return nil, "", err
	}
	for _, e := range ends {
		if end == e {
			return body, end, nil
		}
	}
	if end == "" {
		return nil, "", errorf(p.line(), "missing {%% %s %%}", ends[len(ends)-1])
	}
	return nil, "", errorf(p.line(), "unexpected {%% %s %%} (expected %v)", end, ends)
}
