package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/recipes"
)

// quickRecipes run in -short too (a few seconds each on 2 cores); the
// others run without -short.
var quickRecipes = []string{"alpaca-lora", "baichuan", "llama.cpp", "redpajama", "wizardlm"}

// TestRecipeShortVariants runs every recipe's short variant through the
// CLI and checks its claims (herd recipe run fails when one is not met).
func TestRecipeShortVariants(t *testing.T) {
	all, err := recipes.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		t.Run(r.Name, func(t *testing.T) {
			if testing.Short() && !slices.Contains(quickRecipes, r.Name) {
				t.Skip("-short: only", quickRecipes)
			}
			var log bytes.Buffer
			root := newRoot()
			root.SetArgs([]string{"recipe", "run", r.Name, "--short", "-o", t.TempDir()})
			root.SetErr(&log)
			root.SetOut(&log)
			if err := root.Execute(); err != nil {
				t.Fatalf("%v\n%s", err, tail(log.String(), 3000))
			}
			if !strings.Contains(log.String(), "claim held") {
				t.Errorf("no claim checked:\n%s", tail(log.String(), 2000))
			}
		})
	}
}

func TestRecipeListShowsEveryRecipe(t *testing.T) {
	var out bytes.Buffer
	root := newRoot()
	root.SetArgs([]string{"recipe", "list"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	all, _ := recipes.All()
	if n := strings.Count(out.String(), "\n"); n != len(all) || len(all) < 26 {
		t.Errorf("%d lines for %d recipes:\n%s", n, len(all), out.String())
	}
	root = newRoot()
	root.SetArgs([]string{"recipe", "run", "nope"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "alpaca") {
		t.Errorf("recipe run nope: %v", err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// A recipe with a teacher asks the endpoint it is given (here the scripted
// one of the synth tests) and serves none of its own; --endpoint wants
// --teacher.
func TestRecipeExternalTeacher(t *testing.T) {
	hs := teacher(t, 0)
	dir := t.TempDir()
	_, log, err := herd(t, "", "recipe", "run", "gpt4all", "--short", "--endpoint", hs.URL, "--teacher", "teacher", "-o", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(log, 3000))
	}
	if strings.Contains(log, "serving the teacher") || !strings.Contains(log, "--endpoint="+hs.URL) || !strings.Contains(log, "claim held: distill") {
		t.Errorf("the recipe did not ask the given endpoint:\n%s", tail(log, 3000))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "distill", "answers.jsonl")); !strings.Contains(string(b), "answer") {
		t.Errorf("the distilled answers are not the teacher's: %.300s", b)
	}
	if _, _, err := herd(t, "", "recipe", "run", "gpt4all", "--endpoint", hs.URL, "-o", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--teacher") {
		t.Errorf("--endpoint without --teacher: %v", err)
	}
}

// herd init --arch falcon writes a Falcon-block model (llama.cpp's
// "falcon") that loads and decodes; --vocab-from-tokenizer sizes the
// vocabulary to the tokenizer's.
func TestInitFalconAndVocab(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "falcon.gguf")
	if _, se, err := herd(t, "", "init", "--preset", "stories260k", "--random", "--arch", "falcon", "-o", f); err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	m, _, err := checkpoint.Load(f, "")
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	m.Close()
	if !c.IsFalcon() || c.NKVHeads != 1 || c.FFNDim != 4*c.Dim || c.Dim != 64 || c.VocabSize != 512 {
		t.Errorf("--arch falcon: %+v", c)
	}
	if out, _, err := herd(t, "", "run", f, "-p", "Once", "-n", "4", "--temp", "0"); err != nil || !strings.HasPrefix(out, "Once") {
		t.Errorf("the Falcon model does not decode: %q %v", out, err)
	}
	zh := filepath.Join(dir, "zh.model")
	if _, se, err := herd(t, "", "tokenizer", "train", "-i", "testdata/hongloumeng-1.txt", "--vocab-size", "2000", "--byte-fallback", "--character-coverage", "0.99", "-o", zh); err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	g := filepath.Join(dir, "zh.gguf")
	if _, _, err := herd(t, "", "init", "--preset", "stories260k", "--random", "--tokenizer", zh, "-o", g); err == nil || !strings.Contains(err.Error(), "--vocab-from-tokenizer") {
		t.Errorf("a 2000-piece tokenizer on a 512-token preset: %v", err)
	}
	if _, se, err := herd(t, "", "init", "--preset", "stories260k", "--random", "--tokenizer", zh, "--vocab-from-tokenizer", "-o", g); err != nil {
		t.Fatalf("%v\n%s", err, se)
	}
	m, tok, err := checkpoint.Load(g, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Config.VocabSize != 2000 || tok.VocabSize() != 2000 {
		t.Errorf("--vocab-from-tokenizer: model %d, tokenizer %d tokens, want 2000", m.Config.VocabSize, tok.VocabSize())
	}
}
