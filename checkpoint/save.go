package checkpoint

import (
	"fmt"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// SaveOptions control how a model is written.
type SaveOptions struct {
	Name  string       // general.name
	DType tensor.DType // matrices are converted to this dtype; 0 keeps each weight's own (F32 is 0, so set Convert)
	// Convert asks for the matrices to be re-encoded as DType (F32, F16 or
	// BF16 from a float weight); otherwise weights are written as they are.
	Convert bool
	// Extra metadata written after herd's own keys.
	Extra map[string]any
	// Tensors are further tensors written after the model's (a reward
	// model's score head).
	Tensors []Tensor
}

// Tensor is a tensor to write beside a model's: its GGUF name, dtype,
// dims in ggml order and bytes.
type Tensor struct {
	Name  string
	DType tensor.DType
	Dims  []uint64
	Data  []byte
}

// KV is one GGUF metadata entry.
type KV struct {
	Key   string
	Value any
}

// TokenizerMetadata returns the tokenizer.ggml.* metadata that stores tok
// in a GGUF file, as llama.cpp writes it: model "llama" (tokens, scores,
// token types, add_space_prefix) for a SentencePiece vocabulary, model
// "gpt2" (tokens, token types, merges, tokenizer.ggml.pre,
// add_bos_token, and tokenizer.chat_template when it has one) for a
// byte-level BPE; BOS, EOS and unknown ids where the vocabulary has them.
// A nil tokenizer (or a nil *SPM or *BPE) gives no metadata.
func TokenizerMetadata(tok tokenizer.Tokenizer) ([]KV, error) {
	var kv []KV
	id := func(key string, v int) {
		if v >= 0 {
			kv = append(kv, KV{key, uint32(v)})
		}
	}
	switch t := tok.(type) {
	case nil:
	case *tokenizer.SPM:
		if t == nil {
			break
		}
		n := t.VocabSize()
		pieces, scores, types := make([]string, n), make([]float32, n), make([]int32, n)
		for i := range n {
			pieces[i], scores[i], types[i] = t.Piece(i), t.Score(i), int32(t.Type(i))
		}
		o := t.Options()
		kv = append(kv, KV{"tokenizer.ggml.model", "llama"}, KV{"tokenizer.ggml.tokens", pieces},
			KV{"tokenizer.ggml.scores", scores}, KV{"tokenizer.ggml.token_type", types},
			KV{"tokenizer.ggml.add_space_prefix", o.AddDummyPrefix})
		id("tokenizer.ggml.bos_token_id", o.BOS)
		id("tokenizer.ggml.eos_token_id", o.EOS)
		id("tokenizer.ggml.unknown_token_id", t.UNK())
	case *tokenizer.BPE:
		if t == nil {
			break
		}
		n := t.VocabSize()
		tokens, types := make([]string, n), make([]int32, n)
		for i := range n {
			tokens[i], types[i] = t.Piece(i), int32(t.Type(i))
		}
		o := t.Options()
		kv = append(kv, KV{"tokenizer.ggml.model", "gpt2"}, KV{"tokenizer.ggml.pre", o.Pre.String()},
			KV{"tokenizer.ggml.tokens", tokens}, KV{"tokenizer.ggml.token_type", types},
			KV{"tokenizer.ggml.merges", t.Merges()}, KV{"tokenizer.ggml.add_bos_token", o.AddBOS})
		id("tokenizer.ggml.bos_token_id", o.BOS)
		id("tokenizer.ggml.eos_token_id", o.EOS)
		if o.ChatTemplate != "" {
			kv = append(kv, KV{"tokenizer.chat_template", o.ChatTemplate})
		}
	default:
		return nil, fmt.Errorf("tokenizer of type %T cannot be stored in GGUF", tok)
	}
	return kv, nil
}

// SaveGGUF writes m and its tokenizer (nil: none) as a GGUF v3 file,
// atomically. Norm weights are stored as F32. A Falcon model is written as
// llama.cpp's "falcon" architecture.
func SaveGGUF(path string, m *llama.Model, tok tokenizer.Tokenizer, opt SaveOptions) error {
	c := m.Config
	if c.IsFalcon() {
		return saveFalconGGUF(path, m, tok, opt)
	}
	w := gguf.NewWriter()
	kv := modelMetadata(c, opt.Name)
	if c.ALiBi {
		kv = baichuanMetadata(c, opt.Name)
	}
	if c.Rope != llama.RopeInterleaved {
		return fmt.Errorf("save %s: GGUF llama models use interleaved RoPE; permute the q/k weights first", path)
	}
	tkv, err := TokenizerMetadata(tok)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	kv = append(kv, tkv...)
	for _, e := range kv {
		if err := w.Set(e.Key, e.Value); err != nil {
			return fmt.Errorf("save %s: %s: %w", path, e.Key, err)
		}
	}
	for k, v := range opt.Extra {
		if err := w.Set(k, v); err != nil {
			return fmt.Errorf("save %s: %s: %w", path, k, err)
		}
	}
	addMat := func(name string, l *nn.Linear) error {
		dt, data := l.DType, l.Data
		if opt.Convert && dt != opt.DType {
			var err error
			if data, err = convert(l, opt.DType); err != nil {
				return fmt.Errorf("save %s: tensor %s: %w", path, name, err)
			}
			dt = opt.DType
		}
		return w.AddTensor(name, dt, []uint64{uint64(l.In), uint64(l.Out)}, data)
	}
	addVec := func(name string, v []float32) error {
		return w.AddTensor(name, tensor.F32, []uint64{uint64(len(v))}, tensor.BytesOfF32(v))
	}
	if err := addMat(llama.EmbedName, m.Embed); err != nil {
		return err
	}
	for i := range m.Layers {
		for _, t := range m.Layers[i].Tensors(i) {
			var err error
			if t.Norm != nil {
				err = addVec(t.Name, *t.Norm)
			} else {
				err = addMat(t.Name, *t.Mat)
			}
			if err != nil {
				return err
			}
		}
	}
	if err := addVec(llama.OutNormName, m.OutNorm); err != nil {
		return err
	}
	if !c.TiedEmbeddings {
		if err := addMat(llama.OutputName, m.Output); err != nil {
			return err
		}
	}
	for _, t := range opt.Tensors {
		if err := w.AddTensor(t.Name, t.DType, t.Dims, t.Data); err != nil {
			return fmt.Errorf("save %s: tensor %s: %w", path, t.Name, err)
		}
	}
	return w.WriteFile(path)
}

// convert re-encodes a weight as dtype dt, row by row.
func convert(l *nn.Linear, dt tensor.DType) ([]byte, error) {
	rb, err := dt.RowBytes(l.In)
	if err != nil {
		return nil, err
	}
	out := make([]byte, rb*l.Out)
	row := make([]float32, l.In)
	for r := 0; r < l.Out; r++ {
		l.Row(row, r)
		if err := tensor.Quantize(dt, out[r*rb:(r+1)*rb], row); err != nil {
			return nil, err
		}
	}
	return out, nil
}
