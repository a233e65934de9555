package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
)

// TestHFInOut: herd convert reads a Hugging Face directory, herd run reads
// it directly with the same greedy text as the converted GGUF, and
// GGUF → export --format hf → convert gives back the same GGUF file, byte
// for byte.
func TestHFInOut(t *testing.T) {
	dir := t.TempDir()
	src := "../../convert/testdata/llama_st"
	g1 := filepath.Join(dir, "a.gguf")
	if _, stderr, err := herd(t, "", "convert", src, "-o", g1); err != nil {
		t.Fatalf("convert: %v\n%s", err, stderr)
	}
	hf := filepath.Join(dir, "hf")
	if _, stderr, err := herd(t, "", "export", g1, "--format", "hf", "-o", hf, "--max-shard-size", "30KB"); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr)
	}
	g2 := filepath.Join(dir, "b.gguf")
	if _, stderr, err := herd(t, "", "convert", hf, "-o", g2); err != nil {
		t.Fatalf("convert back: %v\n%s", err, stderr)
	}
	a, _ := os.ReadFile(g1)
	b, _ := os.ReadFile(g2)
	if !bytes.Equal(a, b) {
		t.Error("GGUF → hf → GGUF is not the same file")
	}
	var texts []string
	for _, m := range []string{src, g1, hf} {
		out, stderr, err := herd(t, "", "run", m, "-p", "Once upon", "-n", "16", "--temp", "0")
		if err != nil {
			t.Fatalf("run %s: %v\n%s", m, err, stderr)
		}
		texts = append(texts, out)
	}
	if texts[0] != texts[1] || texts[1] != texts[2] || len(texts[0]) < 10 {
		t.Errorf("greedy text differs:\n%q\n%q\n%q", texts[0], texts[1], texts[2])
	}
	_, _, err := herd(t, "", "convert", "../../convert/testdata/baichuan_bin", "-o", filepath.Join(dir, "c.gguf"), "--tokenizer", g1)
	if err == nil || !strings.Contains(err.Error(), "512 tokens") {
		t.Errorf("a 512-token tokenizer for a 48-token model: err = %v", err)
	}
}

// TestHFDirTemplate: chat and serve take a checkpoint directory's
// tokenizer_config.json chat_template.
func TestHFDirTemplate(t *testing.T) {
	tp, err := chat.ForModel("../../convert/testdata/llama_st", "")
	if err != nil {
		t.Fatal(err)
	}
	if tp.Name == "raw" || !strings.Contains(tp.Name, "tokenizer_config.json") {
		t.Errorf("template %q from %q, want the directory's", tp.Name, tp.Origin)
	}
}
