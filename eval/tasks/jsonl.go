package tasks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// maxLine bounds one JSONL line (a document), so a runaway file fails
// with a clear error instead of exhausting memory.
const maxLine = 16 << 20

// record is one decoded JSONL line with where it came from.
type record struct {
	src string // file:line
	m   map[string]any
}

// readJSONL reads a file of one JSON object per line (blank lines
// skipped), numbers kept as json.Number.
func readJSONL(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []record
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		src := fmt.Sprintf("%s:%d", path, n)
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("%s: not a JSON object: %w", src, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s: more than one JSON value on the line", src)
		}
		out = append(out, record{src, m})
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, fmt.Errorf("%s:%d: a line longer than %d MiB", path, len(out)+1, maxLine>>20)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no documents", path)
	}
	return out, nil
}

// field looks up a dotted path (a.b) in a record.
func (r record) field(path string) (any, error) {
	var v any = r.m
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: field %q: %s is not an object", r.src, path, k)
		}
		if v, ok = m[k]; !ok {
			return nil, fmt.Errorf("%s: missing field %q", r.src, path)
		}
	}
	return v, nil
}

// str reads a string field.
func (r record) str(path string) (string, error) {
	v, err := r.field(path)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: field %q is %s, not a string", r.src, path, kindOf(v))
	}
	return s, nil
}

// strs reads a list of strings.
func (r record) strs(path string) ([]string, error) {
	v, err := r.field(path)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: field %q is %s, not a list", r.src, path, kindOf(v))
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%s: field %q[%d] is %s, not a string", r.src, path, i, kindOf(e))
		}
		out[i] = s
	}
	return out, nil
}

// integer reads an integer field, given as a number or a string of digits
// (HellaSwag's labels and Winogrande's answers are strings).
func (r record) integer(path string) (int, error) {
	v, err := r.field(path)
	if err != nil {
		return 0, err
	}
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, fmt.Errorf("%s: field %q is %s, not an integer", r.src, path, kindOf(v))
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: field %q is %q, not an integer", r.src, path, s)
	}
	return n, nil
}

// ints reads a list of integers.
func (r record) ints(path string) ([]int, error) {
	v, err := r.field(path)
	if err != nil {
		return nil, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: field %q is %s, not a list", r.src, path, kindOf(v))
	}
	out := make([]int, len(l))
	for i, e := range l {
		n, ok := e.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%s: field %q[%d] is %s, not an integer", r.src, path, i, kindOf(e))
		}
		k, err := strconv.Atoi(n.String())
		if err != nil {
			return nil, fmt.Errorf("%s: field %q[%d] is %s, not an integer", r.src, path, i, n)
		}
		out[i] = k
	}
	return out, nil
}

// kindOf names a JSON value's type for an error message.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// checkIndex refuses an answer index outside the choices.
func checkIndex(src, what string, i, n int) error {
	if i < 0 || i >= n {
		return fmt.Errorf("%s: %s %d is out of range: the document has %d choices (0..%d)", src, what, i, n, n-1)
	}
	return nil
}
