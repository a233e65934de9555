package llama

import (
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
	var c Config
	var err error
	for _, k := range []struct {
		dst *int
		key string
		def int
	}{{&c.Dim, "embedding_length", -1}, {&c.NLayers, "block_count", -1}, {&c.NHeads, "attention.head_count", -1},
		{&c.FFNDim, "feed_forward_length", -1}, {&c.ContextLen, "context_length", 4096}, {&c.VocabSize, "vocab_size", 0}} {
		if *k.dst, err = ggufUint(f, "baichuan", k.key, k.def); err != nil {
			return nil, err
		}
	}
	if c.NKVHeads, err = ggufUint(f, "baichuan", "attention.head_count_kv", c.NHeads); err != nil {
		return nil, err
	}
	c.RopeTheta, c.NormEps = 10000, 1e-6
	if c.RopeTheta, err = ggufFloat(f, "baichuan", "rope.freq_base", c.RopeTheta); err != nil {
		return nil, err
	}
	if c.NormEps, err = ggufFloat(f, "baichuan", "attention.layer_norm_rms_epsilon", c.NormEps); err != nil {
		return nil, err
	}
	c.ALiBi = c.NLayers == 40
	if v, ok := f.GetBool(ALiBiKey); ok {
		c.ALiBi = v
	}
	return build(f.Path, c, rawTensors(f))
}
