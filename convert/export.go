package convert

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// HFOptions control WriteHF.
type HFOptions struct {
	// DType is the dtype of the written matrices: safetensors.F32, F16 or
	// BF16; "" keeps each F32, F16 or BF16 weight as it is and widens
	// quantized ones to F32. Norm weights are always F32.
	DType safetensors.DType
	// MaxShardBytes splits the weights into model-0000i-of-0000n.safetensors
	// files of at most this many bytes (a tensor larger than it gets a file
	// of its own) with model.safetensors.index.json; 0 writes one
	// model.safetensors.
	MaxShardBytes int64
	// ChatTemplate goes into tokenizer_config.json (a BPE tokenizer's own
	// template is used when this is empty).
	ChatTemplate string
}

// hfTensor is one tensor to write, its bytes produced on demand.
type hfTensor struct {
	name  string
	dtype safetensors.DType
	shape []int64
	data  func() ([]byte, error)
	size  int64
}

// WriteHF writes m and its tokenizer (nil: none) as a Hugging Face
// LlamaForCausalLM (or, for a Falcon model, FalconForCausalLM) directory: config.json, model.safetensors (or shards and
// model.safetensors.index.json), generation_config.json, and tokenizer.model
// with tokenizer_config.json for a SentencePiece vocabulary or
// tokenizer.json with tokenizer_config.json for a byte-level BPE. Query and
// key rows are permuted to Hugging Face's rotate-half order. Every file is
// written atomically.
func WriteHF(dir string, m *llama.Model, tok tokenizer.Tokenizer, opt HFOptions) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts, err := hfTensors(m, opt.DType)
	if err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	if err := writeShards(dir, ts, opt.MaxShardBytes); err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	bos, eos := -1, -1
	if tok != nil {
		bos, eos = tok.BOS(), tok.EOS()
	}
	cfg := hfConfigOf(m.Config, torchDType(ts), bos, eos)
	if m.Config.IsFalcon() {
		cfg = falconConfigOf(m, torchDType(ts), bos, eos)
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), cfg); err != nil {
		return err
	}
	gen := map[string]any{"_from_model_config": true}
	if bos >= 0 {
		gen["bos_token_id"] = bos
	}
	if eos >= 0 {
		gen["eos_token_id"] = eos
	}
	if err := writeJSON(filepath.Join(dir, "generation_config.json"), gen); err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	return writeTokenizer(dir, tok, opt.ChatTemplate, m.Config.ContextLen)
}

// hfConfigOf is the config.json transformers' LlamaConfig reads for c.
func hfConfigOf(c llama.Config, dtype string, bos, eos int) map[string]any {
	cfg := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"hidden_size":             c.Dim,
		"intermediate_size":       c.FFNDim,
		"num_hidden_layers":       c.NLayers,
		"num_attention_heads":     c.NHeads,
		"num_key_value_heads":     c.NKVHeads,
		"vocab_size":              c.VocabSize,
		"max_position_embeddings": c.ContextLen,
		"rms_norm_eps":            c.NormEps,
		"rope_theta":              c.RopeTheta,
		"rope_scaling":            nil,
		"hidden_act":              "silu",
		"tie_word_embeddings":     c.TiedEmbeddings,
		"attention_bias":          false,
		"initializer_range":       0.02,
		"pretraining_tp":          1,
		"use_cache":               true,
		"torch_dtype":             dtype,
	}
	if bos >= 0 {
		cfg["bos_token_id"] = bos
	}
	if eos >= 0 {
		cfg["eos_token_id"] = eos
	}
	return cfg
}

// torchDType names the matrices' dtype as config.json's torch_dtype does.
func torchDType(ts []hfTensor) string {
	for _, t := range ts {
		if len(t.shape) == 2 {
			switch t.dtype {
			case safetensors.F16:
				return "float16"
			case safetensors.BF16:
				return "bfloat16"
			}
			return "float32"
		}
	}
	return "float32"
}

// hfTensors lists m's weights under transformers' names.
func hfTensors(m *llama.Model, sdt safetensors.DType) ([]hfTensor, error) {
	var dt tensor.DType
	switch sdt {
	case "":
		dt = keepDType
	case safetensors.F32:
		dt = tensor.F32
	case safetensors.F16:
		dt = tensor.F16
	case safetensors.BF16:
		dt = tensor.BF16
	default:
		return nil, fmt.Errorf("safetensors weights are F32, F16 or BF16, not %s", sdt)
	}
	c := m.Config
	if c.IsFalcon() {
		return falconTensors(m, dt)
	}
	if c.ALiBi || c.Norm != llama.NormRMS || c.FFN != llama.FFNSwiGLU || c.Parallel {
		return nil, fmt.Errorf("the model's block (ALiBi, norm, feed-forward or parallel) is not a LlamaForCausalLM")
	}
	var ts []hfTensor
	var err error
	mat := func(name string, l *nn.Linear, heads int) {
		if err != nil {
			return
		}
		var t hfTensor
		t, err = hfMatrix(name, l, dt, heads, c.HeadDim())
		ts = append(ts, t)
	}
	vec := func(name string, v []float32) {
		b := tensor.BytesOfF32(v)
		ts = append(ts, hfTensor{name: name, dtype: safetensors.F32, shape: []int64{int64(len(v))}, size: int64(len(b)),
			data: func() ([]byte, error) { return b, nil }})
	}
	mat("model.embed_tokens.weight", m.Embed, 0)
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		vec(p+"input_layernorm.weight", l.AttnNorm)
		mat(p+"self_attn.q_proj.weight", l.Wq, c.NHeads)
		mat(p+"self_attn.k_proj.weight", l.Wk, c.NKVHeads)
		mat(p+"self_attn.v_proj.weight", l.Wv, 0)
		mat(p+"self_attn.o_proj.weight", l.Wo, 0)
		vec(p+"post_attention_layernorm.weight", l.FFNNorm)
		mat(p+"mlp.gate_proj.weight", l.Gate, 0)
		mat(p+"mlp.up_proj.weight", l.Up, 0)
		mat(p+"mlp.down_proj.weight", l.Down, 0)
	}
	vec("model.norm.weight", m.OutNorm)
	if !c.TiedEmbeddings {
		mat("lm_head.weight", m.Output, 0)
	}
	if c.Rope != llama.RopeInterleaved {
		return nil, fmt.Errorf("the model uses rotate-half RoPE; export expects herd's interleaved layout")
	}
	return ts, err
}

// keepDType asks hfMatrix to keep a weight's own float type.
const keepDType = tensor.DType(1<<32 - 1)

// hfMatrix is a weight as transformers stores it: [Out, In] of dt (or its
// own float type for keepDType), rows permuted to rotate-half order when
// heads > 0.
func hfMatrix(name string, l *nn.Linear, dt tensor.DType, heads, hd int) (hfTensor, error) {
	if dt == keepDType {
		dt = l.DType
		if dt != tensor.F16 && dt != tensor.BF16 {
			dt = tensor.F32
		}
	}
	sdt := map[tensor.DType]safetensors.DType{tensor.F32: safetensors.F32, tensor.F16: safetensors.F16, tensor.BF16: safetensors.BF16}[dt]
	if sdt == "" {
		return hfTensor{}, fmt.Errorf("tensor %s: safetensors weights are F32, F16 or BF16, not %s", name, dt)
	}
	rowBytes := l.In * dt.BlockBytes()
	data := func() ([]byte, error) {
		b := l.Data
		if l.DType != dt {
			var err error
			if b, err = recodeRows(l, dt); err != nil {
				return nil, fmt.Errorf("tensor %s: %w", name, err)
			}
		}
		if heads > 0 {
			b = permuteRotateHalf(b, heads, hd, rowBytes, true)
		}
		return b, nil
	}
	return hfTensor{name: name, dtype: sdt, shape: []int64{int64(l.Out), int64(l.In)}, size: int64(rowBytes) * int64(l.Out), data: data}, nil
}

// recodeRows re-encodes a weight as dt row by row.
func recodeRows(l *nn.Linear, dt tensor.DType) ([]byte, error) {
	rb := l.In * dt.BlockBytes()
	out := make([]byte, rb*l.Out)
	row := make([]float32, l.In)
	for r := range l.Out {
		l.Row(row, r)
		if err := tensor.Quantize(dt, out[r*rb:(r+1)*rb], row); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeShards writes the tensors as one model.safetensors, or as shards of
// at most maxBytes with model.safetensors.index.json.
func writeShards(dir string, ts []hfTensor, maxBytes int64) error {
	var groups [][]hfTensor
	var total, cur int64
	for _, t := range ts {
		total += t.size
		if len(groups) == 0 || maxBytes > 0 && cur+t.size > maxBytes && cur > 0 {
			groups = append(groups, nil)
			cur = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
		cur += t.size
	}
	meta := map[string]string{"format": "pt"}
	if maxBytes <= 0 || len(groups) == 1 {
		return writeSafetensors(filepath.Join(dir, "model.safetensors"), meta, ts)
	}
	weightMap := map[string]string{}
	for i, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
		if err := writeSafetensors(filepath.Join(dir, name), meta, g); err != nil {
			return err
		}
		for _, t := range g {
			weightMap[t.name] = name
		}
	}
	return writeJSON(filepath.Join(dir, "model.safetensors.index.json"), map[string]any{
		"metadata": map[string]any{"total_size": total}, "weight_map": weightMap})
}

// writeSafetensors writes one file, producing the tensors' bytes one at a
// time.
func writeSafetensors(path string, meta map[string]string, ts []hfTensor) error {
	st := make([]safetensors.Tensor, len(ts))
	for i, t := range ts {
		b, err := t.data()
		if err != nil {
			return err
		}
		st[i] = safetensors.Tensor{Name: t.name, DType: t.dtype, Shape: t.shape, Data: b}
	}
	return safetensors.WriteFile(path, meta, st)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}
