package main

import (
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/train"
)

// checkMetrics: dir holds metrics.jsonl with steps 1..steps, each with a
// finite loss, a learning rate, a gradient norm and a speed, and loss.png,
// a plot.
func checkMetrics(t *testing.T, dir string, steps int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != steps {
		t.Fatalf("metrics.jsonl has %d lines, want %d", len(lines), steps)
	}
	for i, line := range lines {
		var m train.Metric
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("metrics.jsonl line %d: %v", i+1, err)
		}
		if m.Step != i+1 || math.IsNaN(m.Loss) || !(m.Loss > 0) || !(m.LR > 0) || !(m.GradNorm > 0) || !(m.TokensPerSec > 0) || !(m.MFU > 0) {
			t.Errorf("metrics.jsonl line %d: %+v", i+1, m)
		}
	}
	f, err := os.Open(filepath.Join(dir, train.PlotName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 100 {
		t.Errorf("loss.png: %v", err)
	}
}

// TestSFTPackRecompute: --pack and --recompute reach the trainer (the log
// says rows are packed and predicts one block's activations), the progress
// bar shows, and the run writes its metrics and plot.
func TestSFTPackRecompute(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"sft", "--method", "lora", "--data", "../../sft/testdata/sharegpt.json", "--ctx", "200", "--steps", "3", "--batch", "2", "-o", out}
	_, se, err := herd(t, "", append(args, "--pack", "--recompute")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	if !strings.Contains(se, "packed rows of 200 tokens") || !strings.Contains(se, "3/3") {
		t.Errorf("log:\n%s", se)
	}
	checkMetrics(t, out, 3)
	memLine := func(log string) string {
		for _, l := range strings.Split(log, "\n") {
			if strings.HasPrefix(l, "memory: ") {
				return l
			}
		}
		t.Fatalf("no memory line in\n%s", log)
		return ""
	}
	_, se2, err := herd(t, "", append(args[:len(args)-1], filepath.Join(t.TempDir(), "run2"), "--pack")...)
	if err != nil {
		t.Fatal(err)
	}
	if memLine(se) == memLine(se2) {
		t.Errorf("--recompute predicts the activations of a run without it: %s", memLine(se))
	}
}

// TestSFTLoRAMerge: herd sft trains a LoRA on the Alpaca slice; herd run
// with --lora and the model herd merge writes give the same greedy text,
// which differs from the base's.
func TestSFTLoRAMerge(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "lora")
	if _, se, err := herd(t, "", "sft", "--method", "lora", "--data", "../../sft/testdata/alpaca_en.json,../../sft/testdata/sharegpt.json",
		"--template", "alpaca", "--steps", "6", "--batch", "4", "--lr", "1e-2", "--quiet", "-o", out); err != nil {
		t.Fatalf("sft: %v\n%s", err, se)
	}
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "adapter.gguf", "step-6/state.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	checkMetrics(t, out, 6)
	base, _, err := herd(t, "", "run", "-n", "40", "--temp", "0")
	if err != nil {
		t.Fatal(err)
	}
	adapted, _, err := herd(t, "", "run", "-n", "40", "--temp", "0", "--lora", out)
	if err != nil {
		t.Fatal(err)
	}
	if adapted == base {
		t.Error("the adapter does not change the text")
	}
	merged := filepath.Join(dir, "merged.gguf")
	if _, se, err := herd(t, "", "merge", "", "--lora", out+"/adapter.gguf:1", "-o", merged); err != nil {
		t.Fatalf("merge: %v\n%s", err, se)
	}
	got, _, err := herd(t, "", "run", merged, "-n", "40", "--temp", "0")
	if err != nil {
		t.Fatal(err)
	}
	if got != adapted {
		t.Errorf("merged model writes %q, base + adapter %q", got, adapted)
	}
	// a malformed row names its file and line
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\"}\n"), 0o644)
	if _, _, err := herd(t, "", "sft", "--data", bad, "-o", filepath.Join(dir, "x")); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("bad row: %v", err)
	}
}

// TestDelta: make then apply rebuilds the target byte for byte; a wrong
// base and a damaged delta are errors.
func TestDelta(t *testing.T) {
	dir := t.TempDir()
	base, q8, tuned := filepath.Join(dir, "base.gguf"), filepath.Join(dir, "q8.gguf"), filepath.Join(dir, "tuned.gguf")
	for _, args := range [][]string{
		{"convert", "", "-o", base},
		{"quantize", base, q8, "q8_0"},
		{"sft", "--method", "full", "--data", "../../sft/testdata/dolly.jsonl", "--steps", "2", "--batch", "2", "--quiet", "-o", dir},
	} {
		if _, se, err := herd(t, "", args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, se)
		}
	}
	if err := os.Rename(filepath.Join(dir, "model.gguf"), tuned); err != nil {
		t.Fatal(err)
	}
	delta, rebuilt := filepath.Join(dir, "delta.gguf"), filepath.Join(dir, "rebuilt.gguf")
	if _, se, err := herd(t, "", "delta", "make", base, tuned, "-o", delta); err != nil {
		t.Fatalf("make: %v\n%s", err, se)
	}
	if _, se, err := herd(t, "", "delta", "apply", base, delta, "-o", rebuilt); err != nil {
		t.Fatalf("apply: %v\n%s", err, se)
	}
	a, _ := os.ReadFile(rebuilt)
	b, _ := os.ReadFile(tuned)
	if string(a) != string(b) {
		t.Error("the rebuilt model differs from the target")
	}
	if _, _, err := herd(t, "", "delta", "apply", q8, delta, "-o", filepath.Join(dir, "x.gguf")); err == nil || !strings.Contains(err.Error(), "not the base") {
		t.Errorf("wrong base: %v", err)
	}
	// flip a byte of the last tensor's data
	d, _ := os.ReadFile(delta)
	d[len(d)-40] ^= 1
	os.WriteFile(delta, d, 0o644)
	if _, _, err := herd(t, "", "delta", "apply", base, delta, "-o", filepath.Join(dir, "y.gguf")); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged delta: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y.gguf")); err == nil {
		t.Error("a damaged delta wrote a model")
	}
}

// TestSFTRecipes runs every recipe in sft/recipes for two steps on the
// test data: each key must be a flag.
func TestSFTRecipes(t *testing.T) {
	recipes, _ := filepath.Glob("../../sft/recipes/*.yaml")
	if len(recipes) == 0 {
		t.Fatal("no recipes")
	}
	for _, r := range recipes {
		out := filepath.Join(t.TempDir(), "out")
		if _, se, err := herd(t, "", "sft", "--config", r, "--data", "../../sft/testdata/openai.jsonl", "--steps", "2", "--quiet", "-o", out); err != nil {
			t.Errorf("%s: %v\n%s", r, err, se)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("rnak: 4\n"), 0o644)
	if _, _, err := herd(t, "", "sft", "--config", bad, "--data", "x", "-o", t.TempDir()); err == nil || !strings.Contains(err.Error(), "rnak") {
		t.Errorf("misspelt key: %v", err)
	}
}

// valSteps lists the steps of dir's metrics.jsonl that carry a val_loss.
func valSteps(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	var steps []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m train.Metric
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m.ValLoss != nil {
			if !(*m.ValLoss > 0) {
				t.Errorf("step %d: val loss %v", m.Step, *m.ValLoss)
			}
			steps = append(steps, m.Step)
		}
	}
	return steps
}

// TestSFTValidation: --val-split holds out examples (counted in the log)
// and --eval-every/--eval-batches set when the validation loss is measured
// (log, progress bar, metrics.jsonl); --val-data and the recipe keys
// val_data and eval_every do the same from a file.
func TestSFTValidation(t *testing.T) {
	out := filepath.Join(t.TempDir(), "split")
	_, se, err := herd(t, "", "sft", "--method", "lora", "--data", "../../sft/testdata/sharegpt.json", "--val-split", "0.34",
		"--eval-every", "2", "--eval-batches", "1", "--steps", "4", "--batch", "1", "-o", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	for _, want := range []string{"2 examples (2 samples) held out for validation", "validation: 2 samples", "every 2 steps (1 of the 2 batches)",
		"step 0: val loss", "step 2: train loss", "step 4: train loss", "(all 2 val batches)", " val ", "; val loss"} {
		if !strings.Contains(se, want) {
			t.Errorf("no %q in the log:\n%s", want, se)
		}
	}
	checkMetrics(t, out, 4)
	if got := valSteps(t, out); !slices.Equal(got, []int{2, 4}) {
		t.Errorf("val loss at steps %v, want 2 and 4", got)
	}

	recipe := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(recipe, []byte("val_data: ../../sft/testdata/openai.jsonl\neval_every: 0\n"), 0o644)
	out = filepath.Join(t.TempDir(), "data")
	_, se, err = herd(t, "", "sft", "--config", recipe, "--data", "../../sft/testdata/dolly.jsonl", "--steps", "3", "--batch", "1", "--quiet", "-o", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	if !strings.Contains(se, "val data: 2 examples") || !strings.Contains(se, "after the last step only") {
		t.Errorf("log:\n%s", se)
	}
	if got := valSteps(t, out); !slices.Equal(got, []int{3}) {
		t.Errorf("val loss at steps %v, want 3 only", got)
	}
	if _, _, err := herd(t, "", "sft", "--data", "../../sft/testdata/dolly.jsonl", "--val-split", "1", "-o", t.TempDir()); err == nil || !strings.Contains(err.Error(), "validation split") {
		t.Errorf("--val-split 1: %v", err)
	}
}
