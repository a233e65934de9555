package llama

import (
	"fmt"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// Falcon is the block of the Falcon models (Almazrouei et al. 2023), as
// properties of the one forward pass: LayerNorm with biases, attention and
// a GELU feed-forward in parallel from the block's input (one norm, or two
// for the 40B "new decoder architecture"), multi-query or grouped KV
// heads, rotate-half RoPE. Its tensors use llama.cpp's "falcon" names:
// attn_norm (and attn_norm_2) with .bias, one fused attn_qkv (all query
// rows, then the key rows, then the value rows), attn_output, ffn_up,
// ffn_down, output_norm with .bias, output (absent: tied).
func Falcon(c Config) Config {
	c.Norm, c.FFN, c.Parallel, c.Rope = NormLayer, FFNGELU, true, RopeHalf
	return c
}

// IsFalcon reports whether c is the Falcon block.
func (c Config) IsFalcon() bool {
	return c.Norm == NormLayer && c.FFN == FFNGELU && c.Parallel && c.Rope == RopeHalf
}

// fromGGUFFalcon reads a GGUF file of architecture "falcon".
func fromGGUFFalcon(f *gguf.File) (*Model, error) {
	var c Config
	var err error
	for _, k := range []struct {
		dst *int
		key string
		def int
	}{{&c.Dim, "embedding_length", -1}, {&c.NLayers, "block_count", -1}, {&c.NHeads, "attention.head_count", -1},
		{&c.NKVHeads, "attention.head_count_kv", 1}, {&c.FFNDim, "feed_forward_length", 0}, {&c.ContextLen, "context_length", 2048}} {
		if *k.dst, err = ggufUint(f, "falcon", k.key, k.def); err != nil {
			return nil, err
		}
	}
	if c.FFNDim == 0 {
		c.FFNDim = 4 * c.Dim
	}
	c.RopeTheta, c.NormEps = 10000, 1e-5
	if c.RopeTheta, err = ggufFloat(f, "falcon", "rope.freq_base", c.RopeTheta); err != nil {
		return nil, err
	}
	if c.NormEps, err = ggufFloat(f, "falcon", "attention.layer_norm_epsilon", c.NormEps); err != nil {
		return nil, err
	}
	return buildFalcon(f.Path, Falcon(c), rawTensors(f))
}

// buildFalcon assembles a Falcon model from tensors in llama.cpp's falcon
// naming, cutting each fused attn_qkv into Wq, Wk and Wv (views of its rows).
func buildFalcon(src string, c Config, ts []rawTensor) (*Model, error) {
	byName := make(map[string]rawTensor, len(ts))
	for _, t := range ts {
		byName[t.Name] = t
	}
	used := map[string]bool{}
	get := func(name string, optional bool) (rawTensor, bool, error) {
		t, ok := byName[name]
		if !ok && !optional {
			return t, false, fmt.Errorf("%s: missing tensor %s", src, name)
		}
		used[name] = ok
		return t, ok, nil
	}
	vec := func(name string, optional bool) ([]float32, error) {
		t, ok, err := get(name, optional)
		if err != nil || !ok {
			return nil, err
		}
		if len(t.Dims) != 1 || t.Dims[0] != uint64(c.Dim) {
			return nil, fmt.Errorf("%s: tensor %s has dims %v, the config wants [%d]", src, name, t.Dims, c.Dim)
		}
		out := make([]float32, c.Dim)
		if err := tensor.Dequantize(t.DType, out, t.Data); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", src, name, err)
		}
		return out, nil
	}
	mat := func(name string, optional bool) (*nn.Linear, error) {
		t, ok, err := get(name, optional)
		if err != nil || !ok {
			return nil, err
		}
		if len(t.Dims) != 2 || t.Dims[0] > 1<<31 || t.Dims[1] > 1<<31 {
			return nil, fmt.Errorf("%s: tensor %s has dims %v, want 2 sane ones", src, name, t.Dims)
		}
		l, err := nn.NewLinear(name, t.DType, int(t.Dims[1]), int(t.Dims[0]), t.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return l, nil
	}
	m := &Model{Config: c}
	var err error
	if m.Embed, err = mat("token_embd.weight", false); err != nil {
		return nil, err
	}
	if c.VocabSize == 0 {
		m.Config.VocabSize = m.Embed.Out
	}
	if m.OutNorm, err = vec("output_norm.weight", false); err != nil {
		return nil, err
	}
	if m.OutNormB, err = vec("output_norm.bias", false); err != nil {
		return nil, err
	}
	if m.Output, err = mat("output.weight", true); err != nil {
		return nil, err
	}
	m.Config.TiedEmbeddings = m.Output == nil
	if m.Output == nil {
		m.Output = m.Embed
	}
	m.Layers = make([]Layer, c.NLayers)
	for i := range m.Layers {
		if err := m.falconLayer(i, vec, mat); err != nil {
			return nil, err
		}
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	for _, t := range ts {
		if !used[t.Name] {
			return nil, fmt.Errorf("%s: unexpected tensor %s in a falcon model", src, t.Name)
		}
	}
	return m, nil
}

// falconLayer fills layer i.
func (m *Model) falconLayer(i int, vec func(string, bool) ([]float32, error), mat func(string, bool) (*nn.Linear, error)) error {
	c := m.Config
	l := &m.Layers[i]
	l.layerIndex = i
	p := fmt.Sprintf("blk.%d.", i)
	var err error
	for _, v := range []struct {
		dst      *[]float32
		name     string
		optional bool
	}{{&l.AttnNorm, "attn_norm.weight", false}, {&l.AttnNormB, "attn_norm.bias", false},
		{&l.FFNNorm, "attn_norm_2.weight", true}, {&l.FFNNormB, "attn_norm_2.bias", true}} {
		if *v.dst, err = vec(p+v.name, v.optional); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		dst  **nn.Linear
		name string
	}{{&l.Wo, "attn_output.weight"}, {&l.Up, "ffn_up.weight"}, {&l.Down, "ffn_down.weight"}} {
		if *w.dst, err = mat(p+w.name, false); err != nil {
			return err
		}
	}
	qkv, err := mat(p+"attn_qkv.weight", false)
	if err != nil {
		return err
	}
	kv := c.KVDim()
	if qkv.Out != c.Dim+2*kv || qkv.In != c.Dim {
		return fmt.Errorf("tensor %s is %d×%d, the config wants %d×%d", qkv.Name, qkv.Out, qkv.In, c.Dim+2*kv, c.Dim)
	}
	rb, err := qkv.DType.RowBytes(qkv.In)
	if err != nil {
		return err
	}
	cut := func(name string, r0, rows int) (*nn.Linear, error) {
		return nn.NewLinear(p+name, qkv.DType, rows, qkv.In, qkv.Data[r0*rb:(r0+rows)*rb])
	}
	if l.Wq, err = cut("attn_q.weight", 0, c.Dim); err != nil {
		return err
	}
	if l.Wk, err = cut("attn_k.weight", c.Dim, kv); err != nil {
		return err
	}
	l.Wv, err = cut("attn_v.weight", c.Dim+kv, kv)
	return err
}
