package gptq

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// QConfig is AutoGPTQ's quantize_config.json.
type QConfig struct {
	Bits             int     `json:"bits"`
	GroupSize        int     `json:"group_size"`
	DampPercent      float64 `json:"damp_percent"`
	DescAct          bool    `json:"desc_act"`
	StaticGroups     bool    `json:"static_groups"`
	Sym              bool    `json:"sym"`
	TrueSequential   bool    `json:"true_sequential"`
	QuantMethod      string  `json:"quant_method"`
	CheckpointFormat string  `json:"checkpoint_format,omitempty"` // "gptq" (v1, zeros minus one; the default) or "gptq_v2"
	ModelFileBase    string  `json:"model_file_base_name,omitempty"`
}

// hfConfig is the part of a Hugging Face LLaMA config.json herd reads and writes.
type hfConfig struct {
	Architectures []string `json:"architectures"`
	ModelType     string   `json:"model_type"`
	Hidden        int      `json:"hidden_size"`
	Intermediate  int      `json:"intermediate_size"`
	Heads         int      `json:"num_attention_heads"`
	KVHeads       int      `json:"num_key_value_heads"`
	Layers        int      `json:"num_hidden_layers"`
	Vocab         int      `json:"vocab_size"`
	Eps           float32  `json:"rms_norm_eps"`
	RopeTheta     float32  `json:"rope_theta"`
	MaxPos        int      `json:"max_position_embeddings"`
	Tied          bool     `json:"tie_word_embeddings"`
	TorchDType    string   `json:"torch_dtype"`
	Quant         *QConfig `json:"quantization_config,omitempty"`
}

// hfModules maps herd's (GGUF) matrix names within a block to Hugging
// Face's module names.
var hfModules = []struct{ gguf, hf string }{
	{"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"}, {"attn_v", "self_attn.v_proj"},
	{"attn_output", "self_attn.o_proj"}, {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
	{"ffn_down", "mlp.down_proj"},
}

// permuteRows reorders the output rows of a query or key projection
// between GGUF's interleaved RoPE order (row h·hd + 2i + p) and Hugging
// Face's rotate-half order (row h·hd + p·hd/2 + i).
func (q *QLinear) permuteRows(hd int, toHF bool) *QLinear {
	r := *q
	r.Q, r.Scales, r.Zeros = make([]int32, len(q.Q)), make([]float32, len(q.Scales)), make([]int32, len(q.Zeros))
	groups := q.Groups()
	for h := 0; h < q.Out/hd; h++ {
		for i := range hd / 2 {
			for p := range 2 {
				g, f := h*hd+2*i+p, h*hd+p*hd/2+i
				src, dst := g, f
				if !toHF {
					src, dst = f, g
				}
				copy(r.Q[dst*q.In:(dst+1)*q.In], q.Q[src*q.In:(src+1)*q.In])
				for k := range groups {
					r.Scales[k*q.Out+dst], r.Zeros[k*q.Out+dst] = q.Scales[k*q.Out+src], q.Zeros[k*q.Out+src]
				}
			}
		}
	}
	return &r
}

// WriteAutoGPTQ writes model m with its layer matrices quantized (lin, by
// GGUF tensor name, rows in GGUF order) as an AutoGPTQ checkpoint in dir:
// model.safetensors (Hugging Face names, q/k rows in rotate-half order,
// the other tensors as float32, or float16 where m holds them so),
// quantize_config.json and config.json. The v1 format stores zero points
// minus one and so cannot hold a zero point of 0; a model that has one is
// written as gptq_v2.
func WriteAutoGPTQ(dir string, m *llama.Model, lin map[string]*QLinear, qc QConfig) error {
	c := m.Config
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	qc.QuantMethod, qc.ModelFileBase, qc.CheckpointFormat = "gptq", "model", "gptq"
	for _, q := range lin {
		for _, z := range q.Zeros {
			if z == 0 {
				qc.CheckpointFormat = "gptq_v2"
			}
		}
	}
	var ts []safetensors.Tensor
	mat := func(name string, l *nn.Linear) error {
		w := make([]float32, l.Out*l.In)
		for r := range l.Out {
			l.Row(w[r*l.In:(r+1)*l.In], r)
		}
		dt := safetensors.F32
		if l.DType == tensor.F16 {
			dt = safetensors.F16
		}
		t, err := safetensors.FromFloat32(name, dt, []int64{int64(l.Out), int64(l.In)}, w)
		ts = append(ts, t)
		return err
	}
	vec := func(name string, v []float32) {
		t, _ := safetensors.FromFloat32(name, safetensors.F32, []int64{int64(len(v))}, v)
		ts = append(ts, t)
	}
	if err := mat("model.embed_tokens.weight", m.Embed); err != nil {
		return err
	}
	for i, l := range m.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		vec(p+"input_layernorm.weight", l.AttnNorm)
		vec(p+"post_attention_layernorm.weight", l.FFNNorm)
		for _, mod := range hfModules {
			name := fmt.Sprintf("blk.%d.%s.weight", i, mod.gguf)
			q, ok := lin[name]
			if !ok {
				return fmt.Errorf("gptq: no quantized %s", name)
			}
			if mod.gguf == "attn_q" || mod.gguf == "attn_k" {
				q = q.permuteRows(c.HeadDim(), true)
			}
			qt, err := q.Tensors(p+mod.hf, qc.CheckpointFormat == "gptq_v2")
			if err != nil {
				return err
			}
			ts = append(ts, qt...)
		}
	}
	vec("model.norm.weight", m.OutNorm)
	if !c.TiedEmbeddings {
		if err := mat("lm_head.weight", m.Output); err != nil {
			return err
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), map[string]string{"format": "pt"}, ts); err != nil {
		return err
	}
	hc := hfConfig{Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama", Hidden: c.Dim, Intermediate: c.FFNDim,
		Heads: c.NHeads, KVHeads: c.NKVHeads, Layers: c.NLayers, Vocab: c.VocabSize, Eps: c.NormEps, RopeTheta: c.RopeTheta,
		MaxPos: c.ContextLen, Tied: c.TiedEmbeddings, TorchDType: "float16", Quant: &qc}
	if err := writeJSON(filepath.Join(dir, "quantize_config.json"), qc); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "config.json"), hc)
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

// AutoGPTQ is a checkpoint in the AutoGPTQ layout, read.
type AutoGPTQ struct {
	Config  llama.Config
	QConfig QConfig
	Linear  map[string]*QLinear // by GGUF tensor name, rows in GGUF order
	File    *safetensors.File   // the other tensors (embedding, norms, head)
}

// Close releases the safetensors mapping.
func (a *AutoGPTQ) Close() error { return a.File.Close() }

// readJSON decodes path into v, naming the file in errors.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadAutoGPTQ reads an AutoGPTQ checkpoint directory: config.json,
// quantize_config.json (or config.json's quantization_config) and the
// single .safetensors file (model.safetensors or the one there is).
func ReadAutoGPTQ(dir string) (*AutoGPTQ, error) {
	var hc hfConfig
	if err := readJSON(filepath.Join(dir, "config.json"), &hc); err != nil {
		return nil, err
	}
	var qc QConfig
	if err := readJSON(filepath.Join(dir, "quantize_config.json"), &qc); err != nil {
		if hc.Quant == nil {
			return nil, err
		}
		qc = *hc.Quant
	}
	v2 := false
	switch qc.CheckpointFormat {
	case "", "gptq":
	case "gptq_v2":
		v2 = true
	default:
		return nil, fmt.Errorf("%s: checkpoint_format %q: herd reads gptq and gptq_v2", dir, qc.CheckpointFormat)
	}
	if hc.KVHeads == 0 {
		hc.KVHeads = hc.Heads
	}
	if hc.RopeTheta == 0 {
		hc.RopeTheta = 10000
	}
	c := llama.Config{Dim: hc.Hidden, NLayers: hc.Layers, NHeads: hc.Heads, NKVHeads: hc.KVHeads, FFNDim: hc.Intermediate,
		VocabSize: hc.Vocab, ContextLen: hc.MaxPos, RopeTheta: hc.RopeTheta, NormEps: hc.Eps, TiedEmbeddings: hc.Tied}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: config.json: %w", dir, err)
	}
	path := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(path); err != nil {
		found, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
		if len(found) != 1 {
			return nil, fmt.Errorf("%s: no model.safetensors and %d other .safetensors files (herd reads one, unsharded)", dir, len(found))
		}
		path = found[0]
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	a := &AutoGPTQ{Config: c, QConfig: qc, Linear: map[string]*QLinear{}, File: f}
	for i := range c.NLayers {
		for _, mod := range hfModules {
			out, in := c.Dim, c.Dim
			switch mod.gguf {
			case "attn_k", "attn_v":
				out = c.KVDim()
			case "ffn_gate", "ffn_up":
				out = c.FFNDim
			case "ffn_down":
				in = c.FFNDim
			}
			q, err := ReadQLinear(f, fmt.Sprintf("model.layers.%d.%s", i, mod.hf), out, in, qc.Bits, v2)
			if err != nil {
				f.Close()
				return nil, err
			}
			if mod.gguf == "attn_q" || mod.gguf == "attn_k" {
				q = q.permuteRows(c.HeadDim(), false)
			}
			a.Linear[fmt.Sprintf("blk.%d.%s.weight", i, mod.gguf)] = q
		}
	}
	return a, nil
}

// Model builds a herd model from the checkpoint: each layer matrix in the
// llama.cpp type that holds its grid exactly (Q4_0, Q8_0) or else as F16
// of its dequantized weights; the other tensors as stored (F16 or F32).
func (a *AutoGPTQ) Model() (*llama.Model, error) {
	c := a.Config
	m, err := llama.Random(c, tensor.F32, 1)
	if err != nil {
		return nil, err
	}
	floats := func(name string, n int) ([]float32, tensor.DType, error) {
		t, ok := a.File.Tensor(name)
		if !ok {
			return nil, 0, fmt.Errorf("%s: no tensor %s", a.File.Path, name)
		}
		if t.NumElements() != int64(n) {
			return nil, 0, fmt.Errorf("%s: %s has shape %v, want %d elements", a.File.Path, name, t.Shape, n)
		}
		v, err := t.Float32()
		dt := tensor.F32
		if t.DType == safetensors.F16 {
			dt = tensor.F16
		}
		return v, dt, err
	}
	matrix := func(name, gname string, out, in int) (*nn.Linear, error) {
		v, dt, err := floats(name, out*in)
		if err != nil {
			return nil, err
		}
		rb, _ := dt.RowBytes(in)
		b := make([]byte, rb*out)
		if err := tensor.Quantize(dt, b, v); err != nil {
			return nil, err
		}
		return nn.NewLinear(gname, dt, out, in, b)
	}
	if m.Embed, err = matrix("model.embed_tokens.weight", "token_embd.weight", c.VocabSize, c.Dim); err != nil {
		return nil, err
	}
	m.Output = m.Embed
	if !c.TiedEmbeddings {
		if m.Output, err = matrix("lm_head.weight", "output.weight", c.VocabSize, c.Dim); err != nil {
			return nil, err
		}
	}
	if m.OutNorm, _, err = floats("model.norm.weight", c.Dim); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		if l.AttnNorm, _, err = floats(p+"input_layernorm.weight", c.Dim); err != nil {
			return nil, err
		}
		if l.FFNNorm, _, err = floats(p+"post_attention_layernorm.weight", c.Dim); err != nil {
			return nil, err
		}
		for _, d := range []struct {
			name string
			dst  **nn.Linear
		}{{"attn_q", &l.Wq}, {"attn_k", &l.Wk}, {"attn_v", &l.Wv}, {"attn_output", &l.Wo},
			{"ffn_gate", &l.Gate}, {"ffn_up", &l.Up}, {"ffn_down", &l.Down}} {
			name := fmt.Sprintf("blk.%d.%s.weight", i, d.name)
			q := a.Linear[name]
			dt, data, err := q.Encode()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if *d.dst, err = nn.NewLinear(name, dt, q.Out, q.In, data); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// IsAutoGPTQ reports whether path is a directory holding a
// quantize_config.json (or a config.json with a GPTQ quantization_config).
func IsAutoGPTQ(path string) bool {
	if _, err := os.Stat(filepath.Join(path, "quantize_config.json")); err == nil {
		return true
	}
	b, err := os.ReadFile(filepath.Join(path, "config.json"))
	return err == nil && strings.Contains(string(b), `"quant_method": "gptq"`)
}
