// Package llama is the one definition of the LLaMA architecture in herd: its
// configuration and published presets, the model's weights, and the single
// Forward pass that inference (and, with a tape, training) runs.
package llama

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// MaxContextLen is the longest context a model file may claim: 2^20
// positions, the longest any published LLaMA-architecture model was
// trained for (Gradient's Llama-3-8B-Instruct-1048k claims 1,048,576).
// Beyond it a file's claim is taken as corrupt or hostile: a context of
// 2^31 would size a KV cache of terabytes from a single metadata value.
const MaxContextLen = 1 << 20

// RopeLayout says which elements of a head RoPE rotates together.
type RopeLayout int

const (
	// RopeInterleaved rotates pairs (2i, 2i+1): Meta's code, GGUF and llama2.c.
	RopeInterleaved RopeLayout = iota
	// RopeHalf rotates pairs (i, i+headDim/2): Hugging Face checkpoints.
	RopeHalf
)

// NormKind is the normalisation a block applies to its inputs.
type NormKind int

const (
	// NormRMS is RMSNorm with a gain (LLaMA).
	NormRMS NormKind = iota
	// NormLayer is LayerNorm with a gain and a bias (Falcon).
	NormLayer
)

// FFNKind is the feed-forward of a block.
type FFNKind int

const (
	// FFNSwiGLU is Down·(silu(Gate·x) ⊙ Up·x) (LLaMA).
	FFNSwiGLU FFNKind = iota
	// FFNGELU is Down·gelu(Up·x), exact GELU, no gate (Falcon).
	FFNGELU
)

// Config is the shape of a LLaMA-architecture model. Norm, FFN and
// Parallel describe the variants of the block the one forward pass runs
// (their zero values are LLaMA's).
type Config struct {
	Dim            int        // model width (embedding length)
	NLayers        int        // transformer blocks
	NHeads         int        // query heads
	NKVHeads       int        // key/value heads (grouped-query attention when < NHeads)
	FFNDim         int        // hidden size of the SwiGLU feed-forward
	VocabSize      int        // tokens
	ContextLen     int        // positions the model was trained for
	RopeTheta      float32    // RoPE base frequency
	NormEps        float32    // RMSNorm epsilon
	TiedEmbeddings bool       // the output head reuses the token embedding
	Rope           RopeLayout // pairing of rotated elements
	Norm           NormKind   // RMSNorm or LayerNorm (with biases)
	FFN            FFNKind    // SwiGLU or GELU feed-forward
	// Parallel makes attention and the feed-forward both read the block's
	// input: out = x + attn(n(x)) + ffn(n'(x)), n' = n when the layer has
	// no FFNNorm (Falcon; sequential is out = h + ffn(n'(h)), h = x + attn(n(x))).
	Parallel bool
	// ALiBi replaces RoPE by ALiBi's linear position bias on the attention
	// scores (Press et al. 2022; Baichuan-13B), slopes from ALiBiSlopes.
	ALiBi bool
}

// ALiBiSlopes are the per-head slopes of ALiBi for n heads: for n a power
// of two, 2^(−8i/n) for i = 1..n; otherwise those of the power of two
// below n followed by every other slope of the next power of two (the
// ALiBi paper's construction, as Baichuan-13B computes it).
func ALiBiSlopes(n int) []float32 {
	pow2 := func(n int) []float64 {
		start := math.Pow(2, -math.Pow(2, -(math.Log2(float64(n))-3)))
		s := make([]float64, n)
		for i := range s {
			s[i] = math.Pow(start, float64(i+1))
		}
		return s
	}
	closest := 1
	for closest*2 <= n {
		closest *= 2
	}
	sl := pow2(closest)
	if closest != n {
		extra := pow2(2 * closest)
		for i := 0; i < 2*(n-closest); i += 2 {
			sl = append(sl, extra[i])
		}
	}
	out := make([]float32, n)
	for i, x := range sl {
		out[i] = float32(x)
	}
	return out
}

// HeadDim is the width of one attention head.
func (c Config) HeadDim() int { return c.Dim / c.NHeads }

// KVDim is the width of the keys (and values) of one position.
func (c Config) KVDim() int { return c.HeadDim() * c.NKVHeads }

// Validate reports the first inconsistency in c.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0 || c.NLayers <= 0 || c.NHeads <= 0 || c.NKVHeads <= 0 || c.FFNDim <= 0 || c.VocabSize <= 0:
		return fmt.Errorf("config: dim %d, layers %d, heads %d, kv heads %d, ffn %d, vocab %d must all be positive",
			c.Dim, c.NLayers, c.NHeads, c.NKVHeads, c.FFNDim, c.VocabSize)
	case c.Dim%c.NHeads != 0:
		return fmt.Errorf("config: dim %d is not a multiple of heads %d", c.Dim, c.NHeads)
	case c.NHeads%c.NKVHeads != 0:
		return fmt.Errorf("config: heads %d is not a multiple of kv heads %d", c.NHeads, c.NKVHeads)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("config: head dim %d is odd; RoPE rotates pairs", c.HeadDim())
	case c.ContextLen <= 0:
		return fmt.Errorf("config: context length %d must be positive", c.ContextLen)
	case c.ContextLen > MaxContextLen:
		return fmt.Errorf("config: context length %d is implausible: herd accepts at most %d positions (2^20, the longest any published LLaMA model claims)",
			c.ContextLen, MaxContextLen)
	case !(c.NormEps > 0) || !(c.RopeTheta > 0):
		return fmt.Errorf("config: norm epsilon %g and rope theta %g must be positive", c.NormEps, c.RopeTheta)
	case math.IsInf(float64(c.NormEps), 0) || c.NormEps >= 1:
		return fmt.Errorf("config: norm epsilon %g is outside (0, 1); RMSNorm adds it to a mean square (LLaMA uses 1e-5 or 1e-6)", c.NormEps)
	case math.IsInf(float64(c.RopeTheta), 0) || c.RopeTheta <= 1:
		return fmt.Errorf("config: rope theta %g must be finite and above 1 (LLaMA uses 10000, Llama 3 500000)", c.RopeTheta)
	}
	return nil
}

// Params is the number of weights a model of this shape holds.
func (c Config) Params() int64 {
	d, f, kv, v := int64(c.Dim), int64(c.FFNDim), int64(c.KVDim()), int64(c.VocabSize)
	mats := int64(3)
	if c.FFN == FFNGELU {
		mats = 2
	}
	perLayer := 2*d*d + 2*d*kv + mats*d*f + 2*d
	p := int64(c.NLayers)*perLayer + v*d + d
	if !c.TiedEmbeddings {
		p += v * d
	}
	return p
}

// Preset is a published configuration and where it was taken from.
type Preset struct {
	Name   string
	Config Config
	Source string
}

func preset(name string, dim, layers, heads, kv, ffn, vocab, ctx int, eps float32, tied bool, src string) Preset {
	return Preset{name, Config{Dim: dim, NLayers: layers, NHeads: heads, NKVHeads: kv, FFNDim: ffn, VocabSize: vocab,
		ContextLen: ctx, RopeTheta: 10000, NormEps: eps, TiedEmbeddings: tied}, src}
}

// Presets lists the configurations herd knows by name.
var Presets = []Preset{
	preset("llama-7b", 4096, 32, 32, 32, 11008, 32000, 2048, 1e-6, false, "LLaMA paper (Touvron et al. 2023) Table 2; FFN and eps from Meta's params.json / HF huggyllama/llama-7b config.json"),
	preset("llama-13b", 5120, 40, 40, 40, 13824, 32000, 2048, 1e-6, false, "LLaMA paper Table 2; HF huggyllama/llama-13b config.json"),
	preset("llama-30b", 6656, 60, 52, 52, 17920, 32000, 2048, 1e-6, false, "LLaMA paper Table 2 (the 33B model); HF huggyllama/llama-30b config.json"),
	preset("llama-65b", 8192, 80, 64, 64, 22016, 32000, 2048, 1e-5, false, "LLaMA paper Table 2; HF huggyllama/llama-65b config.json"),
	preset("llama-2-7b", 4096, 32, 32, 32, 11008, 32000, 4096, 1e-5, false, "Llama 2 paper (Touvron et al. 2023b) Table 1; HF meta-llama/Llama-2-7b-hf config.json"),
	preset("llama-2-13b", 5120, 40, 40, 40, 13824, 32000, 4096, 1e-5, false, "Llama 2 paper Table 1; HF meta-llama/Llama-2-13b-hf config.json"),
	preset("llama-2-70b", 8192, 80, 64, 8, 28672, 32000, 4096, 1e-5, false, "Llama 2 paper Table 1 (GQA, 8 KV heads); HF meta-llama/Llama-2-70b-hf config.json"),
	preset("open-llama-3b", 3200, 26, 32, 32, 8640, 32000, 2048, 1e-6, false, "HF openlm-research/open_llama_3b config.json"),
	preset("open-llama-7b", 4096, 32, 32, 32, 11008, 32000, 2048, 1e-6, false, "HF openlm-research/open_llama_7b config.json"),
	preset("tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 2048, 1e-5, false, "HF TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json"),
	preset("baichuan-7b", 4096, 32, 32, 32, 11008, 64000, 4096, 1e-6, false, "HF baichuan-inc/Baichuan-7B config.json"),
	preset("stories260k", 64, 5, 8, 4, 172, 512, 512, 1e-5, true, "karpathy/tinyllamas stories260K (llama2.c README, model header)"),
	preset("stories15m", 288, 6, 6, 6, 768, 32000, 256, 1e-5, true, "karpathy/llama2.c README model table (stories15M.bin header)"),
	preset("stories42m", 512, 8, 8, 8, 1376, 32000, 1024, 1e-5, true, "karpathy/llama2.c README model table (stories42M.bin header)"),
	preset("stories110m", 768, 12, 12, 12, 2048, 32000, 1024, 1e-5, true, "karpathy/llama2.c README model table (stories110M.bin header)"),
}

// LookupPreset finds a preset by name, ignoring case.
func LookupPreset(name string) (Preset, error) {
	for _, p := range Presets {
		if strings.EqualFold(p.Name, name) {
			return p, nil
		}
	}
	names := make([]string, len(Presets))
	for i, p := range Presets {
		names[i] = p.Name
	}
	sort.Strings(names)
	return Preset{}, fmt.Errorf("unknown preset %q (known: %s)", name, strings.Join(names, ", "))
}
