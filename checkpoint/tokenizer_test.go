package checkpoint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// tinyBPE is a byte-level vocabulary: the 256 bytes, a few merges, and
// <|bos|>, <|eos|> as control tokens.
func tinyBPE(t *testing.T, pre tokenizer.Pretokenizer) *tokenizer.BPE {
	t.Helper()
	var tokens []string
	for b := range 256 {
		tokens = append(tokens, tokenizer.ByteLevel(string([]byte{byte(b)})))
	}
	merges := []string{"Ġ t", "h e", "Ġt he", "i n", "Ġ a"}
	for _, m := range merges {
		tokens = append(tokens, strings.Replace(m, " ", "", 1))
	}
	tokens = append(tokens, "<|bos|>", "<|eos|>")
	types := make([]tokenizer.Type, len(tokens))
	for i := range types {
		types[i] = tokenizer.TypeNormal
	}
	n := len(tokens)
	types[n-2], types[n-1] = tokenizer.TypeControl, tokenizer.TypeControl
	tk, err := tokenizer.NewBPE(tokens, types, merges, tokenizer.BPEOptions{Pre: pre, IgnoreMerges: pre == tokenizer.PreLlama3,
		BOS: n - 2, EOS: n - 1, AddBOS: true, ChatTemplate: "{{ bos_token }}"})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

var sample = []string{"", "the thin tin", "Hello, world! 123 \n\n  x", "中文 😀 \xff", "<|bos|>a<|eos|>"}

func sameEncoding(t *testing.T, what string, a, b tokenizer.Tokenizer) {
	t.Helper()
	if a.VocabSize() != b.VocabSize() || a.BOS() != b.BOS() || a.EOS() != b.EOS() {
		t.Fatalf("%s: vocab %d/%d BOS %d/%d EOS %d/%d", what, a.VocabSize(), b.VocabSize(), a.BOS(), b.BOS(), a.EOS(), b.EOS())
	}
	for _, s := range sample {
		x := a.(tokenizer.SpecialEncoder).EncodeSpecial(s, true, true)
		y := b.(tokenizer.SpecialEncoder).EncodeSpecial(s, true, true)
		if !slices.Equal(x, y) {
			t.Errorf("%s: %q: %v vs %v", what, s, x, y)
		}
	}
}

func writeGGUF(t *testing.T, kv []KV) string {
	t.Helper()
	w := gguf.NewWriter()
	for _, e := range kv {
		if err := w.Set(e.Key, e.Value); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "t.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGGUFTokenizerRoundTrip(t *testing.T) {
	_, spm, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []tokenizer.Tokenizer{spm, tinyBPE(t, tokenizer.PreLlama3), tinyBPE(t, tokenizer.PreGPT2)} {
		kv, err := TokenizerMetadata(tok)
		if err != nil {
			t.Fatal(err)
		}
		back, err := OpenTokenizer(writeGGUF(t, kv), 0)
		if err != nil {
			t.Fatal(err)
		}
		sameEncoding(t, "GGUF", tok, back)
		if b, ok := back.(*tokenizer.BPE); ok {
			o, want := b.Options(), tok.(*tokenizer.BPE).Options()
			if o != want {
				t.Errorf("options read back %+v, want %+v", o, want)
			}
		}
	}
	if kv, err := TokenizerMetadata((*tokenizer.SPM)(nil)); err != nil || len(kv) != 0 {
		t.Errorf("nil tokenizer: %v %v", kv, err)
	}
}

func TestGGUFTokenizerErrors(t *testing.T) {
	kv, err := TokenizerMetadata(tinyBPE(t, tokenizer.PreLlama3))
	if err != nil {
		t.Fatal(err)
	}
	set := func(key string, v any) []KV {
		out := []KV{}
		for _, e := range kv {
			if e.Key != key {
				out = append(out, e)
			}
		}
		if v != nil {
			out = append(out, KV{key, v})
		}
		return out
	}
	for _, c := range []struct {
		kv   []KV
		want string
	}{
		{set("tokenizer.ggml.pre", "qwen2"), `pre-tokenizer "qwen2" is not supported`},
		{set("tokenizer.ggml.merges", nil), "tokenizer.ggml.merges is missing"},
		{set("tokenizer.ggml.merges", []string{"x y"}), "not in the vocabulary"},
		{set("tokenizer.ggml.token_type", []int32{1}), "token_type"},
		{set("tokenizer.ggml.eos_token_id", uint32(1e6)), "outside the vocabulary"},
	} {
		_, err := OpenTokenizer(writeGGUF(t, c.kv), 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one containing %q", err, c.want)
		}
	}
	if _, err := LoadSPM(writeGGUF(t, kv), 0); err == nil || !strings.Contains(err.Error(), "not a SentencePiece") {
		t.Errorf("LoadSPM of a BPE: %v", err)
	}
}

func TestOpenTokenizerFiles(t *testing.T) {
	tk := tinyBPE(t, tokenizer.PreGPT2)
	dir := t.TempDir()
	enc := map[string]int{}
	for id := range tk.VocabSize() {
		enc[tk.Piece(id)] = id
	}
	encJSON, _ := json.Marshal(enc)
	if err := os.WriteFile(filepath.Join(dir, "encoder.json"), encJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vocab.bpe"), []byte("#version: 0.2\n"+strings.Join(tk.Merges(), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := `{"bos_token": "<|bos|>", "eos_token": "<|eos|>", "add_bos_token": true, "chat_template": "{{ bos_token }}",
		"added_tokens_decoder": {"261": {"content": "<|bos|>", "special": true}, "262": {"content": "<|eos|>", "special": true}}}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := OpenTokenizer(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sameEncoding(t, "encoder.json + vocab.bpe", tk, back)
	if back.(*tokenizer.BPE).ChatTemplate() != "{{ bos_token }}" {
		t.Errorf("chat template not read")
	}
	if _, err := OpenTokenizer(t.TempDir(), 0); err == nil || !strings.Contains(err.Error(), "no tokenizer.json") {
		t.Errorf("empty directory: %v", err)
	}
	// A llama2.c tokenizer.bin without the model: its size is read from the file.
	bin, err := OpenTokenizer("../assets/tok512.bin", 0)
	if err != nil || bin.VocabSize() != 512 {
		t.Errorf("tok512.bin: %v", err)
	}
}

// TestOpenTokenizerShared reads the real vocabularies of the data kit.
func TestOpenTokenizerShared(t *testing.T) {
	const dir = "/work/shared/data/tokenizers"
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared tokenizers not available: %v", err)
	}
	for _, c := range []struct {
		path  string
		vocab int
		bpe   bool
	}{
		{dir + "/llama3.2", 128256, true},
		{dir + "/ggml-vocab-llama-spm.gguf", 32000, false},
		{dir + "/llama2c-tokenizer.model", 32000, false},
		{dir + "/llama2c-tokenizer.bin", 32000, false},
	} {
		tok, err := OpenTokenizer(c.path, 0)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		_, isBPE := tok.(*tokenizer.BPE)
		if tok.VocabSize() != c.vocab || isBPE != c.bpe {
			t.Errorf("%s: %T of %d tokens", c.path, tok, tok.VocabSize())
		}
	}
}

// TestSaveGGUFWithBPE saves a model with a byte-level vocabulary and loads
// both back.
func TestSaveGGUFWithBPE(t *testing.T) {
	tk := tinyBPE(t, tokenizer.PreLlama3)
	c := llama.Config{Dim: 16, NLayers: 1, NHeads: 2, NKVHeads: 2, FFNDim: 32, VocabSize: tk.VocabSize(), ContextLen: 32, RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.Random(c, tensor.F32, 1)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "m.gguf")
	if err := SaveGGUF(p, m, tk, SaveOptions{Name: "bpe"}); err != nil {
		t.Fatal(err)
	}
	m2, tok, err := Load(p, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	sameEncoding(t, "saved model", tk, tok)
}
