package jinja

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func load(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// loadContexts reads testdata/contexts.json keeping the order of object
// keys (as Python's dicts do; tojson prints them in that order).
func loadContexts(t testing.TB) []map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/contexts.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := ordered(dec)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, c := range v.([]any) {
		d := c.(*Dict)
		m := map[string]any{}
		for _, k := range d.keys {
			m[k] = d.m[k]
		}
		out = append(out, m)
	}
	return out
}

func ordered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Delim:
		if x == '[' {
			var l []any
			for dec.More() {
				v, err := ordered(dec)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token()
			return l, err
		}
		d := NewDict()
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := ordered(dec)
			if err != nil {
				return nil, err
			}
			d.Set(k.(string), v)
		}
		_, err := dec.Token()
		return d, err
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		f, err := x.Float64()
		return f, err
	}
	return tok, nil
}

// TestGolden renders the common Hugging Face chat templates and feature
// templates with every conversation of testdata/contexts.json and compares
// with Jinja2's output (testdata/golden.json, made by testdata/gen.py with
// Jinja2 configured as transformers configures it). Where Jinja2 raised,
// herd must fail too.
func TestGolden(t *testing.T) {
	var templates map[string]string
	var golden map[string][]any
	load(t, "templates.json", &templates)
	contexts := loadContexts(t)
	load(t, "golden.json", &golden)
	for name, src := range templates {
		t.Run(name, func(t *testing.T) {
			tp, err := Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			for i, ctx := range contexts {
				got, err := tp.Render(ctx, Limits{})
				switch want := golden[name][i].(type) {
				case string:
					if err != nil {
						t.Errorf("context %d: %v; want %q", i, err, want)
					} else if got != want {
						t.Errorf("context %d:\n got %q\nwant %q", i, got, want)
					}
				case map[string]any:
					if err == nil {
						t.Errorf("context %d: rendered %q; Jinja2 raised %v", i, got, want["error"])
					}
				}
			}
		})
	}
}

// TestHostile: the templates of issue 21 fail fast with a limit error, the
// process survives (a recursive macro once overflowed the Go stack).
func TestHostile(t *testing.T) {
	for name, src := range map[string]string{
		"huge string":       "{{ 'a' * 3000000000 }}",
		"huge range":        "{% for i in range(200000000) %}{% endfor %}",
		"nested loops":      "{% for i in range(3000) %}{% for j in range(3000) %}{% for k in range(3000) %}{% endfor %}{% endfor %}{% endfor %}",
		"recursive macro":   "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
		"doubling":          "{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
		"list doubling":     "{% set ns = namespace(l=[1]) %}{% for i in range(100) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}",
		"shared nesting":    "{% set ns = namespace(l=[1]) %}{% for i in range(80) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
		"shared tojson":     "{% set ns = namespace(l=[1]) %}{% for i in range(80) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l | tojson }}",
		"shared equality":   "{% set ns = namespace(a=[1], b=[1]) %}{% for i in range(80) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
		"deep list":         "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
		"output flood":      "{% for i in range(1000000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
		"replace explosion": "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s.replace('a', 'aa') %}{% endfor %}",
		"join explosion":    "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}",
	} {
		t.Run(name, func(t *testing.T) {
			tp, err := Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = tp.Render(nil, Limits{})
			var je *Error
			if !errors.As(err, &je) || !je.Limit {
				t.Fatalf("want a limit error, got %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	// nesting beyond the parser's depth is refused at parse time
	if _, err := Parse("{{ " + strings.Repeat("(", 10000) + "1" + strings.Repeat(")", 10000) + " }}"); err == nil {
		t.Error("10000 nested parentheses parsed")
	}
	if _, err := Parse(strings.Repeat("{% if true %}", 10000)); err == nil {
		t.Error("10000 nested ifs parsed")
	}
}

// TestParseErrors: broken templates fail at parse time with the line.
func TestParseErrors(t *testing.T) {
	for src, want := range map[string]string{
		"{% if x %}":                  "missing {% endif %}",
		"{{ x | nosuchfilter }}":      "unknown filter",
		"a\n{{ x is nosuchtest }}":    "line 2",
		"{% for x in y %}{% endif %}": "unexpected",
		"{{ 'abc }}":                  "not closed",
		"{% frobnicate %}":            "unknown statement",
	} {
		if _, err := Parse(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", src, err, want)
		}
	}
}

// FuzzTemplate parses and renders arbitrary templates under small limits:
// never a panic, never past the limits' time.
func FuzzTemplate(f *testing.F) {
	var templates map[string]string
	load(f, "templates.json", &templates)
	for _, src := range templates {
		f.Add(src)
	}
	f.Add("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}")
	f.Add("{{ 'a' * 99999999999 }}{{ [1] * 99999999999 }}")
	contexts := loadContexts(f)
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := Parse(src)
		if err != nil {
			return
		}
		start := time.Now()
		out, err := tp.Render(contexts[2], Limits{MaxSteps: 20000, MaxOutput: 1 << 16, MaxItems: 1 << 12, Timeout: 200 * time.Millisecond})
		if err == nil && len(out) > 1<<16 {
			t.Errorf("output of %d bytes past the limit", len(out))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("render took %s", d)
		}
	})
}

// BenchmarkRender renders the Llama-3 and Qwen2 templates over a
// 20-message conversation; it reports renders per second.
func BenchmarkRender(b *testing.B) {
	var templates map[string]string
	load(b, "templates.json", &templates)
	var msgs []any
	for i := range 20 {
		msgs = append(msgs, map[string]any{"role": []string{"user", "assistant"}[i%2], "content": strings.Repeat("word ", 40)})
	}
	for _, name := range []string{"llama-3", "qwen2"} {
		tp, err := Parse(templates[name])
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tp.Render(map[string]any{"messages": msgs, "add_generation_prompt": true, "bos_token": "<s>"}, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renders/s")
		})
	}
}
