package jinja

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// globalFuncs are the functions every template can call, those of Jinja2
// and the two transformers adds (raise_exception, strftime_now).
var globalFuncs = map[string]builtin{
	"range":           rangeFunc,
	"namespace":       namespaceFunc,
	"dict":            dictFunc,
	"raise_exception": raiseFunc,
	"strftime_now":    strftimeFunc,
}

func rangeFunc(r *renderer, args []any, _ map[string]any, line int) (any, error) {
	var b [3]int64
	b[2] = 1
	ints := make([]int64, len(args))
	for i, a := range args {
		n, ok := a.(int64)
		if !ok {
			return nil, errorf(line, "range() takes integers, not %s", typeName(a))
		}
		ints[i] = n
	}
	switch len(ints) {
	case 1:
		b[1] = ints[0]
	case 2, 3:
		copy(b[:], ints)
	default:
		return nil, errorf(line, "range() takes 1 to 3 arguments")
	}
	if b[2] == 0 {
		return nil, errorf(line, "range() step cannot be zero")
	}
	var count int64
	if b[2] > 0 && b[1] > b[0] {
		count = (b[1] - b[0] + b[2] - 1) / b[2]
	} else if b[2] < 0 && b[1] < b[0] {
		count = (b[0] - b[1] - b[2] - 1) / -b[2]
	}
	if count > int64(r.lim.MaxItems) {
		return nil, r.itemsErr(line, -1)
	}
	for range count / 16 { // building the list is work too
		if err := r.step(line); err != nil {
			return nil, err
		}
	}
	out := make([]any, count)
	for i := range out {
		out[i] = b[0] + int64(i)*b[2]
	}
	return out, nil
}

func namespaceFunc(_ *renderer, args []any, kw map[string]any, line int) (any, error) {
	d := NewDict()
	for _, a := range args {
		src, ok := a.(*Dict)
		if !ok {
			return nil, errorf(line, "namespace() takes a dict or keyword arguments")
		}
		for _, k := range src.keys {
			d.Set(k, src.m[k])
		}
	}
	for _, k := range sortedKeys(kw) {
		d.Set(k, kw[k])
	}
	return &namespace{d: d}, nil
}

func dictFunc(_ *renderer, _ []any, kw map[string]any, _ int) (any, error) {
	d := NewDict()
	for _, k := range sortedKeys(kw) {
		d.Set(k, kw[k])
	}
	return d, nil
}

func raiseFunc(_ *renderer, args []any, _ map[string]any, line int) (any, error) {
	msg := "raise_exception"
	if len(args) > 0 {
		msg = str(args[0])
	}
	return nil, errorf(line, "the template refuses the conversation: %s", msg)
}

// strftimeFunc formats the current time with the strftime directives chat
// templates use.
func strftimeFunc(_ *renderer, args []any, _ map[string]any, line int) (any, error) {
	if len(args) != 1 {
		return nil, errorf(line, "strftime_now() takes a format")
	}
	f, _ := args[0].(string)
	now := time.Now()
	repl := map[byte]string{'d': "02", 'm': "01", 'Y': "2006", 'y': "06", 'H': "15", 'M': "04", 'S': "05", 'b': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday", 'p': "PM"}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		if l, ok := repl[f[i]]; ok {
			b.WriteString(now.Format(l))
		} else if f[i] == '%' {
			b.WriteByte('%')
		} else {
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String(), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// method returns the method name of x (str, dict and list methods that
// chat templates call), or nil.
func method(x any, name string) builtin {
	switch v := x.(type) {
	case string:
		return strMethod(v, name)
	case *Dict:
		return dictMethod(v, name)
	case []any:
		if name == "index" {
			return func(_ *renderer, args []any, _ map[string]any, line int) (any, error) {
				for i, e := range v {
					if len(args) == 1 && equal(e, args[0]) {
						return int64(i), nil
					}
				}
				return nil, errorf(line, "the value is not in the list")
			}
		}
	}
	return nil
}

func strArg(args []any, i int) (string, bool) {
	if i >= len(args) || args[i] == nil {
		return "", false
	}
	s, ok := args[i].(string)
	return s, ok
}

func strMethod(s, name string) builtin {
	one := func(f func(string) string) builtin {
		return func(*renderer, []any, map[string]any, int) (any, error) { return f(s), nil }
	}
	switch name {
	case "strip", "lstrip", "rstrip":
		return func(_ *renderer, args []any, _ map[string]any, _ int) (any, error) {
			cut, ok := strArg(args, 0)
			trim := func(t string) string { return strings.TrimSpace(t) }
			if ok {
				trim = func(t string) string { return strings.Trim(t, cut) }
			}
			switch name {
			case "lstrip":
				if ok {
					return strings.TrimLeft(s, cut), nil
				}
				return strings.TrimLeftFunc(s, unicode.IsSpace), nil
			case "rstrip":
				if ok {
					return strings.TrimRight(s, cut), nil
				}
				return strings.TrimRightFunc(s, unicode.IsSpace), nil
			}
			return trim(s), nil
		}
	case "upper":
		return one(strings.ToUpper)
	case "lower":
		return one(strings.ToLower)
	case "title":
		return one(title)
	case "capitalize":
		return one(capitalize)
	case "startswith", "endswith":
		return func(_ *renderer, args []any, _ map[string]any, line int) (any, error) {
			var cands []string
			if l, ok := args0(args).([]any); ok {
				for _, c := range l {
					cands = append(cands, str(c))
				}
			} else if p, ok := strArg(args, 0); ok {
				cands = []string{p}
			} else {
				return nil, errorf(line, "%s() takes a string", name)
			}
			for _, p := range cands {
				if name == "startswith" && strings.HasPrefix(s, p) || name == "endswith" && strings.HasSuffix(s, p) {
					return true, nil
				}
			}
			return false, nil
		}
	case "split":
		return func(r *renderer, args []any, _ map[string]any, line int) (any, error) {
			var parts []string
			if sep, ok := strArg(args, 0); ok && sep != "" {
				parts = strings.Split(s, sep)
			} else {
				parts = strings.Fields(s)
			}
			if err := r.itemsErr(line, len(parts)); err != nil {
				return nil, err
			}
			out := make([]any, len(parts))
			for i, p := range parts {
				out[i] = p
			}
			return out, nil
		}
	case "replace":
		return func(r *renderer, args []any, _ map[string]any, line int) (any, error) {
			return r.replace(s, args, line)
		}
	case "join":
		return func(r *renderer, args []any, _ map[string]any, line int) (any, error) {
			if len(args) != 1 {
				return nil, errorf(line, "join() takes a list")
			}
			return joinFilter(r, args[0], []any{s}, nil, line)
		}
	case "find", "count":
		return func(_ *renderer, args []any, _ map[string]any, line int) (any, error) {
			sub, ok := strArg(args, 0)
			if !ok {
				return nil, errorf(line, "%s() takes a string", name)
			}
			if name == "count" {
				if sub == "" {
					return int64(utf8.RuneCountInString(s) + 1), nil
				}
				return int64(strings.Count(s, sub)), nil
			}
			i := strings.Index(s, sub)
			if i < 0 {
				return int64(-1), nil
			}
			return int64(utf8.RuneCountInString(s[:i])), nil
		}
	case "format":
		return func(r *renderer, args []any, _ map[string]any, line int) (any, error) {
			var b strings.Builder
			k := 0
			for i := 0; i < len(s); i++ {
				if strings.HasPrefix(s[i:], "{}") && k < len(args) {
					b.WriteString(str(args[k]))
					k++
					i++
					continue
				}
				b.WriteByte(s[i])
			}
			return b.String(), r.sizeErr(line, b.Len())
		}
	}
	return nil
}

func args0(args []any) any {
	if len(args) == 0 {
		return nil
	}
	return args[0]
}

func (r *renderer) replace(s string, args []any, line int) (any, error) {
	old, ok1 := strArg(args, 0)
	nw, ok2 := strArg(args, 1)
	if !ok1 || !ok2 {
		return nil, errorf(line, "replace() takes two strings")
	}
	n := -1
	if len(args) > 2 {
		if c, ok := args[2].(int64); ok {
			n = int(c)
		}
	}
	count := strings.Count(s, old)
	if old == "" {
		count = utf8.RuneCountInString(s) + 1
	}
	if n >= 0 {
		count = min(count, n)
	}
	if err := r.sizeErr(line, len(s)+count*(len(nw)-len(old))); err != nil {
		return nil, err
	}
	return strings.Replace(s, old, nw, n), nil
}

func dictMethod(d *Dict, name string) builtin {
	switch name {
	case "items", "keys", "values":
		return func(*renderer, []any, map[string]any, int) (any, error) {
			out := make([]any, len(d.keys))
			for i, k := range d.keys {
				switch name {
				case "items":
					out[i] = []any{k, d.m[k]}
				case "keys":
					out[i] = k
				default:
					out[i] = d.m[k]
				}
			}
			return out, nil
		}
	case "get":
		return func(_ *renderer, args []any, _ map[string]any, line int) (any, error) {
			k, ok := strArg(args, 0)
			if !ok {
				return nil, errorf(line, "get() takes a key")
			}
			if v, ok := d.get(k); ok {
				return v, nil
			}
			if len(args) > 1 {
				return args[1], nil
			}
			return nil, nil
		}
	}
	return nil
}

func title(s string) string {
	prev := ' '
	return strings.Map(func(c rune) rune {
		defer func() { prev = c }()
		if unicode.IsLetter(prev) || unicode.IsDigit(prev) || prev == '\'' {
			return unicode.ToLower(c)
		}
		return unicode.ToUpper(c)
	}, s)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	c, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(c)) + strings.ToLower(s[n:])
}

// knownTests are the tests runTest knows, checked when a template is parsed.
var knownTests = map[string]bool{}

func init() {
	for _, n := range strings.Fields("defined undefined none string number integer float boolean true false mapping sequence iterable callable even odd divisibleby eq equalto ne lt gt le ge in lower upper") {
		knownTests[n] = true
	}
}

// runTest runs "x is name(args)".
func runTest(r *renderer, name string, x any, args []any, line int) (bool, error) {
	arg := func() (any, error) {
		if len(args) != 1 {
			return nil, errorf(line, "test %s takes one argument", name)
		}
		return args[0], nil
	}
	switch name {
	case "defined":
		_, u := x.(undefined)
		return !u, nil
	case "undefined":
		_, u := x.(undefined)
		return u, nil
	case "none":
		return x == nil, nil
	case "string":
		_, ok := x.(string)
		return ok, nil
	case "number":
		switch x.(type) {
		case int64, float64:
			return true, nil
		}
		return false, nil
	case "integer":
		_, ok := x.(int64)
		return ok, nil
	case "float":
		_, ok := x.(float64)
		return ok, nil
	case "boolean":
		_, ok := x.(bool)
		return ok, nil
	case "true", "false":
		b, ok := x.(bool)
		return ok && b == (name == "true"), nil
	case "mapping":
		switch x.(type) {
		case *Dict, *namespace:
			return true, nil
		}
		return false, nil
	case "sequence", "iterable":
		switch x.(type) {
		case []any, string, *Dict:
			return true, nil
		}
		return false, nil
	case "callable":
		switch x.(type) {
		case builtin, *macro:
			return true, nil
		}
		return false, nil
	case "even", "odd":
		n, ok := x.(int64)
		if !ok {
			return false, errorf(line, "test %s needs an integer", name)
		}
		return (n%2 == 0) == (name == "even"), nil
	case "divisibleby":
		a, err := arg()
		if err != nil {
			return false, err
		}
		n, ok1 := x.(int64)
		d, ok2 := a.(int64)
		if !ok1 || !ok2 || d == 0 {
			return false, errorf(line, "divisibleby needs nonzero integers")
		}
		return n%d == 0, nil
	case "eq", "equalto", "==", "ne", "!=", "lt", "<", "gt", ">", "le", "<=", "ge", ">=", "in":
		a, err := arg()
		if err != nil {
			return false, err
		}
		op := map[string]string{"eq": "==", "equalto": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}[name]
		if op == "" {
			op = name
		}
		if op == "in" {
			v, err := r.contains(a, x, line)
			return truthy(v), err
		}
		v, err := r.operate(op, x, a, line)
		return truthy(v), err
	case "lower", "upper":
		s, ok := x.(string)
		return ok && (name == "lower" && s == strings.ToLower(s) || name == "upper" && s == strings.ToUpper(s)), nil
	}
	return false, errorf(line, "unknown test %q", name)
}

// formatNumber prints a number for the int and float filters.
func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0
		}
		return int64(x)
	case bool:
		if x {
			return 1
		}
	case string:
		if n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
			return n
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			return toInt(f)
		}
	}
	return 0
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case string:
		f, _ := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f
	}
	f, _ := number(v)
	return f
}
