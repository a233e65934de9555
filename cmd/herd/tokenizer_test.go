package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

func TestTokenize(t *testing.T) {
	tok, err := tokenizer.FromLlama2c(mustRead(t, assetTok), 512)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(s string, bos bool) string {
		var b []string
		for _, id := range tok.Encode(s, bos, false) {
			b = append(b, strconv.Itoa(id))
		}
		return strings.Join(b, " ") + "\n"
	}
	file := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(file, []byte("from a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"text", "", []string{assetTok, "--ids", "Hello world"}, ids("Hello world", true)},
		{"no bos", "", []string{assetTok, "--ids", "--no-bos", "Hello world"}, ids("Hello world", false)},
		{"stdin", "Once upon\n", []string{assetTok, "--ids"}, ids("Once upon\n", true)},
		{"file", "", []string{assetTok, "--ids", "-f", file}, ids("from a file\n", true)},
		{"count", "", []string{assetTok, "--count", "Hello world"}, strconv.Itoa(len(tok.Encode("Hello world", true, false))) + "\n"},
		{"special", "", []string{assetTok, "--ids", "--parse-special", "a</s>"}, func() string {
			return strings.TrimSuffix(ids("a", true), "\n") + " 2\n"
		}()},
		{"pieces", "", []string{assetTok, "--no-bos", "Hi"}, func() string {
			var b strings.Builder
			prev := -1
			for _, id := range tok.Encode("Hi", false, false) {
				b.WriteString(strconv.Itoa(id) + "\t" + strconv.Quote(string(tok.DecodePiece(prev, id))) + "\n")
				prev = id
			}
			return b.String()
		}()},
	} {
		out, _, err := herd(t, c.stdin, append([]string{"tokenize"}, c.args...)...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if out != c.want {
			t.Errorf("%s: got %q, want %q", c.name, out, c.want)
		}
	}
	if _, _, err := herd(t, "", "tokenize", assetTok, "-f", file, "text"); err == nil {
		t.Error("TEXT and -f together were accepted")
	}
	if _, _, err := herd(t, "", "tokenize", "no-such-file", "x"); err == nil {
		t.Error("a missing tokenizer was accepted")
	}
	// A GGUF model's own vocabulary.
	out, _, err := herd(t, "", "tokenize", tinyRandom, "--ids", "Hello")
	if err != nil || out != "1 15043\n" {
		t.Errorf("GGUF: %q %v", out, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTokenizerTrainExtendResize walks the Chinese-LLaMA road on small
// data: train a vocabulary, merge it into a base one, give a model rows for
// the new ids, and check the old tokens' logits survive.
func TestTokenizerTrainExtendResize(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "zh.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("中文字符测试，你好世界。我们今天去公园散步吧！\n春眠不觉晓，处处闻啼鸟。\n", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	zhModel := filepath.Join(dir, "zh.model")
	if _, _, err := herd(t, "", "tokenizer", "train", "-i", text, text, "--vocab-size", "60", "--character-coverage", "1", "-o", zhModel); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.model")
	tok512, err := tokenizer.FromLlama2c(mustRead(t, assetTok), 512)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base, tok512.MarshalModelProto(), 0o644); err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(dir, "merged.model")
	out, _, err := herd(t, "", "tokenizer", "extend", base, zhModel, "-o", merged)
	if err != nil {
		t.Fatal(err)
	}
	var added, from, to int
	if _, err := fmt.Sscanf(out, "added %d pieces: %d → %d\n", &added, &from, &to); err != nil || from != 512 || to != 512+added || added == 0 {
		t.Fatalf("extend said %q (%v)", out, err)
	}
	before, _, _ := herd(t, "", "tokenize", base, "--count", "我们今天去公园散步吧")
	after, _, _ := herd(t, "", "tokenize", merged, "--count", "我们今天去公园散步吧")
	if b, _ := strconv.Atoi(strings.TrimSpace(before)); b <= 0 || strconv.Itoa(b) == strings.TrimSpace(after) {
		t.Errorf("tokens before %q after %q: the merged vocabulary should be shorter", before, after)
	}

	// resize-vocab: a model with the base vocabulary, resized.
	c := llama.Config{Dim: 16, NLayers: 1, NHeads: 2, NKVHeads: 2, FFNDim: 32, VocabSize: 512, ContextLen: 32, RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.Random(c, tensor.F32, 3)
	if err != nil {
		t.Fatal(err)
	}
	modelPath := filepath.Join(dir, "m.gguf")
	if err := checkpoint.SaveGGUF(modelPath, m, tok512, checkpoint.SaveOptions{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	resized := filepath.Join(dir, "resized.gguf")
	if _, _, err := herd(t, "", "resize-vocab", modelPath, merged, "-o", resized); err != nil {
		t.Fatal(err)
	}
	m2, tok2, err := checkpoint.Load(resized, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Config.VocabSize != to || tok2.VocabSize() != to {
		t.Fatalf("resized model vocab %d, tokenizer %d, want %d", m2.Config.VocabSize, tok2.VocabSize(), to)
	}
	prompt := tok512.Encode("Once upon a time", true, false)
	l1, l2 := lastLogits(t, m, prompt), lastLogits(t, m2, prompt)
	for i := range 512 {
		if l1[i] != l2[i] {
			t.Fatalf("logit %d: %g before, %g after resize-vocab", i, l1[i], l2[i])
		}
	}
	if _, _, err := herd(t, "", "resize-vocab", modelPath, base, "-o", filepath.Join(dir, "x.gguf")); err != nil {
		t.Errorf("resizing to the same vocabulary: %v", err)
	}
}

func lastLogits(t *testing.T, m *llama.Model, ids []int) []float32 {
	t.Helper()
	var s llama.State
	logits, err := m.Forward(&s, m.NewKVCache(32), ids, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), logits...)
}
