package tasks

import (
	"encoding/json"
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
