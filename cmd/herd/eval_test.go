package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/lora"
)

// evalResults is the part of results.json the tests read.
type evalResults struct {
	Results map[string]map[string]any `json:"results"`
	Groups  map[string]map[string]any `json:"groups"`
	NShot   map[string]int            `json:"n-shot"`
	Herd    map[string]struct {
		Rate    float64 `json:"examples_per_sec"`
		Skipped int     `json:"skipped"`
	} `json:"herd"`
	Samples map[string][]struct {
		LogLikelihoods []float64 `json:"loglikelihoods"`
	} `json:"samples"`
}

func readResults(t *testing.T, path string) evalResults {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r evalResults
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// TestEvalCommand runs herd eval on the shipped task files with the
// embedded stories260K: the table, results.json's layout, and --lora
// scoring as the merged model does.
func TestEvalCommand(t *testing.T) {
	dir := t.TempDir()
	td := "../../eval/tasks/testdata/"
	out := filepath.Join(dir, "results.json")
	stdout, se, err := herd(t, "", "eval", "--task", td+"arc_easy.yaml", "--task", td+"mmlu.yaml", "--task", "gsm8k="+td+"gsm8k.jsonl,"+td+"gsm8k_train.jsonl",
		"--shots", "1", "--limit", "2", "-o", out, "--log-samples")
	if err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	for _, w := range []string{"|arc_easy_tiny", "acc_norm", "mmlu_tiny (group)", "acc_macro", "strict-match", "flexible-extract"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("table without %q:\n%s", w, stdout)
		}
	}
	if !strings.Contains(se, "examples/s") {
		t.Errorf("no rate on stderr:\n%s", se)
	}
	r := readResults(t, out)
	if _, ok := r.Results["arc_easy_tiny"]["acc,none"].(float64); !ok {
		t.Errorf("results.arc_easy_tiny: %v", r.Results["arc_easy_tiny"])
	}
	if _, ok := r.Results["gsm8k"]["exact_match,strict-match"]; !ok {
		t.Errorf("results.gsm8k: %v", r.Results["gsm8k"])
	}
	if _, ok := r.Groups["mmlu_tiny"]["acc_macro,none"]; !ok {
		t.Errorf("groups: %v", r.Groups)
	}
	if r.NShot["gsm8k"] != 1 || r.Herd["arc_easy_tiny"].Rate <= 0 || len(r.Samples["arc_easy_tiny"]) != 2 {
		t.Errorf("n-shot %v, herd %v, %d samples", r.NShot, r.Herd, len(r.Samples["arc_easy_tiny"]))
	}
}

// TestEvalLoRA: --lora ADAPTER:SCALE scores as the merged model does.
func TestEvalLoRA(t *testing.T) {
	dir := t.TempDir()
	m, _, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	set, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: lora.Modules}, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range set.Adapters {
		for i := range a.B {
			a.B[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	adapter, merged := filepath.Join(dir, "adapter.gguf"), filepath.Join(dir, "merged.gguf")
	if err := lora.SaveGGUF(adapter, set); err != nil {
		t.Fatal(err)
	}
	if _, se, err := herd(t, "", "merge", "", "--lora", adapter+":0.7", "-o", merged); err != nil {
		t.Fatalf("merge: %v\n%s", err, se)
	}
	task := "--task=../../eval/tasks/testdata/hellaswag.yaml"
	run := func(name string, args ...string) evalResults {
		p := filepath.Join(dir, name)
		if _, se, err := herd(t, "", append([]string{"eval", task, "--log-samples", "-o", p}, args...)...); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, se)
		}
		return readResults(t, p)
	}
	base, withLoRA, mergedRes := run("base.json"), run("lora.json", "--lora", adapter+":0.7"), run("merged.json", merged)
	changed := false
	for i, s := range withLoRA.Samples["hellaswag_tiny"] {
		for j, ll := range s.LogLikelihoods {
			want := mergedRes.Samples["hellaswag_tiny"][i].LogLikelihoods[j]
			if math.Abs(ll-want) > 1e-3*(1+math.Abs(want)) {
				t.Errorf("document %d choice %d: --lora %.5f, merged %.5f", i, j, ll, want)
			}
			changed = changed || math.Abs(ll-base.Samples["hellaswag_tiny"][i].LogLikelihoods[j]) > 1e-3
		}
	}
	if !changed {
		t.Error("--lora scores as the base model does")
	}
}
