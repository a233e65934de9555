// Package checkpoint loads and saves a model together with its tokenizer:
// from GGUF files (tokenizer in the metadata), from llama2.c checkpoints with
// a tokenizer.bin beside them, or from the embedded default model; and saves
// models as GGUF with llama.* hyperparameters and tokenizer.ggml.* metadata.
package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/assets"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// Default returns the embedded stories260K model and its tok512 tokenizer.
func Default() (*llama.Model, *tokenizer.SPM, error) {
	ck, err := llama2c.Parse("stories260K.bin (embedded)", assets.Stories260K())
	if err != nil {
		return nil, nil, err
	}
	m, err := llama.FromLlama2c(ck.Path, ck)
	if err != nil {
		return nil, nil, err
	}
	tok, err := tokenizer.FromLlama2c(assets.Tok512(), m.Config.VocabSize)
	if err != nil {
		return nil, nil, fmt.Errorf("tok512.bin (embedded): %w", err)
	}
	return m, tok, nil
}

// Load opens the model at modelPath and its tokenizer: the one at tokPath
// when given, otherwise the GGUF file's own. An empty modelPath loads the
// embedded default (and its tokenizer unless tokPath is given).
func Load(modelPath, tokPath string) (*llama.Model, tokenizer.Tokenizer, error) {
	var m *llama.Model
	var tok tokenizer.Tokenizer
	if modelPath == "" {
		dm, dt, err := Default()
		if err != nil {
			return nil, nil, err
		}
		m, tok = dm, dt
	} else {
		var err error
		if m, err = llama.Open(modelPath); err != nil {
			return nil, nil, err
		}
		if tokPath == "" {
			kind, _ := llama.Format(modelPath)
			if kind != "gguf" {
				m.Close()
				return nil, nil, fmt.Errorf("%s: a llama2.c checkpoint carries no tokenizer; give one with --tokenizer (a tokenizer.bin)", modelPath)
			}
			if tok, err = LoadTokenizer(modelPath, m.Config.VocabSize); err != nil {
				m.Close()
				return nil, nil, err
			}
		}
	}
	if tokPath != "" {
		var err error
		if tok, err = LoadTokenizer(tokPath, m.Config.VocabSize); err != nil {
			m.Close()
			return nil, nil, err
		}
	}
	if tok.VocabSize() != m.Config.VocabSize {
		m.Close()
		return nil, nil, fmt.Errorf("the tokenizer has %d tokens but the model's vocabulary is %d", tok.VocabSize(), m.Config.VocabSize)
	}
	return m, tok, nil
}

// LoadTokenizer reads a SentencePiece tokenizer from a GGUF file (its
// tokenizer.ggml.* metadata), a SentencePiece .model file, or a llama2.c
// tokenizer.bin (which needs vocab, the model's vocabulary size).
func LoadTokenizer(path string, vocab int) (*tokenizer.SPM, error) {
	if kind, err := llama.Format(path); err != nil {
		return nil, err
	} else if kind == "gguf" {
		// mapped, not read: the file may hold gigabytes of weights
		f, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return TokenizerFromGGUF(f)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(filepath.Ext(path), ".model") {
		t, err := tokenizer.FromModelProto(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return t, nil
	}
	if vocab <= 0 {
		return nil, fmt.Errorf("%s: a llama2.c tokenizer.bin needs the vocabulary size", path)
	}
	t, err := tokenizer.FromLlama2c(data, vocab)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// TokenizerFromGGUF builds the SentencePiece tokenizer stored in a GGUF
// file's tokenizer.ggml.* metadata (model "llama").
func TokenizerFromGGUF(f *gguf.File) (*tokenizer.SPM, error) {
	model, ok := f.GetString("tokenizer.ggml.model")
	if !ok {
		return nil, fmt.Errorf("%s: no tokenizer in the metadata (tokenizer.ggml.model); give one with --tokenizer", f.Path)
	}
	if model != "llama" {
		return nil, fmt.Errorf("%s: tokenizer model %q is not supported yet (herd reads \"llama\" SentencePiece vocabularies)", f.Path, model)
	}
	pieces, ok := f.GetStrings("tokenizer.ggml.tokens")
	if !ok || len(pieces) == 0 {
		return nil, fmt.Errorf("%s: tokenizer.ggml.tokens is missing or not an array of strings", f.Path)
	}
	var scores []float32
	if v, ok := f.Get("tokenizer.ggml.scores"); ok {
		if scores, ok = v.AsFloat32s(); !ok || len(scores) != len(pieces) {
			return nil, fmt.Errorf("%s: tokenizer.ggml.scores must be %d float32s", f.Path, len(pieces))
		}
	}
	var types []tokenizer.Type
	if v, ok := f.Get("tokenizer.ggml.token_type"); ok {
		tt, ok := v.AsInt32s()
		if !ok || len(tt) != len(pieces) {
			return nil, fmt.Errorf("%s: tokenizer.ggml.token_type must be %d int32s", f.Path, len(pieces))
		}
		types = make([]tokenizer.Type, len(tt))
		for i, t := range tt {
			types[i] = tokenizer.Type(t)
		}
	}
	opt := tokenizer.LlamaOptions()
	id := func(key string, def int) (int, error) {
		v, ok := f.GetUint(key)
		if !ok {
			return def, nil
		}
		if v >= uint64(len(pieces)) {
			return 0, fmt.Errorf("%s: %s = %d is outside the vocabulary of %d", f.Path, key, v, len(pieces))
		}
		return int(v), nil
	}
	var err error
	if opt.BOS, err = id("tokenizer.ggml.bos_token_id", opt.BOS); err != nil {
		return nil, err
	}
	if opt.EOS, err = id("tokenizer.ggml.eos_token_id", opt.EOS); err != nil {
		return nil, err
	}
	if opt.UNK, err = id("tokenizer.ggml.unknown_token_id", opt.UNK); err != nil {
		return nil, err
	}
	if v, ok := f.GetBool("tokenizer.ggml.add_space_prefix"); ok {
		opt.AddDummyPrefix = v
	}
	opt.ByteFallback = hasAllBytes(pieces)
	t, err := tokenizer.NewSPM(pieces, scores, types, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	return t, nil
}

func hasAllBytes(pieces []string) bool {
	seen := map[string]bool{}
	for _, p := range pieces {
		if len(p) == 6 && strings.HasPrefix(p, "<0x") && p[5] == '>' {
			seen[p] = true
		}
	}
	return len(seen) == 256
}
