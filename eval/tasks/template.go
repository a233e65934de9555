package tasks

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// template is a small, bounded subset of the Jinja the harness's task
// files use: literal text with {{ expr }} substitutions, where expr is a
// field path (question, choices.text, choices[0]) optionally followed by
// .strip(), or list.index(field) (the position of one field's value in a
// list, as ARC's "{{choices.label.index(answerKey)}}"). Nothing else is
// evaluated, so a task file cannot run code or
// loop.
type template struct {
	src   string
	parts []tmplPart
}

type tmplPart struct {
	lit   string
	path  []step // nil for a literal
	strip bool
	index []step // list.index(index): the position of this field's value in the list at path
}

// step is one field access: a key, or an index when key is "".
type step struct {
	key string
	idx int
}

// parseTemplate compiles src.
func parseTemplate(src string) (*template, error) {
	t := &template{src: src}
	rest := src
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, tmplPart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i]})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("template %q: {{ without }}", src)
		}
		p, err := parseExpr(strings.TrimSpace(rest[i+2 : i+j]))
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", src, err)
		}
		t.parts = append(t.parts, p)
		rest = rest[i+j+2:]
	}
	if strings.Contains(src, "{%") {
		return nil, fmt.Errorf("template %q: {%% statements are not supported (only {{ field }}, {{ field[0] }}, {{ field.sub }}, .strip() and .index(field))", src)
	}
	return t, nil
}

// parseExpr reads path[.strip()].
func parseExpr(e string) (tmplPart, error) {
	p := tmplPart{}
	if s, ok := strings.CutSuffix(e, ".strip()"); ok {
		e, p.strip = s, true
	} else if i := strings.Index(e, ".index("); i > 0 && strings.HasSuffix(e, ")") {
		arg, err := parseExpr(strings.TrimSpace(e[i+len(".index(") : len(e)-1]))
		if err != nil || arg.strip || arg.index != nil {
			return p, fmt.Errorf("%q: .index() takes a field", e)
		}
		p.index, e = arg.path, e[:i]
	}
	for e != "" {
		switch {
		case e[0] == '[':
			k := strings.IndexByte(e, ']')
			if k < 0 {
				return p, fmt.Errorf("%q: [ without ]", e)
			}
			n, err := strconv.Atoi(strings.TrimSpace(e[1:k]))
			if err != nil || n < 0 {
				return p, fmt.Errorf("%q: an index must be a non-negative integer", e)
			}
			p.path, e = append(p.path, step{idx: n}), e[k+1:]
		case e[0] == '.' && len(p.path) > 0:
			e = e[1:]
		default:
			k := strings.IndexAny(e, ".[")
			if k < 0 {
				k = len(e)
			}
			name := e[:k]
			if !isIdent(name) {
				return p, fmt.Errorf("%q is not a field name (only fields, [index], .strip() and .index(field) are supported)", name)
			}
			p.path, e = append(p.path, step{key: name}), e[k:]
		}
	}
	if len(p.path) == 0 {
		return p, fmt.Errorf("an empty {{ }}")
	}
	return p, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// lookup follows a path in a record.
func lookup(r record, path []step) (any, error) {
	var v any = r.m
	name := ""
	for _, s := range path {
		if s.key != "" {
			name += "." + s.key
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: %s is %s, not an object", r.src, strings.TrimPrefix(name, "."), kindOf(v))
			}
			if v, ok = m[s.key]; !ok {
				return nil, fmt.Errorf("%s: missing field %q", r.src, strings.TrimPrefix(name, "."))
			}
			continue
		}
		name += fmt.Sprintf("[%d]", s.idx)
		l, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s is %s, not a list", r.src, strings.TrimPrefix(name, "."), kindOf(v))
		}
		if s.idx >= len(l) {
			return nil, fmt.Errorf("%s: %s is out of range: the list has %d items", r.src, strings.TrimPrefix(name, "."), len(l))
		}
		v = l[s.idx]
	}
	return v, nil
}

// scalar renders a string or number as text.
func scalar(src, what string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("%s: %s is %s, not text", src, what, kindOf(v))
}

// render fills the template from a record.
func (t *template) render(r record) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.path == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := lookup(r, p.path)
		if err != nil {
			return "", err
		}
		if p.index != nil {
			if v, err = listIndex(r, p, v); err != nil {
				return "", err
			}
		}
		s, err := scalar(r.src, "{{"+pathString(p.path)+"}}", v)
		if err != nil {
			return "", err
		}
		if p.strip {
			s = pyStrip(s)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// list renders a template that is a single {{ expr }} naming a list as
// that list's items.
func (t *template) list(r record) ([]string, bool, error) {
	if len(t.parts) != 1 || t.parts[0].path == nil || t.parts[0].strip || t.parts[0].index != nil {
		return nil, false, nil
	}
	v, err := lookup(r, t.parts[0].path)
	if err != nil {
		return nil, true, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, false, nil
	}
	out := make([]string, len(l))
	for i, e := range l {
		if out[i], err = scalar(r.src, fmt.Sprintf("%s[%d]", pathString(t.parts[0].path), i), e); err != nil {
			return nil, true, err
		}
	}
	return out, true, nil
}

// listIndex is Python's list.index: where the value of p.index's field
// is in the list v.
func listIndex(r record, p tmplPart, v any) (any, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: %s is %s, not a list", r.src, pathString(p.path), kindOf(v))
	}
	x, err := lookup(r, p.index)
	if err != nil {
		return nil, err
	}
	for i, e := range l {
		if reflect.DeepEqual(e, x) {
			return json.Number(strconv.Itoa(i)), nil
		}
	}
	return nil, fmt.Errorf("%s: %v (%s) is not in %s", r.src, x, pathString(p.index), pathString(p.path))
}

func pathString(p []step) string {
	var b strings.Builder
	for _, s := range p {
		if s.key != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.key)
		} else {
			fmt.Fprintf(&b, "[%d]", s.idx)
		}
	}
	return b.String()
}
