package checkpoint

import (
	"fmt"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// falconMetadata is the falcon.* metadata llama.cpp reads for config c.
func falconMetadata(c llama.Config, name string) []KV {
	return []KV{
		{"general.architecture", "falcon"},
		{"general.name", name},
		{"falcon.context_length", uint32(c.ContextLen)},
		{"falcon.embedding_length", uint32(c.Dim)},
		{"falcon.block_count", uint32(c.NLayers)},
		{"falcon.feed_forward_length", uint32(c.FFNDim)},
		{"falcon.attention.head_count", uint32(c.NHeads)},
		{"falcon.attention.head_count_kv", uint32(c.NKVHeads)},
		{"falcon.attention.layer_norm_epsilon", c.NormEps},
		{"falcon.rope.freq_base", c.RopeTheta},
	}
}

// saveFalconGGUF writes a Falcon model (llama.Config.IsFalcon) with
// llama.cpp's falcon names: Wq, Wk and Wv fused again into attn_qkv.
func saveFalconGGUF(path string, m *llama.Model, tok tokenizer.Tokenizer, opt SaveOptions) error {
	w := gguf.NewWriter()
	kv := falconMetadata(m.Config, opt.Name)
	tkv, err := TokenizerMetadata(tok)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	for _, e := range append(kv, tkv...) {
		if err := w.Set(e.Key, e.Value); err != nil {
			return fmt.Errorf("save %s: %s: %w", path, e.Key, err)
		}
	}
	for k, v := range opt.Extra {
		if err := w.Set(k, v); err != nil {
			return fmt.Errorf("save %s: %s: %w", path, k, err)
		}
	}
	var errs []error
	// mat adds the rows of ls, one after another, as one tensor
	mat := func(name string, ls ...*nn.Linear) {
		dt := ls[0].DType
		if opt.Convert {
			dt = opt.DType
		}
		var data []byte
		out := 0
		for _, l := range ls {
			b := l.Data
			switch {
			case l.DType != dt && opt.Convert:
				var err error
				if b, err = convert(l, dt); err != nil {
					errs = append(errs, fmt.Errorf("save %s: tensor %s: %w", path, name, err))
					return
				}
			case l.DType != dt:
				errs = append(errs, fmt.Errorf("save %s: tensor %s: its parts are %s and %s", path, name, ls[0].DType, l.DType))
				return
			}
			if len(ls) == 1 {
				data = b
			} else {
				data = append(data, b...)
			}
			out += l.Out
		}
		errs = append(errs, w.AddTensor(name, dt, []uint64{uint64(ls[0].In), uint64(out)}, data))
	}
	vec := func(name string, v []float32) {
		if v != nil {
			errs = append(errs, w.AddTensor(name, tensor.F32, []uint64{uint64(len(v))}, tensor.BytesOfF32(v)))
		}
	}
	mat("token_embd.weight", m.Embed)
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", l.AttnNorm)
		vec(p+"attn_norm.bias", l.AttnNormB)
		vec(p+"attn_norm_2.weight", l.FFNNorm)
		vec(p+"attn_norm_2.bias", l.FFNNormB)
		mat(p+"attn_qkv.weight", l.Wq, l.Wk, l.Wv)
		mat(p+"attn_output.weight", l.Wo)
		mat(p+"ffn_up.weight", l.Up)
		mat(p+"ffn_down.weight", l.Down)
	}
	vec("output_norm.weight", m.OutNorm)
	vec("output_norm.bias", m.OutNormB)
	if !m.Config.TiedEmbeddings {
		mat("output.weight", m.Output)
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return w.WriteFile(path)
}
