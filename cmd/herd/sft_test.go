package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "adapter.gguf", "loss.tsv"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
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
