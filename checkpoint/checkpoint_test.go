package checkpoint

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

func logitsOf(t *testing.T, m *llama.Model, toks []int) []float32 {
	t.Helper()
	var s llama.State
	out, err := m.Forward(&s, m.NewKVCache(len(toks)), toks, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out...)
}

// Saving the default model as GGUF and loading it back gives the same
// logits and the same tokenizer; converting to F16 stays close.
func TestSaveLoadRoundTrip(t *testing.T) {
	m, tok, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	text := "Once upon a time, a cat 🐈 sat.\n"
	toks := tok.Encode(text, true, false)
	want := logitsOf(t, m, toks)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		opt  SaveOptions
		tol  float32
	}{
		{"f32", SaveOptions{Name: "stories260K"}, 0},
		{"f16", SaveOptions{Name: "stories260K", DType: tensor.F16, Convert: true}, 0.05},
	} {
		p := filepath.Join(dir, tc.name+".gguf")
		if err := SaveGGUF(p, m, tok, tc.opt); err != nil {
			t.Fatal(err)
		}
		m2, tok2, err := Load(p, "")
		if err != nil {
			t.Fatal(err)
		}
		if m2.Config != m.Config {
			t.Errorf("%s: config %+v, want %+v", tc.name, m2.Config, m.Config)
		}
		if got := tok2.Encode(text, true, false); !slices.Equal(got, toks) {
			t.Errorf("%s: tokenizer encodes %v, want %v", tc.name, got, toks)
		}
		got := logitsOf(t, m2, toks)
		for i := range want {
			if d := got[i] - want[i]; d > tc.tol || d < -tc.tol {
				t.Fatalf("%s: logit %d = %g, want %g", tc.name, i, got[i], want[i])
			}
		}
		m2.Close()
	}
}

func TestTokenizerFromGGUFErrors(t *testing.T) {
	_, tok, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kv   map[string]any
		want string
	}{
		{"no tokenizer", map[string]any{}, "no tokenizer"},
		{"bpe", map[string]any{"tokenizer.ggml.model": "bert"}, "not supported"},
		{"no tokens", map[string]any{"tokenizer.ggml.model": "llama"}, "tokens"},
		{"bad bos", map[string]any{"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": []string{"<unk>", "<s>", "</s>"},
			"tokenizer.ggml.bos_token_id": uint32(9)}, "outside the vocabulary"},
		{"short scores", map[string]any{"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": []string{"<unk>", "<s>", "</s>"},
			"tokenizer.ggml.scores": []float32{0}}, "scores"},
	} {
		w := gguf.NewWriter()
		for k, v := range tc.kv {
			if err := w.Set(k, v); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(t.TempDir(), "t.gguf")
		if err := w.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSPM(p, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	_ = tok
	if _, err := LoadSPM("../assets/tok512.bin", 0); err == nil {
		t.Error("a tokenizer.bin without a vocabulary size was accepted")
	}
	if tk, err := LoadSPM("../assets/tok512.bin", 512); err != nil || tk.VocabSize() != 512 {
		t.Errorf("tok512.bin: %v", err)
	}
	var _ tokenizer.Tokenizer = tok
}

// The 32000-piece LLaMA vocabulary in llama-2-tiny-random.gguf round-trips
// text of every kind through encode and decode.
func TestTinyRandomTokenizerRoundTrip(t *testing.T) {
	m, tok, err := Load("../format/gguf/testdata/llama-2-tiny-random.gguf", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if tok.VocabSize() != 32000 || m.Config.VocabSize != 32000 {
		t.Fatalf("vocab %d / %d", tok.VocabSize(), m.Config.VocabSize)
	}
	for _, s := range []string{
		"Hello world", "  leading and trailing  ", "tabs\tand\nnewlines\n\n", "数字 12345 和中文",
		"日本語のテキスト", "한국어", "emoji 🐈‍⬛🎉", "rare \U0001F9EC \u0301 \uE000", "",
	} {
		ids := tok.Encode(s, true, false)
		if len(s) > 0 && (len(ids) < 2 || ids[0] != tok.BOS()) {
			t.Errorf("%q: ids %v", s, ids)
		}
		if got := tok.Decode(ids); got != s {
			t.Errorf("%q decodes back as %q", s, got)
		}
	}
	// "Hello world" as Meta's tokenizer spells it (spm_encode: ▁Hello ▁world)
	if got := tok.Encode("Hello world", true, false); !slices.Equal(got, []int{1, 15043, 3186}) {
		t.Errorf("Hello world = %v, want [1 15043 3186]", got)
	}
}
