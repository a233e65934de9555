package convert

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/tokenizer"
)

// copyDir copies a testdata directory into a temporary one.
func copyDir(t *testing.T, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join("testdata", name, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// editJSON rewrites a JSON file of a directory through fn.
func editJSON(t *testing.T, path string, fn func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBadInput: each broken checkpoint is refused with an error naming the
// file and the tensor or field at fault.
func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		name, dir string
		edit      func(t *testing.T, dir string)
		want      []string
	}{
		{"unknown architecture", "llama_bin", func(t *testing.T, d string) {
			editJSON(t, filepath.Join(d, "config.json"), func(m map[string]any) { m["architectures"] = []string{"GPTNeoXForCausalLM"} })
		}, []string{"config.json", "GPTNeoXForCausalLM", "supported: BaiChuanForCausalLM, BaichuanForCausalLM, FalconForCausalLM, LlamaForCausalLM, MistralForCausalLM, RWForCausalLM"}},
		{"shard missing", "llama_sharded", func(t *testing.T, d string) {
			os.Remove(filepath.Join(d, "model-00002-of-00002.safetensors"))
		}, []string{"model.safetensors.index.json", "model-00002-of-00002.safetensors", "is missing", "(tensor lm_head.weight"}},
		{"tensor not in its shard", "llama_sharded", func(t *testing.T, d string) {
			editJSON(t, filepath.Join(d, "model.safetensors.index.json"), func(m map[string]any) {
				m["weight_map"].(map[string]any)["model.layers.0.extra.weight"] = "model-00001-of-00002.safetensors"
			})
		}, []string{"model.safetensors.index.json", "model.layers.0.extra.weight", "not in its shard"}},
		{"shape against config", "llama_bin", func(t *testing.T, d string) {
			editJSON(t, filepath.Join(d, "config.json"), func(m map[string]any) { m["intermediate_size"] = 40 })
		}, []string{"pytorch_model.bin", "model.layers.0.mlp.gate_proj.weight", "[32 16]", "config.json implies [40 16]"}},
		{"tokenizer against vocabulary", "llama_bin", func(t *testing.T, d string) {
			b, _ := os.ReadFile("testdata/tokenizer.model")
			os.WriteFile(filepath.Join(d, "tokenizer.model"), b, 0o644)
		}, []string{"tokenizer.model", "512 tokens", "vocabulary", "48"}},
		{"config fields missing", "llama_st", func(t *testing.T, d string) {
			os.Rename(filepath.Join(d, "model.safetensors"), filepath.Join(d, "x"))
			os.WriteFile(filepath.Join(d, "config.json"), []byte(`{"architectures": ["LlamaForCausalLM"], "hidden_size": 16}`), 0o644)
		}, []string{"config.json", "must all be positive"}},
		{"pickle calling os.system", "llama_bin", func(t *testing.T, d string) {
			b, _ := os.ReadFile("../format/pytorch/testdata/evil.pt")
			os.WriteFile(filepath.Join(d, "pytorch_model.bin"), b, 0o644)
		}, []string{"pytorch_model.bin", "posix.system is not allowed"}},
		{"Meta shard missing", "meta", func(t *testing.T, d string) {
			os.Remove(filepath.Join(d, "consolidated.00.pth"))
		}, []string{"consolidated.00.pth is missing"}},
		{"Meta shard shape", "meta", func(t *testing.T, d string) {
			editJSON(t, filepath.Join(d, "params.json"), func(m map[string]any) { m["n_kv_heads"] = 4 })
		}, []string{"consolidated.00.pth", "layers.0.attention.wk.weight", "params.json implies [8 16]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := copyDir(t, c.dir)
			c.edit(t, d)
			s, err := Open(d)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestAddedTokens: tokens a fine-tune appended (added_tokens.json,
// added_tokens_decoder) extend the SentencePiece vocabulary; gaps and
// disagreements are errors.
func TestAddedTokens(t *testing.T) {
	data, err := os.ReadFile("testdata/tokenizer.model")
	if err != nil {
		t.Fatal(err)
	}
	spm, err := tokenizer.FromModelProto(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := withAddedTokens(spm, []byte(`{"added_tokens_decoder": {"513": {"content": "<|im_end|>", "special": true}, "1": {"content": "<s>", "special": true}}}`),
		[]byte(`{"[PAD]": 512}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.VocabSize() != 514 || got.Piece(512) != "[PAD]" || got.Type(513) != tokenizer.TypeControl || got.Type(512) != tokenizer.TypeUserDefined {
		t.Fatalf("%d tokens: %q %v, %q %v", got.VocabSize(), got.Piece(512), got.Type(512), got.Piece(513), got.Type(513))
	}
	if ids := got.Encode("a [PAD] b", false, false); !slicesContains(ids, 512) {
		t.Errorf("user-defined [PAD] not matched in text: %v", ids)
	}
	if _, err := withAddedTokens(spm, nil, []byte(`{"[PAD]": 513}`)); err == nil || !strings.Contains(err.Error(), "gap at 512") {
		t.Errorf("gap: err = %v", err)
	}
	if _, err := withAddedTokens(spm, nil, []byte(`{"[PAD]": 3}`)); err == nil || !strings.Contains(err.Error(), "which tokenizer.model calls") {
		t.Errorf("clash: err = %v", err)
	}
}

func slicesContains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
