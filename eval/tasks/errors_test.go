package tasks

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// write puts a file in dir and returns its path.
func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadInput checks that malformed documents and task files fail with
// an error naming the file and line (and the field).
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	good := `{"question": "q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "A"}` + "\n"
	cases := []struct {
		name, layout, body string
		want               []string
	}{
		{"missing.jsonl", "hellaswag", `{"ctx": "c", "endings": ["a"], "label": 0}` + "\n" + `{"ctx": "c", "label": 0}`, []string{"missing.jsonl:2", `missing field "endings"`}},
		{"nojson.jsonl", "arc_easy", good + "\n{question: 1}\n", []string{"nojson.jsonl:3", "not a JSON object"}},
		{"arckey.jsonl", "arc_easy", good + `{"question": "q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E"}`, []string{"arckey.jsonl:2", `answerKey "E"`}},
		{"mmlu.jsonl", "mmlu", `{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 4, "subject": "s"}`, []string{"mmlu.jsonl:1", "answer 4 is out of range", "4 choices"}},
		{"mmlu3.jsonl", "mmlu", `{"question": "q", "choices": ["a", "b", "c"], "answer": 0}`, []string{"mmlu3.jsonl:1", "4 choices"}},
		{"hslabel.jsonl", "hellaswag", `{"ctx": "c", "endings": ["a", "b"], "label": "7"}`, []string{"hslabel.jsonl:1", "label 7 is out of range"}},
		{"hstype.jsonl", "hellaswag", `{"ctx": "c", "endings": "a", "label": 0}`, []string{"hstype.jsonl:1", `"endings" is a string, not a list`}},
		{"wg.jsonl", "winogrande", `{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}`, []string{"wg.jsonl:1", "no blank"}},
		{"wg3.jsonl", "winogrande", `{"sentence": "a _ b", "option1": "a", "option2": "b", "answer": "3"}`, []string{"wg3.jsonl:1", "answer 3 is out of range"}},
		{"tqa.jsonl", "truthfulqa_mc1", `{"question": "q", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 1]}}`, []string{"tqa.jsonl:1", "2 true answers"}},
		{"tqa2.jsonl", "truthfulqa_mc2", `{"question": "q", "mc2_targets": {"choices": ["a", "b"], "labels": [1]}}`, []string{"tqa2.jsonl:1", "2 choices and 1 labels"}},
		{"gsm.jsonl", "gsm8k", `{"question": "q"}`, []string{"gsm.jsonl:1", `missing field "answer"`}},
		{"empty.jsonl", "gsm8k", "\n\n", []string{"empty.jsonl", "no documents"}},
	}
	for _, c := range cases {
		p := write(t, dir, c.name, c.body)
		_, err := Load(c.layout + "=" + p)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	if _, err := Load("hellaswag"); err == nil || !strings.Contains(err.Error(), "hellaswag=FILE") {
		t.Errorf("a built-in name without data: %v", err)
	}
	if _, err := Load("nosuch=" + filepath.Join(dir, "missing.jsonl")); err == nil || !strings.Contains(err.Error(), "unknown task") {
		t.Errorf("an unknown layout: %v", err)
	}
}

// TestBadTaskFile checks the YAML task file's errors.
func TestBadTaskFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "d.jsonl", `{"q": "x", "c": ["a", "b"], "a": 1}`+"\n"+`{"q": "y", "c": ["a", "b"], "a": 2}`+"\n")
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown.yaml", "task: t\ndata: d.jsonl\ndoc_to_txt: x\n", []string{"unknown.yaml:3", "doc_to_txt"}},
		{"noname.yaml", "data: d.jsonl\n", []string{"noname.yaml", `"task"`}},
		{"nochoice.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n", []string{"nochoice.yaml", "doc_to_choice"}},
		{"jinja.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: '{% for x in q %}{{x}}{% endfor %}'\ndoc_to_target: a\ndoc_to_choice: c\n", []string{"jinja.yaml", "not supported"}},
		{"call.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: '{{q.upper()}}'\ndoc_to_target: a\ndoc_to_choice: c\n", []string{"call.yaml", "not a field name"}},
		{"range.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: '{{q}}'\ndoc_to_target: a\ndoc_to_choice: c\n", []string{"d.jsonl:2", "target index 2 is out of range"}},
		{"field.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: '{{question}}'\ndoc_to_target: a\ndoc_to_choice: c\n", []string{"d.jsonl:1", `missing field "question"`}},
		{"metric.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: '{{q}}'\ndoc_to_target: a\ndoc_to_choice: c\nmetric_list:\n  - metric: bleu\n", []string{"metric.yaml", `"bleu"`}},
		{"regex.yaml", "task: t\ndata: d.jsonl\noutput_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: a\nfilter_list:\n  - name: f\n    filter:\n      - function: regex\n        regex_pattern: '('\n", []string{"regex.yaml", "filter f"}},
		{"nodata.yaml", "task: t\ndata: nothere.jsonl\ndoc_to_text: '{{q}}'\ndoc_to_target: a\ndoc_to_choice: c\n", []string{"nothere.jsonl"}},
	}
	for _, c := range cases {
		_, err := Load(write(t, dir, c.name, c.body))
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
}

// TestTooLongCounted checks that documents which do not fit in the
// context are skipped and counted, never cut, and that the others are
// scored as they would be with room to spare.
func TestTooLongCounted(t *testing.T) {
	m, tok := stories(t)
	tk := loadTask(t, "testdata/arc_easy.yaml")
	full, err := Run(m, tok, []*Task{tk}, Options{Shots: 1})
	if err != nil {
		t.Fatal(err)
	}
	// the longest request of each document, to pick a context between them
	docs, _, _ := prepare(tk, Options{Shots: 1})
	var lens []int
	for _, pd := range docs {
		reqs, err := mcRequests(tok, pd, tk.TargetDelim)
		if err != nil {
			t.Fatal(err)
		}
		lens = append(lens, longest(reqs))
	}
	ctx := lens[0]
	var wantSkip []string
	for i, n := range lens {
		if n > ctx {
			wantSkip = append(wantSkip, tk.Docs[i].Src)
		}
	}
	if len(wantSkip) == 0 {
		t.Fatalf("lengths %v: no document longer than the first", lens)
	}
	r, err := Run(m, tok, []*Task{tk}, Options{Shots: 1, Ctx: ctx})
	if err != nil {
		t.Fatal(err)
	}
	got := r[0]
	if strings.Join(got.Skipped, ",") != strings.Join(wantSkip, ",") || got.Scored != len(tk.Docs)-len(wantSkip) || got.Docs != len(tk.Docs) {
		t.Errorf("context %d (lengths %v): skipped %v, scored %d; want skipped %v", ctx, lens, got.Skipped, got.Scored, wantSkip)
	}
	for _, s := range got.Samples {
		for _, f := range full[0].Samples {
			if f.Doc == s.Doc && f.Pred != s.Pred {
				t.Errorf("%s: scored differently with a shorter context", s.Source)
			}
		}
	}
	g := loadTask(t, "testdata/gsm8k.yaml")
	r, err = Run(m, tok, []*Task{g}, Options{Shots: 1, Ctx: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(r[0].Skipped) != 3 || r[0].Scored != 0 {
		t.Errorf("gsm8k in 20 positions: skipped %v, scored %d", r[0].Skipped, r[0].Scored)
	}
}

// TestShotErrors checks few-shot requests a task cannot meet.
func TestShotErrors(t *testing.T) {
	cases := []struct {
		spec  string
		shots int
		want  string
	}{
		{"testdata/truthfulqa_mc1.yaml", 1, "at most 0"},
		{"testdata/hellaswag.yaml", 4, "the pool holds 3"},
		{"truthfulqa_mc2=testdata/truthfulqa.jsonl", 1, "at most 0"},
		{"arc_easy=testdata/arc.jsonl", 1, "no few-shot split"},
		{"testdata/mmlu.yaml", 3, "subject farm_animals"},
	}
	for _, c := range cases {
		_, _, err := prepare(loadTask(t, c.spec), Options{Shots: c.shots})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %d-shot: error %v, want %q", c.spec, c.shots, err, c.want)
		}
	}
}

// TestMMLUFiles reads MMLU as its original CSV files through globs: the
// same documents, subjects and prompts as the JSONL layout.
func TestMMLUFiles(t *testing.T) {
	csvTask := loadTask(t, "mmlu=testdata/mmlu_csv/*_test.csv,testdata/mmlu_csv/*_dev.csv")
	jsonTask := loadTask(t, "testdata/mmlu.yaml")
	a, _, err := prepare(csvTask, Options{Shots: 2})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := prepare(jsonTask, Options{Shots: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d documents from CSV, %d from JSONL", len(a), len(b))
	}
	for i := range a {
		if a[i].contexts[0] != b[i].contexts[0] || a[i].doc.Gold != b[i].doc.Gold || a[i].doc.Subject != b[i].doc.Subject {
			t.Errorf("document %d: CSV %q gold %d (%s), JSONL %q gold %d (%s)", i, a[i].contexts[0], a[i].doc.Gold, a[i].doc.Subject,
				b[i].contexts[0], b[i].doc.Gold, b[i].doc.Subject)
		}
	}
	dir := t.TempDir()
	bad := write(t, dir, "x_test.csv", "q,a,b,c,d,A\nq,a,b,c,d,E\n")
	if _, err := Load("mmlu=" + bad); err == nil || !strings.Contains(err.Error(), "x_test.csv:2") || !strings.Contains(err.Error(), `answer "E"`) {
		t.Errorf("a bad answer letter: %v", err)
	}
	short := write(t, dir, "y_test.csv", "q,a,b,c,A\n")
	if _, err := Load("mmlu=" + short); err == nil || !strings.Contains(err.Error(), "y_test.csv:1") {
		t.Errorf("a short row: %v", err)
	}
	if _, err := Load("mmlu=" + filepath.Join(dir, "none*.csv")); err == nil || !strings.Contains(err.Error(), "no file matches") {
		t.Errorf("an empty glob: %v", err)
	}
}

// TestNonFiniteModel: a model whose logits are NaN fails the evaluation
// with the document named, instead of scoring argmax over NaN.
func TestNonFiniteModel(t *testing.T) {
	m, tok := stories(t)
	m.OutNorm = append([]float32(nil), m.OutNorm...)
	m.OutNorm[3] = float32(math.NaN())
	_, err := Run(m, tok, []*Task{loadTask(t, "testdata/arc_easy.yaml")}, Options{Shots: 0})
	if err == nil || !strings.Contains(err.Error(), "arc.jsonl:1") || !strings.Contains(err.Error(), "not finite") {
		t.Errorf("NaN logits: %v", err)
	}
}

// TestLimit: --limit takes the first documents of a task, and of each
// subject of a grouped one.
func TestLimit(t *testing.T) {
	hs, _, err := prepare(loadTask(t, "testdata/hellaswag.yaml"), Options{Shots: 0, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	mm, _, err := prepare(loadTask(t, "testdata/mmlu.yaml"), Options{Shots: 0, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[1].idx != 1 || len(mm) != 2 || mm[0].idx != 0 || mm[1].idx != 2 {
		t.Errorf("hellaswag limit 2: %d documents; mmlu limit 1: %d documents (%v)", len(hs), len(mm), mm)
	}
}

// TestHarnessTaskFile: the harness's own arc_easy.yaml, with data: added,
// builds the same prompts and golds as the built-in ARC reader; a task file
// naming Python hooks is refused.
func TestHarnessTaskFile(t *testing.T) {
	pairs := [][2]string{
		{"testdata/arc_harness.yaml", "testdata/arc_easy.yaml"},
		{"testdata/harness/mmlu_simple_math.yaml", "mmlu=testdata/mmlu_math_test.jsonl,testdata/mmlu_math_dev.jsonl"},
		{"testdata/harness/gsm8k.yaml", "testdata/gsm8k.yaml"},
	}
	for _, pair := range pairs {
		h, b := loadTask(t, pair[0]), loadTask(t, pair[1])
		if h.Kind != b.Kind || len(h.Gen.Filters) != len(b.Gen.Filters) || strings.Join(h.Gen.Until, "|") != strings.Join(b.Gen.Until, "|") {
			t.Errorf("%s: kind %v, filters %d, until %q; the reader's %v, %d, %q", pair[0], h.Kind, len(h.Gen.Filters), h.Gen.Until, b.Kind, len(b.Gen.Filters), b.Gen.Until)
		}
		for i, f := range h.Gen.Filters {
			g := b.Gen.Filters[i]
			if f.Name != g.Name || f.Regex.String() != g.Regex.String() || f.Group != g.Group || f.Fallback != g.Fallback {
				t.Errorf("%s filter %d: %+v, the reader's %+v", pair[0], i, f, g)
			}
		}
		for _, shots := range []int{0, 2} {
			x, _, err := prepare(h, Options{Shots: shots})
			if err != nil {
				t.Fatal(err)
			}
			y, _, err := prepare(b, Options{Shots: shots})
			if err != nil {
				t.Fatal(err)
			}
			for i := range y {
				if x[i].contexts[0] != y[i].contexts[0] || x[i].doc.Gold != y[i].doc.Gold || x[i].doc.Target != y[i].doc.Target ||
					strings.Join(x[i].doc.Choices, "|") != strings.Join(y[i].doc.Choices, "|") {
					t.Errorf("%s %d-shot document %d: harness YAML %q gold %d, reader %q gold %d", pair[0], shots, i, x[i].contexts, x[i].doc.Gold, y[i].contexts, y[i].doc.Gold)
				}
			}
		}
	}
	dir := t.TempDir()
	write(t, dir, "d.jsonl", `{"q": "x", "c": ["a", "b"], "a": 1}`+"\n")
	p := write(t, dir, "py.yaml", "task: t\ndata: d.jsonl\nprocess_docs: !function utils.process_docs\ndoc_to_text: q\ndoc_to_target: a\ndoc_to_choice: c\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "py.yaml:3") || !strings.Contains(err.Error(), "Python") {
		t.Errorf("process_docs: %v", err)
	}
	write(t, dir, "a.yaml", "include: b.yaml\ntask: a\n")
	write(t, dir, "b.yaml", "include: a.yaml\n")
	if _, err := Load(filepath.Join(dir, "a.yaml")); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("an include cycle: %v", err)
	}
	p = write(t, dir, "sample.yaml", "task: t\ndata: d.jsonl\noutput_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\ngeneration_kwargs:\n  do_sample: true\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "greedily") {
		t.Errorf("do_sample: %v", err)
	}
	p = write(t, dir, "idx.yaml", "task: t\ndata: d.jsonl\ndoc_to_text: q\ndoc_to_target: '{{c.index(q)}}'\ndoc_to_choice: c\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "d.jsonl:1") || !strings.Contains(err.Error(), "is not in c") {
		t.Errorf(".index of a missing value: %v", err)
	}
}
