package jinja

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// filterFunc is a filter: x | name(args, kw).
type filterFunc func(r *renderer, x any, args []any, kw map[string]any, line int) (any, error)

// filters are the Jinja2 filters chat templates use, and tojson as
// transformers defines it.
var filters map[string]filterFunc

func init() {
	strF := func(f func(string) string) filterFunc {
		return func(_ *renderer, x any, _ []any, _ map[string]any, _ int) (any, error) { return f(str(x)), nil }
	}
	filters = map[string]filterFunc{
		"trim": func(_ *renderer, x any, args []any, _ map[string]any, _ int) (any, error) {
			if c, ok := strArg(args, 0); ok {
				return strings.Trim(str(x), c), nil
			}
			return strings.TrimSpace(str(x)), nil
		},
		"upper": strF(strings.ToUpper), "lower": strF(strings.ToLower), "capitalize": strF(capitalize), "title": strF(title),
		"string": func(r *renderer, x any, _ []any, _ map[string]any, line int) (any, error) { return r.print(x, line) },
		"safe":   func(_ *renderer, x any, _ []any, _ map[string]any, _ int) (any, error) { return x, nil },
		"escape": strF(htmlEscape), "e": strF(htmlEscape),
		"length": lengthFilter, "count": lengthFilter,
		"int":   func(_ *renderer, x any, _ []any, _ map[string]any, _ int) (any, error) { return toInt(x), nil },
		"float": func(_ *renderer, x any, _ []any, _ map[string]any, _ int) (any, error) { return toFloat(x), nil },
		"abs": func(_ *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
			switch v := x.(type) {
			case int64:
				return max(v, -v), nil
			case float64:
				return math.Abs(v), nil
			}
			return nil, errorf(line, "abs needs a number")
		},
		"default": defaultFilter, "d": defaultFilter,
		"first": func(_ *renderer, x any, _ []any, _ map[string]any, l int) (any, error) { return pick(x, 0, l) },
		"last":  func(_ *renderer, x any, _ []any, _ map[string]any, l int) (any, error) { return pick(x, -1, l) },
		"list": func(_ *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
			return iterate(x, line)
		},
		"items": func(r *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
			d, ok := x.(*Dict)
			if !ok {
				return nil, errorf(line, "items needs a dict")
			}
			return dictMethod(d, "items")(r, nil, nil, line)
		},
		"reverse": func(_ *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
			if s, ok := x.(string); ok {
				rs := []rune(s)
				for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
					rs[i], rs[j] = rs[j], rs[i]
				}
				return string(rs), nil
			}
			items, err := iterate(x, line)
			out := make([]any, len(items))
			for i, v := range items {
				out[len(items)-1-i] = v
			}
			return out, err
		},
		"join": joinFilter,
		"replace": func(r *renderer, x any, args []any, _ map[string]any, l int) (any, error) {
			return r.replace(str(x), args, l)
		},
		"indent": indentFilter,
		"tojson": tojsonFilter,
		"select": selectFilter(false, false), "reject": selectFilter(true, false),
		"selectattr": selectFilter(false, true), "rejectattr": selectFilter(true, true),
		"map":    mapFilter,
		"unique": uniqueFilter,
		"sort":   sortFilter,
		"sum": func(_ *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
			items, err := iterate(x, line)
			var acc any = int64(0)
			for _, v := range items {
				if acc, err = arith("+", acc, v, line); err != nil {
					return nil, err
				}
			}
			return acc, err
		},
		"wordcount": func(_ *renderer, x any, _ []any, _ map[string]any, _ int) (any, error) {
			return int64(len(strings.FieldsFunc(str(x), func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '_' }))), nil
		},
		"round": func(_ *renderer, x any, args []any, _ map[string]any, _ int) (any, error) {
			p := int64(0)
			if len(args) > 0 {
				p = toInt(args[0])
			}
			f := toFloat(x) * math.Pow(10, float64(p))
			return math.RoundToEven(f) / math.Pow(10, float64(p)), nil
		},
		"attr": func(_ *renderer, x any, args []any, _ map[string]any, line int) (any, error) {
			n, _ := strArg(args, 0)
			return getAttr(x, n, line)
		},
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func (r *renderer) applyFilter(f *filterExpr, x any, sc *scope) (any, error) {
	fn, ok := filters[f.name]
	if !ok {
		return nil, errorf(f.line, "unknown filter %q", f.name)
	}
	args, kw, err := r.evalArgs(f.args, f.kw, sc)
	if err != nil {
		return nil, err
	}
	return fn(r, x, args, kw, f.line)
}

func lengthFilter(_ *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
	switch v := x.(type) {
	case string:
		return int64(len([]rune(v))), nil
	case []any:
		return int64(len(v)), nil
	case *Dict:
		return int64(len(v.keys)), nil
	case undefined:
		return int64(0), nil
	}
	return nil, errorf(line, "a %s has no length", typeName(x))
}

func defaultFilter(_ *renderer, x any, args []any, _ map[string]any, _ int) (any, error) {
	def := any("")
	if len(args) > 0 {
		def = args[0]
	}
	_, undef := x.(undefined)
	if undef || len(args) > 1 && truthy(args[1]) && !truthy(x) {
		return def, nil
	}
	return x, nil
}

func pick(x any, i int, line int) (any, error) {
	items, err := iterate(x, line)
	if err != nil || len(items) == 0 {
		return undefined{}, err
	}
	if i < 0 {
		i += len(items)
	}
	return items[i], nil
}

func joinFilter(r *renderer, x any, args []any, kw map[string]any, line int) (any, error) {
	sep, _ := strArg(args, 0)
	attr, _ := kw["attribute"].(string)
	if a, ok := strArg(args, 1); ok {
		attr = a
	}
	items, err := iterate(x, line)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for i, v := range items {
		if attr != "" {
			if v, err = getAttr(v, attr, line); err != nil {
				return nil, err
			}
		}
		if i > 0 {
			b.WriteString(sep)
		}
		s, err := r.print(v, line)
		if err != nil {
			return nil, err
		}
		b.WriteString(s)
		if err := r.sizeErr(line, b.Len()); err != nil {
			return nil, err
		}
	}
	return b.String(), nil
}

func indentFilter(r *renderer, x any, args []any, kw map[string]any, line int) (any, error) {
	pad := "    "
	if len(args) > 0 {
		switch w := args[0].(type) {
		case int64:
			if w < 0 || w > 1000 {
				return nil, errorf(line, "indent width %d", w)
			}
			pad = strings.Repeat(" ", int(w))
		case string:
			pad = w
		}
	}
	first := len(args) > 1 && truthy(args[1]) || truthy(kw["first"])
	blank := len(args) > 2 && truthy(args[2]) || truthy(kw["blank"])
	lines := strings.Split(str(x), "\n")
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		if (i > 0 || first) && (l != "" || blank) {
			b.WriteString(pad)
		}
		b.WriteString(l)
		if err := r.sizeErr(line, b.Len()); err != nil {
			return nil, err
		}
	}
	return b.String(), nil
}

func tojsonFilter(r *renderer, x any, args []any, kw map[string]any, line int) (any, error) {
	indent := -1
	v := kw["indent"]
	if len(args) > 0 {
		v = args[0]
	}
	if n, ok := v.(int64); ok {
		if n < 0 || n > 64 {
			return nil, errorf(line, "tojson indent %d", n)
		}
		indent = int(n)
	}
	w := &limitWriter{max: r.lim.MaxOutput}
	writeJSON(w, x, indent, 0, truthy(kw["sort_keys"]))
	if w.over {
		return nil, r.sizeErr(line, r.lim.MaxOutput+1)
	}
	return w.b.String(), nil
}

// selectFilter is select, reject (by a test of the item), selectattr and
// rejectattr (by a test of an attribute, or its truth).
func selectFilter(reject, byAttr bool) filterFunc {
	return func(r *renderer, x any, args []any, _ map[string]any, line int) (any, error) {
		items, err := iterate(x, line)
		if err != nil {
			return nil, err
		}
		attr := ""
		if byAttr {
			a, ok := strArg(args, 0)
			if !ok {
				return nil, errorf(line, "selectattr needs an attribute name")
			}
			attr, args = a, args[1:]
		}
		var out []any
		for _, it := range items {
			if err := r.step(line); err != nil {
				return nil, err
			}
			v := it
			if byAttr {
				if v, err = getAttr(it, attr, line); err != nil {
					return nil, err
				}
			}
			keep := truthy(v)
			if len(args) > 0 {
				name, _ := strArg(args, 0)
				if keep, err = runTest(r, name, v, args[1:], line); err != nil {
					return nil, err
				}
			}
			if keep != reject {
				out = append(out, it)
			}
		}
		return out, nil
	}
}

func mapFilter(r *renderer, x any, args []any, kw map[string]any, line int) (any, error) {
	items, err := iterate(x, line)
	if err != nil {
		return nil, err
	}
	attr, byAttr := kw["attribute"].(string)
	out := make([]any, len(items))
	for i, it := range items {
		if err := r.step(line); err != nil {
			return nil, err
		}
		if byAttr {
			if out[i], err = getAttr(it, attr, line); err != nil {
				return nil, err
			}
			if _, u := out[i].(undefined); u && hasKey(kw, "default") {
				out[i] = kw["default"]
			}
			continue
		}
		name, ok := strArg(args, 0)
		fn := filters[name]
		if !ok || fn == nil {
			return nil, errorf(line, "map needs attribute= or a filter name")
		}
		if out[i], err = fn(r, it, args[1:], nil, line); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func uniqueFilter(r *renderer, x any, _ []any, _ map[string]any, line int) (any, error) {
	items, err := iterate(x, line)
	var out []any
	for _, it := range items {
		if err := r.step(line); err != nil {
			return nil, err
		}
		dup := false
		for _, o := range out {
			if equal(o, it) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, it)
		}
	}
	return out, err
}

func sortFilter(r *renderer, x any, args []any, kw map[string]any, line int) (any, error) {
	items, err := iterate(x, line)
	if err != nil {
		return nil, err
	}
	out := append([]any(nil), items...)
	rev := len(args) > 0 && truthy(args[0]) || truthy(kw["reverse"])
	attr, _ := kw["attribute"].(string)
	key := func(v any) any {
		if attr != "" {
			v, _ = getAttr(v, attr, line)
		}
		if s, ok := v.(string); ok && !truthy(kw["case_sensitive"]) {
			return strings.ToLower(s)
		}
		return v
	}
	var cmpErr error
	sort.SliceStable(out, func(i, j int) bool {
		lt, err := compare("<", key(out[i]), key(out[j]), line)
		if err != nil {
			cmpErr = err
			return false
		}
		return truthy(lt) != rev && !equal(key(out[i]), key(out[j]))
	})
	return out, cmpErr
}

// limitWriter collects text up to max bytes; past it, it only records
// that it overflowed (so printing a huge or deeply shared value stops
// early).
type limitWriter struct {
	b    strings.Builder
	max  int
	over bool
}

func (w *limitWriter) WriteString(s string) {
	if w.over {
		return
	}
	if w.b.Len()+len(s) > w.max {
		w.over = true
		return
	}
	w.b.WriteString(s)
}

func writeRepr(w *limitWriter, v any, depth int) {
	if depth > maxValueDepth {
		w.over = true
		return
	}
	switch x := v.(type) {
	case []any:
		w.WriteString("[")
		for i, e := range x {
			if w.over {
				return
			}
			if i > 0 {
				w.WriteString(", ")
			}
			writeRepr(w, e, depth+1)
		}
		w.WriteString("]")
	case *Dict:
		w.WriteString("{")
		for i, k := range x.keys {
			if w.over {
				return
			}
			if i > 0 {
				w.WriteString(", ")
			}
			w.WriteString(pyQuote(k) + ": ")
			writeRepr(w, x.m[k], depth+1)
		}
		w.WriteString("}")
	default:
		w.WriteString(scalarRepr(v))
	}
}

// writeJSON writes v as Python's json.dumps(v, ensure_ascii=False,
// indent=indent) does (indent < 0: on one line, ", " and ": " separators).
func writeJSON(w *limitWriter, v any, indent, depth int, sortKeys bool) {
	if depth > maxValueDepth {
		w.over = true
		return
	}
	nl := func(d int) {
		if indent >= 0 {
			w.WriteString("\n" + strings.Repeat(" ", indent*d))
		}
	}
	sep := ", "
	if indent >= 0 {
		sep = ","
	}
	switch x := v.(type) {
	case nil, undefined:
		w.WriteString("null")
	case bool:
		w.WriteString(strconv.FormatBool(x))
	case int64:
		w.WriteString(strconv.FormatInt(x, 10))
	case float64:
		switch {
		case math.IsNaN(x):
			w.WriteString("NaN")
		case math.IsInf(x, 1):
			w.WriteString("Infinity")
		case math.IsInf(x, -1):
			w.WriteString("-Infinity")
		default:
			w.WriteString(pyFloat(x))
		}
	case string:
		w.WriteString(jsonQuote(x))
	case []any:
		if len(x) == 0 {
			w.WriteString("[]")
			return
		}
		w.WriteString("[")
		for i, e := range x {
			if w.over {
				return
			}
			if i > 0 {
				w.WriteString(sep)
			}
			nl(depth + 1)
			writeJSON(w, e, indent, depth+1, sortKeys)
		}
		nl(depth)
		w.WriteString("]")
	case *Dict, *namespace:
		d, ok := x.(*Dict)
		if !ok {
			d = x.(*namespace).d
		}
		if len(d.keys) == 0 {
			w.WriteString("{}")
			return
		}
		keys := d.keys
		if sortKeys {
			keys = append([]string(nil), keys...)
			sort.Strings(keys)
		}
		w.WriteString("{")
		for i, k := range keys {
			if w.over {
				return
			}
			if i > 0 {
				w.WriteString(sep)
			}
			nl(depth + 1)
			w.WriteString(jsonQuote(k) + ": ")
			writeJSON(w, d.m[k], indent, depth+1, sortKeys)
		}
		nl(depth)
		w.WriteString("}")
	default:
		w.WriteString("null")
	}
}

// jsonQuote quotes s as Python's json does with ensure_ascii=False.
func jsonQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00` + strconv.FormatInt(int64(c)|0x100, 16)[1:])
			} else {
				b.WriteRune(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
