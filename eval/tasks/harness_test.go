package tasks

import (
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestPromptsMatchHarness compares every prompt and continuation herd
// builds for the shipped task files, at 0 to 3 examples, with those
// lm-evaluation-harness's own code builds (testdata/harness_prompts.json,
// written by testdata/harness_prompts.py from the harness's source: its
// templates rendered by Jinja2, its samplers seeded with 1234, its
// build_qa_turn, HellaSwag preprocessing and Winogrande functions).
func TestPromptsMatchHarness(t *testing.T) {
	b, err := os.ReadFile("testdata/harness_prompts.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string][]struct {
		Contexts      []string `json:"contexts"`
		Continuations []string `json:"continuations"`
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	specs := map[string]string{
		"hellaswag": "testdata/hellaswag.yaml", "arc_easy": "testdata/arc_easy.yaml",
		"arc_easy_same":     "arc_easy=testdata/arc.jsonl,testdata/arc.jsonl",
		"mmlu_farm_animals": "testdata/mmlu.yaml", "mmlu_simple_math": "testdata/mmlu.yaml",
		"truthfulqa_mc1": "testdata/truthfulqa_mc1.yaml", "truthfulqa_mc2": "testdata/truthfulqa_mc2.yaml",
		"winogrande": "testdata/winogrande.yaml", "gsm8k": "testdata/gsm8k.yaml",
	}
	checked := 0
	for key, want := range golden {
		name, k, _ := strings.Cut(key, "/")
		shots, _ := strconv.Atoi(k)
		tk := loadTask(t, specs[name])
		docs, _, err := prepare(tk, Options{Shots: shots})
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		var got []prepared
		for _, pd := range docs {
			if subj, ok := strings.CutPrefix(name, "mmlu_"); !ok || pd.doc.Subject == subj {
				got = append(got, pd)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d documents, the harness %d", key, len(got), len(want))
		}
		for i, w := range want {
			pd := got[i]
			if strings.Join(pd.contexts, "\x00") != strings.Join(w.Contexts, "\x00") {
				t.Errorf("%s document %d:\n herd    %q\n harness %q", key, i, pd.contexts, w.Contexts)
			}
			var conts []string
			if len(pd.doc.Contexts) > 0 {
				conts = []string{tk.TargetDelim + pd.doc.Target}
			} else if tk.Kind == MultipleChoice {
				for _, c := range pd.doc.Choices {
					conts = append(conts, tk.TargetDelim+c)
				}
			}
			if strings.Join(conts, "\x00") != strings.Join(w.Continuations, "\x00") {
				t.Errorf("%s document %d continuations:\n herd    %q\n harness %q", key, i, conts, w.Continuations)
			}
			checked++
		}
	}
	t.Logf("%d prompts compared", checked)
	if checked < 80 {
		t.Errorf("only %d prompts compared", checked)
	}
}

// TestMetricsMatchHarness scores what lm-evaluation-harness's own code
// scored (testdata/harness_metrics.json, written by
// testdata/harness_metrics.py from the harness's source): acc, acc_norm,
// acc_bytes and MC2 of log-likelihood vectors (with ties and non-ASCII
// choices), the mean's standard error, and the GSM8K strict and flexible
// extractions with their exact match.
func TestMetricsMatchHarness(t *testing.T) {
	b, err := os.ReadFile("testdata/harness_metrics.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		MC []struct {
			Choices  []string
			Gold     int
			LLs      []float64
			Labels   []int
			Acc      float64 `json:"acc"`
			AccNorm  float64 `json:"acc_norm"`
			AccBytes float64 `json:"acc_bytes"`
			MC2      float64 `json:"mc2"`
		} `json:"multiple_choice"`
		Stderr []struct {
			X            []float64
			Mean, Stderr float64
		}
		GSM8K []struct {
			Filter, Generated, Reference, Extracted string
			ExactMatch                              float64 `json:"exact_match"`
		} `json:"gsm8k"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	for i, c := range g.MC {
		got, _ := mcScores(&Doc{Choices: c.Choices, Gold: c.Gold, Labels: c.Labels}, c.LLs)
		want := map[string]float64{"acc": c.Acc, "acc_norm": c.AccNorm, "acc_bytes": c.AccBytes, "mc2": c.MC2}
		for k, w := range want {
			if math.Abs(got[k]-w) > 1e-12 {
				t.Errorf("case %d (%q, lls %v, gold %d): %s %g, harness %g", i, c.Choices, c.LLs, c.Gold, k, got[k], w)
			}
		}
	}
	for _, c := range g.Stderr {
		mu, se := meanStderr(c.X)
		if math.Abs(mu-c.Mean) > 1e-12 || math.Abs(se-c.Stderr) > 1e-12 {
			t.Errorf("%v: mean %g ± %g, harness %g ± %g", c.X, mu, se, c.Mean, c.Stderr)
		}
	}
	gsm := loadTask(t, "testdata/gsm8k.yaml")
	filters := map[string]Filter{}
	for _, f := range gsm.Gen.Filters {
		filters[f.Name] = f
	}
	for _, c := range g.GSM8K {
		f, ok := filters[c.Filter]
		if !ok {
			t.Fatalf("no filter %s", c.Filter)
		}
		got := f.Apply(c.Generated)
		em := b2f(gsm.Gen.Match.Equal(got, c.Reference))
		if got != c.Extracted || em != c.ExactMatch {
			t.Errorf("%s %q: extracted %q (exact match %g), harness %q (%g)", c.Filter, c.Generated, got, em, c.Extracted, c.ExactMatch)
		}
	}
	if len(g.MC) < 40 || len(g.GSM8K) < 30 {
		t.Errorf("golden file too small: %d, %d", len(g.MC), len(g.GSM8K))
	}
}
