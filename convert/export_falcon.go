package convert

import (
	"fmt"

	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// falconConfigOf is the config.json transformers' FalconConfig reads for
// c: Falcon-7B's multi-query layout for one KV head and one norm, the "new
// decoder architecture" (num_kv_heads, one or two norms) otherwise.
func falconConfigOf(m *llama.Model, dtype string, bos, eos int) map[string]any {
	c := m.Config
	twoNorms := m.Layers[0].FFNNorm != nil
	cfg := map[string]any{
		"architectures": []string{"FalconForCausalLM"}, "model_type": "falcon",
		"hidden_size": c.Dim, "num_attention_heads": c.NHeads, "num_hidden_layers": c.NLayers,
		"ffn_hidden_size": c.FFNDim, "vocab_size": c.VocabSize, "max_position_embeddings": c.ContextLen,
		"layer_norm_epsilon": c.NormEps, "rope_theta": c.RopeTheta, "rope_scaling": nil,
		"parallel_attn": true, "bias": false, "alibi": false, "activation": "gelu",
		"tie_word_embeddings": c.TiedEmbeddings, "torch_dtype": dtype,
	}
	if c.NKVHeads == 1 && !twoNorms {
		cfg["multi_query"], cfg["new_decoder_architecture"] = true, false
	} else {
		cfg["new_decoder_architecture"], cfg["num_kv_heads"] = true, c.NKVHeads
		cfg["num_ln_in_parallel_attn"] = map[bool]int{true: 2, false: 1}[twoNorms]
	}
	if bos >= 0 {
		cfg["bos_token_id"] = bos
	}
	if eos >= 0 {
		cfg["eos_token_id"] = eos
	}
	return cfg
}

// falconTensors lists a Falcon model's weights under transformers' names,
// Wq, Wk and Wv fused into query_key_value in Falcon's per-KV-group order.
func falconTensors(m *llama.Model, dt tensor.DType) ([]hfTensor, error) {
	c := m.Config
	var ts []hfTensor
	var err error
	mat := func(name string, l *nn.Linear) {
		if err == nil {
			var t hfTensor
			t, err = hfMatrix(name, l, dt, 0, 0)
			ts = append(ts, t)
		}
	}
	vec := func(name string, v []float32) {
		b := tensor.BytesOfF32(v)
		ts = append(ts, hfTensor{name: name, dtype: safetensors.F32, shape: []int64{int64(len(v))}, size: int64(len(b)),
			data: func() ([]byte, error) { return b, nil }})
	}
	mat("transformer.word_embeddings.weight", m.Embed)
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("transformer.h.%d.", i)
		if l.FFNNorm != nil {
			vec(p+"ln_attn.weight", l.AttnNorm)
			vec(p+"ln_attn.bias", l.AttnNormB)
			vec(p+"ln_mlp.weight", l.FFNNorm)
			vec(p+"ln_mlp.bias", l.FFNNormB)
		} else {
			vec(p+"input_layernorm.weight", l.AttnNorm)
			vec(p+"input_layernorm.bias", l.AttnNormB)
		}
		if err == nil {
			var t hfTensor
			t, err = fusedQKV(p+"self_attention.query_key_value.weight", l, dt, c)
			ts = append(ts, t)
		}
		mat(p+"self_attention.dense.weight", l.Wo)
		mat(p+"mlp.dense_h_to_4h.weight", l.Up)
		mat(p+"mlp.dense_4h_to_h.weight", l.Down)
	}
	vec("transformer.ln_f.weight", m.OutNorm)
	vec("transformer.ln_f.bias", m.OutNormB)
	if !c.TiedEmbeddings {
		mat("lm_head.weight", m.Output)
	}
	return ts, err
}

// fusedQKV joins a layer's q, k and v rows (all queries, keys, values)
// and orders them as Falcon's query_key_value: per KV head, its group of
// query heads, then its key head, then its value head.
func fusedQKV(name string, l *llama.Layer, dt tensor.DType, c llama.Config) (hfTensor, error) {
	parts := make([]hfTensor, 3)
	for i, w := range []*nn.Linear{l.Wq, l.Wk, l.Wv} {
		var err error
		if parts[i], err = hfMatrix(name, w, dt, 0, 0); err != nil {
			return hfTensor{}, err
		}
		if parts[i].dtype != parts[0].dtype {
			return hfTensor{}, fmt.Errorf("tensor %s: its parts are %s and %s", name, parts[0].dtype, parts[i].dtype)
		}
	}
	hd, kv, rep := c.HeadDim(), c.NKVHeads, c.NHeads/c.NKVHeads
	rows := c.Dim + 2*c.KVDim()
	t := hfTensor{name: name, dtype: parts[0].dtype, shape: []int64{int64(rows), int64(c.Dim)},
		size: parts[0].size + parts[1].size + parts[2].size}
	t.data = func() ([]byte, error) {
		var bs [3][]byte
		for i, p := range parts {
			b, err := p.data()
			if err != nil {
				return nil, err
			}
			bs[i] = b
		}
		head := hd * len(bs[0]) / c.Dim // bytes of one head's rows
		out := make([]byte, 0, t.size)
		for g := range kv {
			out = append(out, bs[0][g*rep*head:(g+1)*rep*head]...)
			out = append(out, bs[1][g*head:(g+1)*head]...)
			out = append(out, bs[2][g*head:(g+1)*head]...)
		}
		return out, nil
	}
	return t, nil
}
