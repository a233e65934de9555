package jinja

import (
	"math"
	"strings"
)

func (r *renderer) eval(e expr, sc *scope) (any, error) {
	if err := r.step(e.at()); err != nil {
		return nil, err
	}
	switch e := e.(type) {
	case *literal:
		return e.v, nil
	case *nameExpr:
		if v, ok := sc.lookup(e.n); ok {
			return v, nil
		}
		return undefined{e.n}, nil
	case *attrExpr:
		x, err := r.eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		return getAttr(x, e.name, e.line)
	case *indexExpr:
		x, err := r.eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		i, err := r.eval(e.i, sc)
		if err != nil {
			return nil, err
		}
		return getItem(x, i, e.line)
	case *sliceExpr:
		return r.slice(e, sc)
	case *callExpr:
		return r.call(e, sc)
	case *filterExpr:
		x, err := r.eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		return r.applyFilter(e, x, sc)
	case *testExpr:
		x, err := r.eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		args, _, err := r.evalArgs(e.args, nil, sc)
		if err != nil {
			return nil, err
		}
		ok, err := runTest(r, e.name, x, args, e.line)
		return ok != e.neg, err
	case *unaryExpr:
		x, err := r.eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		return unary(e.op, x, e.line)
	case *binaryExpr:
		return r.binary(e, sc)
	case *condExpr:
		c, err := r.eval(e.cond, sc)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(e.a, sc)
		}
		return r.eval(e.b, sc)
	case *listExpr:
		out := make([]any, len(e.items))
		for i, x := range e.items {
			v, err := r.eval(x, sc)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *dictExpr:
		d := NewDict()
		for i := range e.keys {
			k, err := r.eval(e.keys[i], sc)
			if err != nil {
				return nil, err
			}
			v, err := r.eval(e.vals[i], sc)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, errorf(e.line, "dictionary keys must be strings, not %s", typeName(k))
			}
			d.Set(ks, v)
		}
		return d, nil
	}
	return nil, errorf(e.at(), "unknown expression %T", e)
}

func getAttr(x any, name string, line int) (any, error) {
	switch v := x.(type) {
	case undefined:
		return nil, errorf(line, "%s is undefined (reading .%s)", undefName(v), name)
	case *Dict:
		if val, ok := v.get(name); ok {
			return val, nil
		}
		return undefined{name}, nil
	case *namespace:
		if val, ok := v.d.get(name); ok {
			return val, nil
		}
		return undefined{name}, nil
	case *loopInfo:
		if val, ok := v.attr(name); ok {
			return val, nil
		}
	}
	return undefined{name}, nil
}

func undefName(u undefined) string {
	if u.name == "" {
		return "a value"
	}
	return "'" + u.name + "'"
}

func getItem(x, i any, line int) (any, error) {
	switch v := x.(type) {
	case undefined:
		return nil, errorf(line, "%s is undefined (reading [%s])", undefName(v), repr(i))
	case *Dict:
		if k, ok := i.(string); ok {
			if val, ok := v.get(k); ok {
				return val, nil
			}
			return undefined{k}, nil
		}
	case *namespace:
		return getItem(v.d, i, line)
	case []any:
		if n, ok := i.(int64); ok {
			if n < 0 {
				n += int64(len(v))
			}
			if n >= 0 && n < int64(len(v)) {
				return v[n], nil
			}
			return undefined{}, nil
		}
	case string:
		if n, ok := i.(int64); ok {
			rs := []rune(v)
			if n < 0 {
				n += int64(len(rs))
			}
			if n >= 0 && n < int64(len(rs)) {
				return string(rs[n]), nil
			}
			return undefined{}, nil
		}
	case *loopInfo:
		if k, ok := i.(string); ok {
			if val, ok := v.attr(k); ok {
				return val, nil
			}
		}
	}
	if k, ok := i.(string); ok {
		return undefined{k}, nil
	}
	return undefined{}, nil
}

func (r *renderer) slice(e *sliceExpr, sc *scope) (any, error) {
	x, err := r.eval(e.x, sc)
	if err != nil {
		return nil, err
	}
	var bounds [3]*int64
	for k, b := range []expr{e.lo, e.hi, e.step} {
		if b == nil {
			continue
		}
		v, err := r.eval(b, sc)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		n, ok := v.(int64)
		if !ok {
			return nil, errorf(e.line, "slice bounds must be integers")
		}
		bounds[k] = &n
	}
	var items []any
	var isStr bool
	switch v := x.(type) {
	case []any:
		items = v
	case string:
		isStr = true
		for _, c := range v {
			items = append(items, string(c))
		}
	default:
		return nil, errorf(e.line, "cannot slice a %s", typeName(x))
	}
	idx, err := sliceIndices(len(items), bounds, e.line)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(idx))
	for k, i := range idx {
		out[k] = items[i]
	}
	if isStr {
		var b strings.Builder
		for _, c := range out {
			b.WriteString(c.(string))
		}
		return b.String(), nil
	}
	return out, nil
}

// sliceIndices are the indices Python's seq[lo:hi:step] selects.
func sliceIndices(n int, b [3]*int64, line int) ([]int, error) {
	step := int64(1)
	if b[2] != nil {
		step = *b[2]
	}
	if step == 0 {
		return nil, errorf(line, "slice step cannot be zero")
	}
	clamp := func(p *int64, def int64, lo, hi int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += int64(n)
		}
		return min(max(v, lo), hi)
	}
	var out []int
	if step > 0 {
		lo, hi := clamp(b[0], 0, 0, int64(n)), clamp(b[1], int64(n), 0, int64(n))
		for i := lo; i < hi; i += step {
			out = append(out, int(i))
		}
	} else {
		lo, hi := clamp(b[0], int64(n)-1, -1, int64(n)-1), clamp(b[1], -1, -1, int64(n)-1)
		if b[1] != nil && *b[1] < 0 && *b[1]+int64(n) < 0 {
			hi = -1
		}
		for i := lo; i > hi; i += step {
			out = append(out, int(i))
		}
	}
	return out, nil
}

func (r *renderer) evalArgs(args []expr, kws []kwarg, sc *scope) ([]any, map[string]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, err := r.eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		out[i] = v
	}
	var kw map[string]any
	if len(kws) > 0 {
		kw = map[string]any{}
		for _, k := range kws {
			v, err := r.eval(k.v, sc)
			if err != nil {
				return nil, nil, err
			}
			kw[k.name] = v
		}
	}
	return out, kw, nil
}

func (r *renderer) call(e *callExpr, sc *scope) (any, error) {
	args, kw, err := r.evalArgs(e.args, e.kw, sc)
	if err != nil {
		return nil, err
	}
	if a, ok := e.f.(*attrExpr); ok { // a method: x.strip(), d.items(), …
		x, err := r.eval(a.x, sc)
		if err != nil {
			return nil, err
		}
		if m := method(x, a.name); m != nil {
			return m(r, args, kw, e.line)
		}
		f, err := getAttr(x, a.name, a.line)
		if err != nil {
			return nil, err
		}
		return r.callValue(f, args, kw, e.line, a.name)
	}
	f, err := r.eval(e.f, sc)
	if err != nil {
		return nil, err
	}
	name := ""
	if n, ok := e.f.(*nameExpr); ok {
		name = n.n
	}
	return r.callValue(f, args, kw, e.line, name)
}

func (r *renderer) callValue(f any, args []any, kw map[string]any, line int, name string) (any, error) {
	switch f := f.(type) {
	case builtin:
		return f(r, args, kw, line)
	case *macro:
		return r.callMacro(f, args, kw, nil, line)
	}
	if name == "" {
		name = "the value"
	}
	return nil, errorf(line, "%s is not callable (a %s)", name, typeName(f))
}

func unary(op string, x any, line int) (any, error) {
	switch op {
	case "not":
		return !truthy(x), nil
	case "-":
		switch v := x.(type) {
		case int64:
			return -v, nil
		case float64:
			return -v, nil
		}
	case "+":
		switch x.(type) {
		case int64, float64:
			return x, nil
		}
	}
	return nil, errorf(line, "bad operand for unary %s: %s", op, typeName(x))
}

func (r *renderer) binary(e *binaryExpr, sc *scope) (any, error) {
	a, err := r.eval(e.a, sc)
	if err != nil {
		return nil, err
	}
	switch e.op { // short-circuit
	case "and":
		if !truthy(a) {
			return a, nil
		}
		return r.eval(e.b, sc)
	case "or":
		if truthy(a) {
			return a, nil
		}
		return r.eval(e.b, sc)
	}
	b, err := r.eval(e.b, sc)
	if err != nil {
		return nil, err
	}
	return r.operate(e.op, a, b, e.line)
}

func (r *renderer) operate(op string, a, b any, line int) (any, error) {
	switch op {
	case "==", "!=":
		n := r.lim.MaxItems
		eq := equalB(a, b, &n)
		if n < 0 {
			return nil, r.itemsErr(line, -1)
		}
		return eq == (op == "=="), nil
	case "<", ">", "<=", ">=":
		return compare(op, a, b, line)
	case "in":
		return r.contains(b, a, line)
	case "~":
		s, t := str(a), str(b)
		if err := r.sizeErr(line, len(s)+len(t)); err != nil {
			return nil, err
		}
		return s + t, nil
	case "+":
		return r.add(a, b, line)
	case "*":
		return r.mul(a, b, line)
	}
	return arith(op, a, b, line)
}

func (r *renderer) add(a, b any, line int) (any, error) {
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			if err := r.sizeErr(line, len(x)+len(y)); err != nil {
				return nil, err
			}
			return x + y, nil
		}
	case []any:
		if y, ok := b.([]any); ok {
			if err := r.itemsErr(line, len(x)+len(y)); err != nil {
				return nil, err
			}
			return append(append(make([]any, 0, len(x)+len(y)), x...), y...), nil
		}
	}
	return arith("+", a, b, line)
}

func (r *renderer) mul(a, b any, line int) (any, error) {
	if _, ok := b.(string); ok {
		a, b = b, a
	}
	if _, ok := b.([]any); ok {
		a, b = b, a
	}
	n, isInt := b.(int64)
	switch x := a.(type) {
	case string:
		if !isInt {
			break
		}
		if n <= 0 {
			return "", nil
		}
		if len(x) > 0 && n > int64(r.lim.MaxOutput/len(x)) {
			return nil, r.sizeErr(line, r.lim.MaxOutput+1)
		}
		return strings.Repeat(x, int(n)), nil
	case []any:
		if !isInt {
			break
		}
		if n <= 0 {
			return []any{}, nil
		}
		if len(x) > 0 && n > int64(r.lim.MaxItems/len(x)) {
			return nil, r.itemsErr(line, -1)
		}
		out := make([]any, 0, len(x)*int(n))
		for range n {
			out = append(out, x...)
		}
		return out, nil
	}
	return arith("*", a, b, line)
}

func arith(op string, a, b any, line int) (any, error) {
	ai, aInt := a.(int64)
	bi, bInt := b.(int64)
	fa, okA := number(a)
	fb, okB := number(b)
	if !okA || !okB {
		return nil, errorf(line, "unsupported operand types for %s: %s and %s", op, typeName(a), typeName(b))
	}
	if _, ok := a.(bool); ok {
		ai, aInt = int64(fa), true
	}
	if _, ok := b.(bool); ok {
		bi, bInt = int64(fb), true
	}
	both := aInt && bInt
	switch op {
	case "+":
		if both {
			return ai + bi, nil
		}
		return fa + fb, nil
	case "-":
		if both {
			return ai - bi, nil
		}
		return fa - fb, nil
	case "*":
		if both {
			return ai * bi, nil
		}
		return fa * fb, nil
	case "/":
		if fb == 0 {
			return nil, errorf(line, "division by zero")
		}
		return fa / fb, nil
	case "//":
		if fb == 0 {
			return nil, errorf(line, "division by zero")
		}
		if both {
			q := ai / bi
			if (ai%bi != 0) && ((ai < 0) != (bi < 0)) {
				q--
			}
			return q, nil
		}
		return math.Floor(fa / fb), nil
	case "%":
		if fb == 0 {
			return nil, errorf(line, "modulo by zero")
		}
		if both {
			m := ai % bi
			if m != 0 && (m < 0) != (bi < 0) {
				m += bi
			}
			return m, nil
		}
		m := math.Mod(fa, fb)
		if m != 0 && (m < 0) != (fb < 0) {
			m += fb
		}
		return m, nil
	case "**":
		if both && bi >= 0 {
			if bi > 64 && ai != 0 && ai != 1 && ai != -1 {
				return math.Pow(fa, fb), nil
			}
			p := int64(1)
			for range bi {
				p *= ai
			}
			return p, nil
		}
		return math.Pow(fa, fb), nil
	}
	return nil, errorf(line, "unknown operator %s", op)
}

func compare(op string, a, b any, line int) (any, error) {
	var c int
	fa, okA := number(a)
	fb, okB := number(b)
	sa, sOkA := a.(string)
	sb, sOkB := b.(string)
	switch {
	case okA && okB:
		c = cmpF(fa, fb)
	case sOkA && sOkB:
		c = strings.Compare(sa, sb)
	default:
		return nil, errorf(line, "cannot compare %s %s %s", typeName(a), op, typeName(b))
	}
	switch op {
	case "<":
		return c < 0, nil
	case ">":
		return c > 0, nil
	case "<=":
		return c <= 0, nil
	}
	return c >= 0, nil
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *renderer) contains(container, x any, line int) (any, error) {
	switch c := container.(type) {
	case string:
		s, ok := x.(string)
		if !ok {
			return nil, errorf(line, "'in <string>' needs a string on the left, not %s", typeName(x))
		}
		return strings.Contains(c, s), nil
	case []any:
		n := r.lim.MaxItems
		for _, e := range c {
			if equalB(e, x, &n) {
				return true, nil
			}
		}
		if n < 0 {
			return nil, r.itemsErr(line, -1)
		}
		return false, nil
	case *Dict:
		s, ok := x.(string)
		return ok && hasKeyD(c, s), nil
	case *namespace:
		s, ok := x.(string)
		return ok && hasKeyD(c.d, s), nil
	case undefined, nil:
		return false, nil
	}
	return nil, errorf(line, "'in' needs a string, list or dict on the right, not %s", typeName(container))
}

func hasKeyD(d *Dict, k string) bool { _, ok := d.m[k]; return ok }
