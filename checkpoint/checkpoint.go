// Package checkpoint loads and saves a model together with its tokenizer:
// from GGUF files (tokenizer in the metadata), from llama2.c checkpoints with
// a tokenizer.bin beside them, or from the embedded default model; and saves
// models as GGUF with llama.* hyperparameters and tokenizer.ggml.* metadata.
package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/assets"
	conv "github.com/herd-llm/herd/convert"
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
// when given, otherwise the GGUF file's own (or the directory's, for a
// Hugging Face or Meta checkpoint directory, which is read into memory
// through package convert). An empty modelPath loads the embedded default
// (and its tokenizer unless tokPath is given).
func Load(modelPath, tokPath string) (*llama.Model, tokenizer.Tokenizer, error) {
	var m *llama.Model
	var tok tokenizer.Tokenizer
	if modelPath == "" {
		dm, dt, err := Default()
		if err != nil {
			return nil, nil, err
		}
		m, tok = dm, dt
	} else if _, ok := conv.Detect(modelPath); ok {
		var err error
		if m, tok, err = openForeign(modelPath); err != nil {
			return nil, nil, err
		}
		if tok == nil && tokPath == "" {
			return nil, nil, fmt.Errorf("%s: the directory has no tokenizer.model or tokenizer.json; give one with --tokenizer", modelPath)
		}
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
			if tok, err = OpenTokenizer(modelPath, m.Config.VocabSize); err != nil {
				m.Close()
				return nil, nil, err
			}
		}
	}
	if tokPath != "" {
		var err error
		if tok, err = OpenTokenizer(tokPath, m.Config.VocabSize); err != nil {
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

// LoadSPM reads a SentencePiece tokenizer (a GGUF file of tokenizer
// model "llama", a .model file, or a llama2.c tokenizer.bin, which needs
// vocab, the model's vocabulary size), for callers that need its pieces and
// scores. OpenTokenizer reads every kind.
func LoadSPM(path string, vocab int) (*tokenizer.SPM, error) {
	ext := filepath.Ext(path)
	if vocab <= 0 && fileExists(path) && !strings.EqualFold(ext, ".model") && !strings.EqualFold(ext, ".json") {
		if kind, err := llama.Format(path); err == nil && kind != "gguf" {
			return nil, fmt.Errorf("%s: a llama2.c tokenizer.bin needs the vocabulary size", path)
		}
	}
	tok, err := OpenTokenizer(path, vocab)
	if err != nil {
		return nil, err
	}
	spm, ok := tok.(*tokenizer.SPM)
	if !ok {
		return nil, fmt.Errorf("%s: a byte-level BPE vocabulary, not a SentencePiece one", path)
	}
	return spm, nil
}

// OpenTokenizer reads the tokenizer at path, whatever its kind:
//
//   - a GGUF file: its tokenizer.ggml.* metadata (TokenizerFromGGUF);
//   - a SentencePiece .model file;
//   - a Hugging Face tokenizer.json (any name ending in .json), with the
//     tokenizer_config.json beside it when there is one;
//   - a directory holding tokenizer.json, or encoder.json + vocab.bpe (also
//     named PREFIX-encoder.json + PREFIX-vocab.bpe), and optionally
//     tokenizer_config.json;
//   - otherwise a llama2.c tokenizer.bin, of vocab pieces (the model's
//     vocabulary size), or of as many as the file holds when vocab <= 0.
func OpenTokenizer(path string, vocab int) (tokenizer.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openTokenizerDir(path)
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return openTokenizerJSON(path, filepath.Join(filepath.Dir(path), "tokenizer_config.json"))
	}
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
		if vocab, err = tokenizer.Llama2cVocabSize(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	t, err := tokenizer.FromLlama2c(data, vocab)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// readOptional reads a file that may be absent (nil, nil).
func readOptional(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func openTokenizerJSON(path, configPath string) (tokenizer.Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	config, err := readOptional(configPath)
	if err != nil {
		return nil, err
	}
	t, err := tokenizer.FromHuggingFace(data, config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func openTokenizerDir(dir string) (tokenizer.Tokenizer, error) {
	configPath := filepath.Join(dir, "tokenizer_config.json")
	if p := filepath.Join(dir, "tokenizer.json"); fileExists(p) {
		return openTokenizerJSON(p, configPath)
	}
	encoders, _ := filepath.Glob(filepath.Join(dir, "*encoder.json"))
	for _, enc := range encoders {
		prefix := strings.TrimSuffix(enc, "encoder.json")
		merges := prefix + "vocab.bpe"
		if !fileExists(merges) {
			continue
		}
		encData, err := os.ReadFile(enc)
		if err != nil {
			return nil, err
		}
		mergeData, err := os.ReadFile(merges)
		if err != nil {
			return nil, err
		}
		config, err := readOptional(configPath)
		if err != nil {
			return nil, err
		}
		t, err := tokenizer.FromGPT2Files(encData, mergeData, config)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		return t, nil
	}
	if p := filepath.Join(dir, "tokenizer.model"); fileExists(p) {
		return OpenTokenizer(p, 0)
	}
	return nil, fmt.Errorf("%s: no tokenizer.json, encoder.json + vocab.bpe or tokenizer.model in the directory", dir)
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// TokenizerFromGGUF builds the tokenizer stored in a GGUF file's
// tokenizer.ggml.* metadata: model "llama" is SentencePiece (tokens,
// scores, token_type, bos/eos/unknown ids, add_space_prefix), model "gpt2"
// byte-level BPE (tokens, token_type, merges, bos/eos ids, add_bos_token,
// and tokenizer.ggml.pre naming the split pattern; llama.cpp's
// "llama-bpe" also ignores merges for whole-token chunks, as Llama 3
// does). tokenizer.chat_template is kept with a BPE vocabulary.
func TokenizerFromGGUF(f *gguf.File) (tokenizer.Tokenizer, error) {
	model, ok := f.GetString("tokenizer.ggml.model")
	if !ok {
		return nil, fmt.Errorf("%s: no tokenizer in the metadata (tokenizer.ggml.model); give one with --tokenizer", f.Path)
	}
	if model != "llama" && model != "gpt2" {
		return nil, fmt.Errorf("%s: tokenizer model %q is not supported (herd reads \"llama\" SentencePiece and \"gpt2\" byte-level BPE vocabularies)", f.Path, model)
	}
	pieces, ok := f.GetStrings("tokenizer.ggml.tokens")
	if !ok || len(pieces) == 0 {
		return nil, fmt.Errorf("%s: tokenizer.ggml.tokens is missing or not an array of strings", f.Path)
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
	if model == "gpt2" {
		return bpeFromGGUF(f, pieces, types, id)
	}
	var scores []float32
	if v, ok := f.Get("tokenizer.ggml.scores"); ok {
		if scores, ok = v.AsFloat32s(); !ok || len(scores) != len(pieces) {
			return nil, fmt.Errorf("%s: tokenizer.ggml.scores must be %d float32s", f.Path, len(pieces))
		}
	}
	opt := tokenizer.LlamaOptions()
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

// bpeFromGGUF reads the "gpt2" half of TokenizerFromGGUF.
func bpeFromGGUF(f *gguf.File, tokens []string, types []tokenizer.Type, id func(string, int) (int, error)) (*tokenizer.BPE, error) {
	merges, ok := f.GetStrings("tokenizer.ggml.merges")
	if !ok {
		return nil, fmt.Errorf("%s: tokenizer.ggml.merges is missing or not an array of strings", f.Path)
	}
	preName, _ := f.GetString("tokenizer.ggml.pre")
	if preName == "" {
		preName = "gpt-2"
	}
	pre, err := tokenizer.PretokenizerByName(preName)
	if err != nil {
		return nil, fmt.Errorf("%s: tokenizer.ggml.pre: %w", f.Path, err)
	}
	opt := tokenizer.BPEOptions{Pre: pre, IgnoreMerges: pre == tokenizer.PreLlama3}
	if opt.BOS, err = id("tokenizer.ggml.bos_token_id", -1); err != nil {
		return nil, err
	}
	if opt.EOS, err = id("tokenizer.ggml.eos_token_id", -1); err != nil {
		return nil, err
	}
	opt.AddBOS = opt.BOS >= 0 && pre == tokenizer.PreLlama3
	if v, ok := f.GetBool("tokenizer.ggml.add_bos_token"); ok {
		opt.AddBOS = v
	}
	opt.ChatTemplate, _ = f.GetString("tokenizer.chat_template")
	t, err := tokenizer.NewBPE(tokens, types, merges, opt)
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
