package jinja

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Values are nil (none), undefined, bool, int64, float64, string, []any
// (list or tuple), *Dict, *namespace, *macro, *loopInfo and builtin.

// undefined is a name or key that does not exist. It prints as "", is
// false, and fails when its attributes are read.
type undefined struct{ name string }

// Dict is an ordered mapping with string keys (what a JSON object or a
// Python dict of a chat template's context holds).
type Dict struct {
	keys []string
	m    map[string]any
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]any{}} }

// Set adds or replaces a key, keeping the order of first insertion.
func (d *Dict) Set(k string, v any) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = v
}

func (d *Dict) get(k string) (any, bool) { v, ok := d.m[k]; return v, ok }

// namespace is the mutable object namespace() returns.
type namespace struct{ d *Dict }

// macro is a {% macro %} bound to the scope it was defined in.
type macro struct {
	n     *macroNode
	scope *scope
}

// builtin is a global or method function.
type builtin func(r *renderer, args []any, kw map[string]any, line int) (any, error)

// loopInfo is the loop variable of a for loop.
type loopInfo struct {
	index, length int
	items         []any
}

func (l *loopInfo) attr(name string) (any, bool) {
	i := l.index
	switch name {
	case "index":
		return int64(i + 1), true
	case "index0":
		return int64(i), true
	case "revindex":
		return int64(l.length - i), true
	case "revindex0":
		return int64(l.length - i - 1), true
	case "first":
		return i == 0, true
	case "last":
		return i == l.length-1, true
	case "length":
		return int64(l.length), true
	case "previtem":
		if i > 0 {
			return l.items[i-1], true
		}
		return undefined{"previtem"}, true
	case "nextitem":
		if i+1 < l.length {
			return l.items[i+1], true
		}
		return undefined{"nextitem"}, true
	}
	return nil, false
}

// FromGo converts Go values (maps, slices, strings, numbers, bools, nil)
// into template values; map keys are sorted.
func FromGo(v any) any {
	switch x := v.(type) {
	case map[string]any:
		d := NewDict()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.Set(k, FromGo(x[k]))
		}
		return d
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = FromGo(e)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	}
	return v
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil, undefined:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case *Dict:
		return len(x.keys) > 0
	}
	return true
}

// str is Python's str() of a value, as {{ }} prints it.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case undefined:
		return ""
	}
	return repr(v)
}

// reprCap and maxValueDepth bound what printing or comparing one value
// may cost: values may share parts, so their printed size is not bounded
// by the work that built them.
const (
	reprCap       = 8 << 20
	maxValueDepth = 500
)

// repr is Python's repr() of a value, cut off past reprCap bytes or
// maxValueDepth levels of nesting (the render's size limit then fails).
func repr(v any) string {
	w := &limitWriter{max: reprCap}
	writeRepr(w, v, 0)
	return w.b.String()
}

// scalarRepr is repr of a value that holds no others.
func scalarRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case undefined:
		return ""
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pyFloat(x)
	case string:
		return pyQuote(x)
	case *namespace:
		return "<Namespace>"
	case *macro:
		return "<Macro '" + x.n.name + "'>"
	case *loopInfo:
		return "<LoopContext>"
	}
	return "<function>"
}

func pyFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}

func pyQuote(s string) string {
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	var b strings.Builder
	b.WriteString(q)
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case string(r) == q:
			b.WriteString(`\` + q)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x` + strconv.FormatInt(int64(r)|0x100, 16)[1:])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteString(q)
	return b.String()
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "none"
	case undefined:
		return "undefined"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []any:
		return "list"
	case *Dict:
		return "dict"
	}
	return "object"
}

// equal is Python's ==.
func equal(a, b any) bool {
	n := math.MaxInt
	return equalB(a, b, &n)
}

// equalB is equal that visits at most *n values (deep structures may share
// parts, so their size is not bounded by their construction); when the
// budget runs out, *n goes negative and the result is false.
func equalB(a, b any, n *int) bool {
	return equalD(a, b, n, 0)
}

func equalD(a, b any, n *int, depth int) bool {
	if *n--; *n < 0 || depth > maxValueDepth {
		*n = -1
		return false
	}
	if fa, ok := number(a); ok {
		if fb, ok := number(b); ok {
			return fa == fb
		}
		return false
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case undefined:
		_, ok := b.(undefined)
		return ok
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalD(x[i], y[i], n, depth+1) {
				return false
			}
		}
		return true
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || len(x.keys) != len(y.keys) {
			return false
		}
		for _, k := range x.keys {
			v, ok := y.m[k]
			if !ok || !equalD(x.m[k], v, n, depth+1) {
				return false
			}
		}
		return true
	}
	return a == b
}

// number returns a numeric value (bools count, as in Python) as float64.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
