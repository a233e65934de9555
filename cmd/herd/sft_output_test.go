package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/train"
)

// herd sft --method embed on the embedded stories260K, whose output head is
// tied to the embedding, runs with its defaults (issue 21, item 13); the
// model.gguf it writes records the chat template it was trained with and
// the recipe (item 14); recipe.yaml beside it is the effective recipe and
// reads back as --config.
func TestSFTEmbedDefaultsTemplateRecipe(t *testing.T) {
	out := filepath.Join(t.TempDir(), "embed")
	args := []string{"sft", "--method", "embed", "--data", "../../sft/testdata/alpaca_en.json", "--template", "alpaca",
		"--steps", "2", "--batch", "2", "--ctx", "256", "--overflow", "split", "--quiet", "-t", "1"}
	_, se, err := herd(t, "", append(args, "-o", out)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	if !strings.Contains(se, "recipe:\n") || !strings.Contains(se, "  method: embed\n") {
		t.Errorf("the log does not print the recipe:\n%s", se)
	}
	f, err := gguf.Open(filepath.Join(out, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if name, _ := f.GetString("herd.chat_template"); name != "alpaca" {
		t.Errorf("herd.chat_template = %q, want alpaca", name)
	}
	rec, _ := f.GetString("herd.recipe")
	file, err := os.ReadFile(filepath.Join(out, "recipe.yaml"))
	if err != nil || rec != string(file) || !strings.Contains(rec, "template: alpaca\n") || !strings.Contains(rec, "ctx: 256\n") {
		t.Errorf("herd.recipe %q, recipe.yaml %q (%v)", rec, file, err)
	}
	// the stored recipe reruns the same run (with another output)
	again := filepath.Join(t.TempDir(), "again")
	if _, se, err := herd(t, "", "sft", "--config", filepath.Join(out, "recipe.yaml"), "-o", again); err != nil {
		t.Fatalf("rerun from recipe.yaml: %v\n%s", err, se)
	}
	a, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	b, _ := os.ReadFile(filepath.Join(again, "metrics.jsonl"))
	if lossesLine(string(a)) != lossesLine(string(b)) {
		t.Errorf("the run from recipe.yaml differs:\n%s\n%s", a, b)
	}
}

// lossesLine is the "loss" fields of a metrics.jsonl, in order.
func lossesLine(s string) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if i := strings.Index(line, `"loss":`); i >= 0 {
			rest := line[i:]
			out = append(out, rest[:strings.Index(rest, ",")])
		}
	}
	return strings.Join(out, " ")
}

// Issue 21, item 9: herd sft on an output directory another run holds is
// refused, naming the holder, before it reads any data.
func TestSFTSecondWriterRefused(t *testing.T) {
	out := filepath.Join(t.TempDir(), "run")
	lock, err := train.LockDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	_, _, err = herd(t, "", "sft", "--data", "../../sft/testdata/alpaca_en.json", "--steps", "1", "--quiet", "-o", out)
	if err == nil || !strings.Contains(err.Error(), "in use by another herd run") {
		t.Errorf("a second writer: %v", err)
	}
}
