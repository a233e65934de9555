package jinja

import (
	"strconv"
)

// statement parses the statement that starts with kw.
func (p *parser) statement(kw token) (node, error) {
	switch kw.s {
	case "if":
		return p.ifStmt()
	case "for":
		return p.forStmt(kw.line)
	case "set":
		return p.setStmt()
	case "macro":
		return p.macroStmt()
	case "break", "continue":
		return &loopCtl{brk: kw.s == "break"}, p.end()
	case "call":
		return p.callStmt()
	case "filter":
		return p.filterStmt()
	case "generation": // transformers' AssistantTracker marks assistant text; it renders as its body
		if err := p.end(); err != nil {
			return nil, err
		}
		body, _, err := p.closeBlock("endgeneration")
		if err != nil {
			return nil, err
		}
		return &ifNode{conds: []expr{&literal{v: true}}, bodies: [][]node{body}}, nil
	}
	return nil, errorf(kw.line, "unknown statement %q", kw.s)
}

func (p *parser) ifStmt() (node, error) {
	n := &ifNode{}
	for {
		c, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.end(); err != nil {
			return nil, err
		}
		body, end, err := p.closeBlock("elif", "else", "endif")
		if err != nil {
			return nil, err
		}
		n.conds, n.bodies = append(n.conds, c), append(n.bodies, body)
		switch end {
		case "elif":
			continue
		case "else":
			if err := p.end(); err != nil {
				return nil, err
			}
			if n.els, _, err = p.closeBlock("endif"); err != nil {
				return nil, err
			}
		}
		return n, nil
	}
}

func (p *parser) forStmt(line int) (node, error) {
	n := &forNode{line: line}
	for {
		v, err := p.ident()
		if err != nil {
			return nil, err
		}
		n.vars = append(n.vars, v)
		if !p.accept(",") {
			break
		}
	}
	if err := p.want("in"); err != nil {
		return nil, err
	}
	var err error
	if n.iter, err = p.condless(); err != nil {
		return nil, err
	}
	if p.accept("if") {
		if n.cond, err = p.condless(); err != nil {
			return nil, err
		}
	}
	p.accept("recursive")
	if err := p.end(); err != nil {
		return nil, err
	}
	body, end, err := p.closeBlock("else", "endfor")
	if err != nil {
		return nil, err
	}
	n.body = body
	if end == "else" {
		if err := p.end(); err != nil {
			return nil, err
		}
		if n.els, _, err = p.closeBlock("endfor"); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (p *parser) setStmt() (node, error) {
	n := &setNode{}
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	n.name = name
	switch {
	case p.accept("."):
		if n.attr, err = p.ident(); err != nil {
			return nil, err
		}
	case p.isOp(","):
		n.vars = []string{name}
		for p.accept(",") {
			v, err := p.ident()
			if err != nil {
				return nil, err
			}
			n.vars = append(n.vars, v)
		}
	}
	if p.peek().kind == tEnd && n.attr == "" && n.vars == nil { // {% set x %}…{% endset %}
		if n.body, _, err = p.closeBlock("endset"); err != nil {
			return nil, err
		}
		n.block = true
		return n, nil
	}
	if err := p.want("="); err != nil {
		return nil, err
	}
	if n.e, err = p.tuple(); err != nil {
		return nil, err
	}
	return n, p.end()
}

func (p *parser) macroStmt() (node, error) {
	n := &macroNode{}
	var err error
	if n.name, err = p.ident(); err != nil {
		return nil, err
	}
	if err := p.want("("); err != nil {
		return nil, err
	}
	for !p.accept(")") {
		v, err := p.ident()
		if err != nil {
			return nil, err
		}
		var def expr
		if p.accept("=") {
			if def, err = p.expr(); err != nil {
				return nil, err
			}
		}
		n.params, n.defs = append(n.params, v), append(n.defs, def)
		if !p.accept(",") {
			if err := p.want(")"); err != nil {
				return nil, err
			}
			break
		}
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if n.body, _, err = p.closeBlock("endmacro"); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) callStmt() (node, error) {
	c, err := p.expr()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*callExpr); !ok {
		return nil, errorf(c.at(), "{%% call %%} needs a macro call")
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	body, _, err := p.closeBlock("endcall")
	if err != nil {
		return nil, err
	}
	return &callNode{call: c, body: body}, nil
}

func (p *parser) filterStmt() (node, error) {
	f, err := p.filterCall(nil)
	if err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	body, _, err := p.closeBlock("endfilter")
	if err != nil {
		return nil, err
	}
	return &filterNode{f: f, body: body}, nil
}

// Expressions, loosest first: tuple, conditional, or, and, not,
// comparison (with in, is), ~, + -, * / // %, unary -, **, filters,
// postfix (call, attribute, index), primary.

func (p *parser) tuple() (expr, error) {
	line := p.peek().line
	e, err := p.expr()
	if err != nil || !p.isOp(",") {
		return e, err
	}
	items := []expr{e}
	for p.accept(",") {
		if p.peek().kind == tEnd {
			break
		}
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		items = append(items, x)
	}
	return &listExpr{items: items, line: line}, nil
}

func (p *parser) expr() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	a, err := p.or()
	if err != nil || !p.isName("if") {
		return a, err
	}
	line := p.next().line
	c, err := p.or()
	if err != nil {
		return nil, err
	}
	var b expr = &literal{v: undefined{}, line: line}
	if p.accept("else") {
		if b, err = p.expr(); err != nil {
			return nil, err
		}
	}
	return &condExpr{a: a, cond: c, b: b, line: line}, nil
}

// condless is an expression without a trailing "if" (a for loop's
// iterable, whose "if" filters).
func (p *parser) condless() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.or()
}

func (p *parser) binary(next func() (expr, error), opsAt ...string) (expr, error) {
	a, err := next()
	if err != nil {
		return nil, err
	}
	for {
		op := ""
		for _, o := range opsAt {
			if p.isOp(o) || p.isName(o) {
				op = o
			}
		}
		if op == "" {
			return a, nil
		}
		line := p.next().line
		b, err := next()
		if err != nil {
			return nil, err
		}
		a = &binaryExpr{op: op, a: a, b: b, line: line}
	}
}

func (p *parser) or() (expr, error)  { return p.binary(p.and, "or") }
func (p *parser) and() (expr, error) { return p.binary(p.not, "and") }

func (p *parser) not() (expr, error) {
	if p.isName("not") {
		line := p.next().line
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{op: "not", x: x, line: line}, nil
	}
	return p.compare()
}

// compare parses comparisons; a chain a < b < c means a < b and b < c,
// as in Python and Jinja2.
func (p *parser) compare() (expr, error) {
	a, err := p.sum()
	if err != nil {
		return nil, err
	}
	var last expr // the right operand of the previous comparison in a chain
	chain := func(op string, b expr, line int) {
		if last == nil {
			a = &binaryExpr{op: op, a: a, b: b, line: line}
		} else {
			a = &binaryExpr{op: "and", a: a, b: &binaryExpr{op: op, a: last, b: b, line: line}, line: line}
		}
		last = b
	}
	for {
		t := p.peek()
		switch {
		case t.kind == tOp && (t.s == "==" || t.s == "!=" || t.s == "<" || t.s == ">" || t.s == "<=" || t.s == ">="),
			t.kind == tName && t.s == "in":
			p.next()
			b, err := p.sum()
			if err != nil {
				return nil, err
			}
			chain(t.s, b, t.line)
		case t.kind == tName && t.s == "not" && p.ti+1 < len(p.toks) && p.toks[p.ti+1].s == "in":
			p.next()
			p.next()
			b, err := p.sum()
			if err != nil {
				return nil, err
			}
			if last == nil {
				a = &unaryExpr{op: "not", x: &binaryExpr{op: "in", a: a, b: b, line: t.line}, line: t.line}
			} else {
				a = &binaryExpr{op: "and", a: a, b: &unaryExpr{op: "not", x: &binaryExpr{op: "in", a: last, b: b, line: t.line}, line: t.line}, line: t.line}
			}
			last = b
		default:
			return a, nil
		}
	}
}

func (p *parser) test(x expr, line int) (expr, error) {
	neg := p.accept("not")
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	if !knownTests[name] {
		return nil, errorf(line, "unknown test %q", name)
	}
	te := &testExpr{x: x, name: name, neg: neg, line: line}
	if p.accept("(") {
		if te.args, _, err = p.args(); err != nil {
			return nil, err
		}
	} else if t := p.peek(); t.kind == tString || t.kind == tInt || t.kind == tFloat || (t.kind == tName && t.s != "and" && t.s != "or" && t.s != "else" && t.s != "if") {
		a, err := p.primary() // "is divisibleby 3", "is equalto 'x'"
		if err != nil {
			return nil, err
		}
		te.args = []expr{a}
	}
	return te, nil
}

// The arithmetic levels follow Jinja2's parser: + and - bind looser than
// ~, which binds looser than * / // %, then **, then unary minus (so -2**2
// is 4, as in Jinja2), then filters and tests.
func (p *parser) sum() (expr, error)    { return p.binary(p.concat, "+", "-") }
func (p *parser) concat() (expr, error) { return p.binary(p.product, "~") }
func (p *parser) product() (expr, error) {
	return p.binary(p.power, "*", "/", "//", "%")
}

func (p *parser) power() (expr, error) { return p.binary(p.unary, "**") }

// unary is a signed operand followed by filters and tests: the sign binds
// first (-3|abs is 3, as in Jinja2).
func (p *parser) unary() (expr, error) {
	x, err := p.signed()
	if err != nil {
		return nil, err
	}
	return p.filtered(x)
}

func (p *parser) signed() (expr, error) {
	if p.isOp("-") || p.isOp("+") {
		t := p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.signed()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{op: t.s, x: x, line: t.line}, nil
	}
	return p.postfix()
}

// filtered applies the filters (| f) and tests (is t) that follow x, left
// to right.
func (p *parser) filtered(x expr) (expr, error) {
	var err error
	for {
		switch t := p.peek(); {
		case p.accept("|"):
			if x, err = p.filterCall(x); err != nil {
				return nil, err
			}
		case t.kind == tName && t.s == "is":
			p.next()
			if x, err = p.test(x, t.line); err != nil {
				return nil, err
			}
		default:
			return x, nil
		}
	}
}

func (p *parser) filterCall(x expr) (*filterExpr, error) {
	t := p.peek()
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	if filters[name] == nil {
		return nil, errorf(t.line, "unknown filter %q", name)
	}
	f := &filterExpr{x: x, name: name, line: t.line}
	if p.accept("(") {
		if f.args, f.kw, err = p.args(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// args reads call arguments after "(" up to and including ")".
func (p *parser) args() ([]expr, []kwarg, error) {
	var args []expr
	var kw []kwarg
	for !p.accept(")") {
		if t := p.peek(); t.kind == tName && p.ti+1 < len(p.toks) && p.toks[p.ti+1].s == "=" && p.toks[p.ti+1].kind == tOp {
			p.next()
			p.next()
			v, err := p.expr()
			if err != nil {
				return nil, nil, err
			}
			kw = append(kw, kwarg{t.s, v})
		} else {
			a, err := p.expr()
			if err != nil {
				return nil, nil, err
			}
			args = append(args, a)
		}
		if !p.accept(",") {
			if err := p.want(")"); err != nil {
				return nil, nil, err
			}
			break
		}
	}
	return args, kw, nil
}

func (p *parser) postfix() (expr, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case p.accept("."):
			n := p.next()
			if n.kind != tName && n.kind != tInt {
				return nil, errorf(n.line, "expected an attribute name after '.'")
			}
			x = &attrExpr{x: x, name: n.s, line: t.line}
		case p.accept("["):
			if x, err = p.subscript(x, t.line); err != nil {
				return nil, err
			}
		case p.accept("("):
			args, kw, err := p.args()
			if err != nil {
				return nil, err
			}
			x = &callExpr{f: x, args: args, kw: kw, line: t.line}
		default:
			return x, nil
		}
	}
}

func (p *parser) subscript(x expr, line int) (expr, error) {
	var parts [3]expr
	n := 0
	for {
		if !p.isOp(":") && !p.isOp("]") {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			parts[n] = e
		}
		if p.accept("]") {
			break
		}
		if err := p.want(":"); err != nil {
			return nil, err
		}
		if n++; n > 2 {
			return nil, errorf(line, "a slice has at most three parts")
		}
	}
	if n == 0 {
		if parts[0] == nil {
			return nil, errorf(line, "empty subscript")
		}
		return &indexExpr{x: x, i: parts[0], line: line}, nil
	}
	return &sliceExpr{x: x, lo: parts[0], hi: parts[1], step: parts[2], line: line}, nil
}

func (p *parser) primary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tString:
		s := t.s
		for p.peek().kind == tString { // adjacent literals join, as in Python
			s += p.next().s
		}
		return &literal{v: s, line: t.line}, nil
	case tInt:
		v, err := strconv.ParseInt(t.s, 10, 64)
		if err != nil {
			return nil, errorf(t.line, "integer %s out of range", t.s)
		}
		return &literal{v: v, line: t.line}, nil
	case tFloat:
		v, err := strconv.ParseFloat(t.s, 64)
		if err != nil {
			return nil, errorf(t.line, "bad number %s", t.s)
		}
		return &literal{v: v, line: t.line}, nil
	case tName:
		switch t.s {
		case "true", "True":
			return &literal{v: true, line: t.line}, nil
		case "false", "False":
			return &literal{v: false, line: t.line}, nil
		case "none", "None":
			return &literal{v: nil, line: t.line}, nil
		}
		return &nameExpr{n: t.s, line: t.line}, nil
	case tOp:
		switch t.s {
		case "(":
			if p.accept(")") {
				return &listExpr{line: t.line}, nil
			}
			e, err := p.tuple()
			if err != nil {
				return nil, err
			}
			return e, p.want(")")
		case "[":
			l := &listExpr{line: t.line}
			for !p.accept("]") {
				e, err := p.expr()
				if err != nil {
					return nil, err
				}
				l.items = append(l.items, e)
				if !p.accept(",") {
					if err := p.want("]"); err != nil {
						return nil, err
					}
					break
				}
			}
			return l, nil
		case "{":
			return p.dict(t.line)
		}
	}
	if t.kind == tEnd {
		return nil, errorf(t.line, "unexpected end of tag")
	}
	return nil, errorf(t.line, "unexpected %q", t.s)
}

func (p *parser) dict(line int) (expr, error) {
	d := &dictExpr{line: line}
	for !p.accept("}") {
		k, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.want(":"); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		d.keys, d.vals = append(d.keys, k), append(d.vals, v)
		if !p.accept(",") {
			if err := p.want("}"); err != nil {
				return nil, err
			}
			break
		}
	}
	return d, nil
}
