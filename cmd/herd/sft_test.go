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
