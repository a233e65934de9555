package tasks

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzTemplate: parsing and rendering a template never panics.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"Question: {{question}}\nAnswer:", "{{ choices[0] }}{{a.b.strip()}}", "{{", "{{}}", "{{x[}}", "{% x %}", "{{a[99999999999999999999]}}", "{{choices.index(question)}}", "{{a.index(a)}}", "{{n.index(choices.index(n))}}"} {
		f.Add(s)
	}
	r, err := recordOf(`{"question": "q", "choices": ["a", "b"], "a": {"b": " x "}, "n": 3}`)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tp, err := parseTemplate(src)
		if err != nil {
			return
		}
		_, _ = tp.render(r)
		_, _, _ = tp.list(r)
	})
}

// FuzzReaders: every built-in layout reads any JSONL line without a panic.
func FuzzReaders(f *testing.F) {
	for _, s := range []string{
		`{"ctx_a": "a", "ctx_b": "b", "activity_label": "l", "endings": ["x [title] y", "z"], "label": "1"}`,
		`{"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "A"}`,
		`{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 3}`,
		`{"question": "q", "mc2_targets": {"choices": ["a", "b"], "labels": [1, 0]}, "mc1_targets": {"choices": ["a"], "labels": [1]}}`,
		`{"sentence": "a _ b", "option1": "x", "option2": "y", "answer": "2"}`,
		`{"question": "q", "answer": "#### 4"}`, `{"label": -1}`, `[1]`, `{"label": 1e99}`,
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, line string) {
		p := filepath.Join(dir, "f.jsonl")
		if err := os.WriteFile(p, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		for name := range builtins {
			tk, err := Load(name + "=" + p)
			if err != nil {
				continue
			}
			for _, d := range tk.Docs {
				if len(d.Choices) > 0 && (d.Gold < 0 || d.Gold >= len(d.Choices)) {
					t.Fatalf("%s: gold %d of %d choices accepted", name, d.Gold, len(d.Choices))
				}
			}
		}
	})
}

// FuzzTaskFile: a YAML task file of any content loads or fails cleanly.
func FuzzTaskFile(f *testing.F) {
	for _, name := range []string{"colors.yaml", "count.yaml", "gsm8k.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	dir := f.TempDir()
	src, err := os.ReadFile("testdata/colors.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []string{"colors.jsonl", "colors_train.jsonl", "count.jsonl", "gsm8k.jsonl", "gsm8k_train.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, n), src, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(dir, "t.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tk, err := LoadFile(p)
		if err != nil {
			return
		}
		if tk.Kind == MultipleChoice {
			_, _, _ = prepare(tk, Options{Shots: -1})
		}
	})
}

// recordOf decodes one JSON object as a record (for tests and fuzzing).
func recordOf(s string) (record, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return record{}, err
	}
	return record{src: "<string>", m: m}, nil
}

// FuzzMMLUCSV: any CSV file reads as MMLU documents or fails cleanly.
func FuzzMMLUCSV(f *testing.F) {
	for _, s := range []string{"q,a,b,c,d,A\n", "\"q,\"\"x\"\"\",a,b,c,d,D\n", "q,a\n", "\"unterminated,a,b,c,d,A\n", "q,a,b,c,d,\n"} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(dir, "s_test.csv")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tk, err := Load("mmlu=" + p)
		if err != nil {
			return
		}
		for _, d := range tk.Docs {
			if d.Gold < 0 || d.Gold > 3 || len(d.Choices) != 4 {
				t.Fatalf("%+v", d)
			}
		}
	})
}
