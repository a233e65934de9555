package jinja

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits bound one render. Zero fields take the defaults in DefaultLimits.
type Limits struct {
	MaxSteps  int           // statements and expressions evaluated, loop iterations included
	MaxOutput int           // bytes of output, and of any one string (or printed value) built
	MaxItems  int           // elements of any one list built (range, +, *)
	MaxDepth  int           // nested macro calls
	Timeout   time.Duration // wall time
}

// DefaultLimits are generous for any chat template (a thousand-message
// conversation through the longest Hugging Face templates takes well under
// a tenth of them) and small enough that a hostile one fails in
// milliseconds: two million steps, 8 MiB of text, a million list elements,
// 64 nested macro calls, two seconds.
var DefaultLimits = Limits{MaxSteps: 2_000_000, MaxOutput: 8 << 20, MaxItems: 1 << 20, MaxDepth: 64, Timeout: 2 * time.Second}

func (l Limits) filled() Limits {
	d := DefaultLimits
	if l.MaxSteps > 0 {
		d.MaxSteps = l.MaxSteps
	}
	if l.MaxOutput > 0 {
		d.MaxOutput = l.MaxOutput
	}
	if l.MaxItems > 0 {
		d.MaxItems = l.MaxItems
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	if l.Timeout > 0 {
		d.Timeout = l.Timeout
	}
	return d
}

// renderer is the state of one render.
type renderer struct {
	lim      Limits
	steps    int
	deadline time.Time
	depth    int
	out      *strings.Builder
}

type scope struct {
	vars   map[string]any
	parent *scope
}

func (s *scope) lookup(n string) (any, bool) {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[n]; ok {
			return v, true
		}
	}
	return nil, false
}

func newScope(parent *scope) *scope { return &scope{parent: parent} }

// set binds a name in this scope (its map is made on the first binding: a
// loop iteration that binds only its variable costs little).
func (s *scope) set(n string, v any) {
	if s.vars == nil {
		s.vars = make(map[string]any, 2)
	}
	s.vars[n] = v
}

var (
	errBreak    = errors.New("break outside a loop")
	errContinue = errors.New("continue outside a loop")
)

// Render runs the template with the variables of vars (Go values, see
// FromGo) within lim.
func (t *Template) Render(vars map[string]any, lim Limits) (string, error) {
	r := &renderer{lim: lim.filled(), out: &strings.Builder{}}
	r.deadline = time.Now().Add(r.lim.Timeout)
	globals := newScope(nil)
	for k, f := range globalFuncs {
		globals.set(k, f)
	}
	top := newScope(globals)
	for k, v := range vars {
		top.set(k, FromGo(v))
	}
	err := r.exec(t.body, top)
	if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
		err = errorf(0, "%v", err)
	}
	if err != nil {
		return "", err
	}
	return r.out.String(), nil
}

// step counts one unit of work against the limits.
func (r *renderer) step(line int) error {
	r.steps++
	if r.steps > r.lim.MaxSteps {
		return &Error{Line: line, Msg: fmt.Sprintf("the template takes more than %d steps", r.lim.MaxSteps), Limit: true}
	}
	if r.steps&63 == 0 && time.Now().After(r.deadline) {
		return &Error{Line: line, Msg: fmt.Sprintf("the template runs longer than %s", r.lim.Timeout), Limit: true}
	}
	return nil
}

func (r *renderer) sizeErr(line int, n int) error {
	if n > r.lim.MaxOutput {
		return &Error{Line: line, Msg: fmt.Sprintf("the template builds a text of more than %d bytes", r.lim.MaxOutput), Limit: true}
	}
	return nil
}

func (r *renderer) itemsErr(line int, n int) error {
	if n > r.lim.MaxItems || n < 0 {
		return &Error{Line: line, Msg: fmt.Sprintf("the template builds a list of more than %d elements", r.lim.MaxItems), Limit: true}
	}
	return nil
}

func (r *renderer) write(s string, line int) error {
	if err := r.sizeErr(line, r.out.Len()+len(s)); err != nil {
		return err
	}
	r.out.WriteString(s)
	return nil
}

func (r *renderer) exec(nodes []node, sc *scope) error {
	for _, n := range nodes {
		if err := r.step(0); err != nil {
			return err
		}
		if err := r.execOne(n, sc); err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) execOne(n node, sc *scope) error {
	switch n := n.(type) {
	case *textNode:
		return r.write(n.s, 0)
	case *outputNode:
		v, err := r.eval(n.e, sc)
		if err != nil {
			return err
		}
		s, err := r.print(v, n.e.at())
		if err != nil {
			return err
		}
		return r.write(s, n.e.at())
	case *ifNode:
		for i, c := range n.conds {
			v, err := r.eval(c, sc)
			if err != nil {
				return err
			}
			if truthy(v) {
				return r.exec(n.bodies[i], sc)
			}
		}
		return r.exec(n.els, sc)
	case *forNode:
		return r.forLoop(n, sc)
	case *setNode:
		return r.set(n, sc)
	case *macroNode:
		sc.set(n.name, &macro{n: n, scope: sc})
		return nil
	case *loopCtl:
		if n.brk {
			return errBreak
		}
		return errContinue
	case *callNode:
		return r.callBlock(n, sc)
	case *filterNode:
		s, err := r.capture(n.body, sc)
		if err != nil {
			return err
		}
		v, err := r.applyFilter(n.f, s, sc)
		if err != nil {
			return err
		}
		return r.write(str(v), n.f.line)
	}
	return fmt.Errorf("jinja: unknown node %T", n)
}

// print is what {{ }} writes for v, within the size limit.
func (r *renderer) print(v any, line int) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	w := &limitWriter{max: r.lim.MaxOutput}
	writeRepr(w, v, 0)
	if w.over {
		return "", r.sizeErr(line, r.lim.MaxOutput+1)
	}
	return w.b.String(), nil
}

// capture renders nodes into a string instead of the output.
func (r *renderer) capture(nodes []node, sc *scope) (string, error) {
	saved := r.out
	r.out = &strings.Builder{}
	err := r.exec(nodes, sc)
	s := r.out.String()
	r.out = saved
	if err != nil {
		return "", err
	}
	return s, r.sizeErr(0, saved.Len()+len(s))
}

func (r *renderer) forLoop(n *forNode, sc *scope) error {
	it, err := r.eval(n.iter, sc)
	if err != nil {
		return err
	}
	items, err := iterate(it, n.line)
	if err != nil {
		return err
	}
	if n.cond != nil {
		var kept []any
		for _, x := range items {
			inner := newScope(sc)
			if err := bind(inner, n.vars, x, n.line); err != nil {
				return err
			}
			v, err := r.eval(n.cond, inner)
			if err != nil {
				return err
			}
			if truthy(v) {
				kept = append(kept, x)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		return r.exec(n.els, sc)
	}
	loop := &loopInfo{length: len(items), items: items}
	for i, x := range items {
		if err := r.step(n.line); err != nil {
			return err
		}
		inner := newScope(sc)
		loop.index = i
		inner.set("loop", loop)
		if err := bind(inner, n.vars, x, n.line); err != nil {
			return err
		}
		err := r.exec(n.body, inner)
		if errors.Is(err, errBreak) {
			break
		}
		if err != nil && !errors.Is(err, errContinue) {
			return err
		}
	}
	return nil
}

// iterate lists what a for loop walks: a list's elements, a dict's keys,
// a string's characters; nothing for none or undefined.
func iterate(v any, line int) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case *Dict:
		out := make([]any, len(x.keys))
		for i, k := range x.keys {
			out[i] = k
		}
		return out, nil
	case string:
		var out []any
		for _, c := range x {
			out = append(out, string(c))
		}
		return out, nil
	case nil, undefined:
		return nil, nil
	}
	return nil, errorf(line, "cannot iterate over a %s", typeName(v))
}

// bind assigns a loop item to the loop variables (unpacking a pair for
// "for k, v in …").
func bind(sc *scope, vars []string, x any, line int) error {
	if len(vars) == 1 {
		sc.set(vars[0], x)
		return nil
	}
	l, ok := x.([]any)
	if !ok || len(l) != len(vars) {
		return errorf(line, "cannot unpack %s into %d names", typeName(x), len(vars))
	}
	for i, v := range vars {
		sc.set(v, l[i])
	}
	return nil
}

func (r *renderer) set(n *setNode, sc *scope) error {
	var v any
	var err error
	if n.block {
		v, err = r.capture(n.body, sc)
	} else {
		v, err = r.eval(n.e, sc)
	}
	if err != nil {
		return err
	}
	switch {
	case n.attr != "":
		x, _ := sc.lookup(n.name)
		ns, ok := x.(*namespace)
		if !ok {
			return errorf(0, "cannot set %s.%s: %s is a %s, not a namespace()", n.name, n.attr, n.name, typeName(x))
		}
		ns.d.Set(n.attr, v)
	case n.vars != nil:
		return bind(sc, n.vars, v, 0)
	default:
		sc.set(n.name, v)
	}
	return nil
}

func (r *renderer) callBlock(n *callNode, sc *scope) error {
	c := n.call.(*callExpr)
	f, err := r.eval(c.f, sc)
	if err != nil {
		return err
	}
	m, ok := f.(*macro)
	if !ok {
		return errorf(c.line, "{%% call %%} needs a macro")
	}
	args, kw, err := r.evalArgs(c.args, c.kw, sc)
	if err != nil {
		return err
	}
	caller := builtin(func(r *renderer, _ []any, _ map[string]any, line int) (any, error) {
		return r.capture(n.body, sc)
	})
	v, err := r.callMacro(m, args, kw, caller, c.line)
	if err != nil {
		return err
	}
	return r.write(str(v), c.line)
}

func (r *renderer) callMacro(m *macro, args []any, kw map[string]any, caller builtin, line int) (any, error) {
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > r.lim.MaxDepth {
		return nil, &Error{Line: line, Msg: fmt.Sprintf("macro %s calls nest deeper than %d", m.n.name, r.lim.MaxDepth), Limit: true}
	}
	if len(args) > len(m.n.params) {
		return nil, errorf(line, "macro %s takes %d arguments, %d given", m.n.name, len(m.n.params), len(args))
	}
	inner := newScope(m.scope)
	for i, p := range m.n.params {
		switch {
		case i < len(args):
			inner.set(p, args[i])
		case hasKey(kw, p):
			inner.set(p, kw[p])
		case m.n.defs[i] != nil:
			v, err := r.eval(m.n.defs[i], inner)
			if err != nil {
				return nil, err
			}
			inner.set(p, v)
		default:
			inner.set(p, undefined{p})
		}
	}
	if caller != nil {
		inner.set("caller", caller)
	}
	return r.capture(m.n.body, inner)
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }
