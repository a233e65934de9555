package llama

import (
	"fmt"

	"github.com/herd-llm/herd/format/gguf"
)

// ALiBiKey marks, in a GGUF file of architecture "baichuan", whether the
// model uses ALiBi. llama.cpp has no such key: it gives a Baichuan of 40
// blocks (the 13B models) ALiBi and every other one RoPE, and herd follows
// that rule when the key is absent.
const ALiBiKey = "herd.alibi"

// fromGGUFBaichuan reads a GGUF file of llama.cpp's "baichuan"
// architecture: LLaMA's tensors and baichuan.* hyperparameters, with ALiBi
// for a 13B model.
func fromGGUFBaichuan(f *gguf.File) (*Model, error) {
	u := func(key string, def int) (int, error) {
		v, ok := f.GetUint("baichuan." + key)
		if !ok {
			if def >= 0 {
				return def, nil
			}
			return 0, fmt.Errorf("%s: missing metadata baichuan.%s", f.Path, key)
		}
		if v > 1<<31 {
			return 0, fmt.Errorf("%s: metadata baichuan.%s = %d is absurd", f.Path, key, v)
		}
		return int(v), nil
	}
	var c Config
	var err error
	for _, k := range []struct {
		dst *int
		key string
		def int
	}{{&c.Dim, "embedding_length", -1}, {&c.NLayers, "block_count", -1}, {&c.NHeads, "attention.head_count", -1},
		{&c.FFNDim, "feed_forward_length", -1}, {&c.ContextLen, "context_length", 4096}, {&c.VocabSize, "vocab_size", 0}} {
		if *k.dst, err = u(k.key, k.def); err != nil {
			return nil, err
		}
	}
	if c.NKVHeads, err = u("attention.head_count_kv", c.NHeads); err != nil {
		return nil, err
	}
	c.RopeTheta, c.NormEps = 10000, 1e-6
	if v, ok := f.GetFloat("baichuan.rope.freq_base"); ok {
		c.RopeTheta = float32(v)
	}
	if v, ok := f.GetFloat("baichuan.attention.layer_norm_rms_epsilon"); ok {
		c.NormEps = float32(v)
	}
	c.ALiBi = c.NLayers == 40
	if v, ok := f.GetBool(ALiBiKey); ok {
		c.ALiBi = v
	}
	ts := make([]rawTensor, len(f.Tensors))
	for i, t := range f.Tensors {
		ts[i] = rawTensor{t.Name, t.DType, t.Dims, t.Data}
	}
	return build(f.Path, c, ts)
}
