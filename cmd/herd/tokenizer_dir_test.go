package main

import (
	"encoding/json"
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

// gpt2Dir writes a small byte-level BPE vocabulary as a GPT-2 style
// directory (encoder.json + vocab.bpe) and returns it.
func gpt2Dir(t *testing.T) string {
	t.Helper()
	enc := map[string]int{}
	for b := range 256 {
		enc[tokenizer.ByteLevel(string([]byte{byte(b)}))] = b
	}
	merges := []string{"Ġ t", "h e", "Ġt he", "a t", "Ġ c", "Ġc at", "o n", "Ġ on"}
	for _, m := range merges {
		enc[strings.Replace(m, " ", "", 1)] = len(enc)
	}
	enc["<|endoftext|>"] = len(enc)
	dir := t.TempDir()
	b, _ := json.Marshal(enc)
	if err := os.WriteFile(filepath.Join(dir, "encoder.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vocab.bpe"), []byte("#version: 0.2\n"+strings.Join(merges, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDataPrepareTokenizerDir checks that herd data prepare reads a
// tokenizer directory as herd tokenize does (it was refused: data prepare
// had its own SentencePiece-only loader), and that herd pretrain trains on
// the result, reading the tokenizer.gguf stored beside the shards.
func TestDataPrepareTokenizerDir(t *testing.T) {
	tokDir := gpt2Dir(t)
	text := "The cat sat on the mat. The cat sat on the hat."
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte(strings.Repeat(text+"\n", 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	if _, stderr, err := herd(t, "", "data", "prepare", in, "--split", "line", "--no-dedup", "--tokenizer", tokDir, "-o", data); err != nil {
		t.Fatalf("data prepare --tokenizer DIR: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(filepath.Join(data, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Tokenizer struct {
			File  string `json:"file"`
			Vocab int    `json:"vocab"`
		} `json:"tokenizer"`
		TrainTokens int64 `json:"train_tokens"`
	}
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	out, _, err := herd(t, "", "tokenize", tokDir, "--count", "--no-bos", text)
	if err != nil {
		t.Fatal(err)
	}
	perDoc, _ := strconv.Atoi(strings.TrimSpace(out))
	// 40 documents, each opened by BOS (the vocabulary's <|endoftext|>)
	if man.Tokenizer.File != "tokenizer.gguf" || man.Tokenizer.Vocab != 265 || man.TrainTokens != int64(40*(perDoc+1)) {
		t.Fatalf("manifest %+v: want tokenizer.gguf of 265 and %d tokens (40 × (%d + BOS))", man, 40*(perDoc+1), perDoc)
	}

	// pretrain from a tiny model of that vocabulary on the prepared data
	tok, err := checkpoint.OpenTokenizer(tokDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := llama.Config{Dim: 32, NLayers: 1, NHeads: 2, NKVHeads: 2, FFNDim: 64, VocabSize: tok.VocabSize(), ContextLen: 64, RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.RandomInit(c, tensor.F32, 1, llama.InitOptions{Std: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(t.TempDir(), "init.gguf")
	if err := checkpoint.SaveGGUF(init, m, tok, checkpoint.SaveOptions{Name: "tiny bpe"}); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if _, stderr, err := herd(t, "", "pretrain", "--init", init, "--data", data, "-o", run, "--steps", "2", "--batch", "2",
		"--seq", "16", "-t", "1", "--no-progress"); err != nil {
		t.Fatalf("pretrain on BPE data: %v\n%s", err, stderr)
	}
	if _, _, err := checkpoint.Load(filepath.Join(run, "model.gguf"), ""); err != nil {
		t.Errorf("the pretrained model: %v", err)
	}
}
