package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// falconConfig is what herd reads of a Falcon config.json (FalconConfig,
// and the older RWConfig spellings n_embed, n_head, n_layer, n_head_kv).
type falconConfig struct {
	HiddenSize         int      `json:"hidden_size"`
	NEmbed             int      `json:"n_embed"`
	NumHeads           int      `json:"num_attention_heads"`
	NHead              int      `json:"n_head"`
	NumLayers          int      `json:"num_hidden_layers"`
	NLayer             int      `json:"n_layer"`
	NumKVHeads         int      `json:"num_kv_heads"`
	NHeadKV            int      `json:"n_head_kv"`
	MultiQuery         bool     `json:"multi_query"`
	NewDecoder         bool     `json:"new_decoder_architecture"`
	NumLNParallel      *int     `json:"num_ln_in_parallel_attn"`
	ParallelAttn       *bool    `json:"parallel_attn"`
	Bias               bool     `json:"bias"`
	Alibi              bool     `json:"alibi"`
	LayerNormEps       float64  `json:"layer_norm_epsilon"`
	VocabSize          int      `json:"vocab_size"`
	MaxPositions       int      `json:"max_position_embeddings"`
	RopeTheta          float64  `json:"rope_theta"`
	FFNHidden          int      `json:"ffn_hidden_size"`
	TieWordEmbeddings  *bool    `json:"tie_word_embeddings"`
	Activation         string   `json:"activation"`
	RopeScaling        any      `json:"rope_scaling"`
	Architectures      []string `json:"architectures"`
	twoNorms, multiple bool
}

func firstNonZero(a ...int) int {
	for _, x := range a {
		if x != 0 {
			return x
		}
	}
	return 0
}

// readFalconConfig reads a FalconForCausalLM / RWForCausalLM config.json.
func readFalconConfig(path string) (falconConfig, llama.Config, error) {
	var h falconConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return h, llama.Config{}, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, llama.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	fail := func(format string, a ...any) (falconConfig, llama.Config, error) {
		return h, llama.Config{}, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...))
	}
	switch {
	case h.Alibi:
		return fail("alibi: Falcon with ALiBi position bias (Falcon-RW) is not supported; herd runs rotary Falcon")
	case h.Bias:
		return fail("bias: Falcon with biases on its linear layers (Falcon-RW) is not supported")
	case h.ParallelAttn != nil && !*h.ParallelAttn && !h.NewDecoder:
		return fail("parallel_attn false: herd runs Falcon's parallel block")
	case h.Activation != "" && h.Activation != "gelu":
		return fail("activation %q: herd runs Falcon's exact GELU", h.Activation)
	case h.RopeScaling != nil:
		return fail("rope_scaling is not supported")
	}
	c := llama.Config{Dim: firstNonZero(h.HiddenSize, h.NEmbed), NHeads: firstNonZero(h.NumHeads, h.NHead),
		NLayers: firstNonZero(h.NumLayers, h.NLayer), VocabSize: h.VocabSize, ContextLen: firstNonZero(h.MaxPositions, 2048),
		RopeTheta: 10000, NormEps: 1e-5, TiedEmbeddings: h.TieWordEmbeddings == nil || *h.TieWordEmbeddings}
	switch {
	case h.NewDecoder:
		c.NKVHeads = firstNonZero(h.NumKVHeads, h.NHeadKV, c.NHeads)
		h.twoNorms = h.NumLNParallel == nil || *h.NumLNParallel == 2
	case h.MultiQuery:
		c.NKVHeads = 1
	default:
		c.NKVHeads = c.NHeads
	}
	c.FFNDim = firstNonZero(h.FFNHidden, 4*c.Dim)
	if h.RopeTheta > 0 {
		c.RopeTheta = float32(h.RopeTheta)
	}
	if h.LayerNormEps > 0 {
		c.NormEps = float32(h.LayerNormEps)
	}
	c = llama.Falcon(c)
	if err := c.Validate(); err != nil {
		return fail("%v", err)
	}
	return h, c, nil
}

// openFalcon opens a Hugging Face Falcon directory; its tensors are given
// in llama.cpp's falcon names, the fused query_key_value regrouped from
// Falcon's per-KV-group order to all queries, then keys, then values.
func openFalcon(dir, arch string) (src *Source, err error) {
	h, c, err := readFalconConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	w, err := openHFWeights(dir)
	if err != nil {
		return nil, err
	}
	s := &Source{Path: dir, Layout: "hf", Arch: arch, Config: c, w: w}
	defer closeOnError(s, &err)
	if err := s.mapFalcon(h); err != nil {
		return nil, err
	}
	if err := s.loadTokenizer(dir); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) mapFalcon(h falconConfig) error {
	c := s.Config
	used := map[string]bool{}
	add := func(hfName, name string, rows, cols int, fn transform) error {
		t, ok := s.w.byName[hfName]
		if !ok {
			return fmt.Errorf("%s: tensor %s is missing", s.Path, hfName)
		}
		used[hfName] = true
		return s.addTensor(t, name, rows, cols, fn)
	}
	if err := add("transformer.word_embeddings.weight", "token_embd.weight", c.VocabSize, c.Dim, nil); err != nil {
		return err
	}
	qkvRows := c.Dim + 2*c.KVDim()
	for i := range c.NLayers {
		p, g := fmt.Sprintf("transformer.h.%d.", i), fmt.Sprintf("blk.%d.", i)
		norms := [][2]string{{"input_layernorm", "attn_norm"}}
		if h.twoNorms {
			norms = [][2]string{{"ln_attn", "attn_norm"}, {"ln_mlp", "attn_norm_2"}}
		}
		for _, n := range norms {
			for _, wb := range []string{".weight", ".bias"} {
				if err := add(p+n[0]+wb, g+n[1]+wb, 1, c.Dim, nil); err != nil {
					return err
				}
			}
		}
		for _, t := range []struct {
			hf, gguf   string
			rows, cols int
			fn         transform
		}{
			{"self_attention.query_key_value.weight", "attn_qkv.weight", qkvRows, c.Dim, s.regroupQKV},
			{"self_attention.dense.weight", "attn_output.weight", c.Dim, c.Dim, nil},
			{"mlp.dense_h_to_4h.weight", "ffn_up.weight", c.FFNDim, c.Dim, nil},
			{"mlp.dense_4h_to_h.weight", "ffn_down.weight", c.Dim, c.FFNDim, nil},
		} {
			if err := add(p+t.hf, g+t.gguf, t.rows, t.cols, t.fn); err != nil {
				return err
			}
		}
	}
	for _, wb := range []string{".weight", ".bias"} {
		if err := add("transformer.ln_f"+wb, "output_norm"+wb, 1, c.Dim, nil); err != nil {
			return err
		}
	}
	if !c.TiedEmbeddings {
		if err := add("lm_head.weight", "output.weight", c.VocabSize, c.Dim, nil); err != nil {
			return err
		}
	}
	used["lm_head.weight"] = true // a tied head saved twice is the embedding
	for _, n := range s.w.order {
		if !used[n] {
			return fmt.Errorf("%s: tensor %s (in %s) is not part of a %s", s.Path, n, s.w.byName[n].file, s.Arch)
		}
	}
	return nil
}

// regroupQKV reorders the rows of Falcon's query_key_value, which holds
// one group per KV head of NHeads/NKVHeads query heads followed by that
// group's key head and value head, into all query heads, then all key
// heads, then all value heads (llama.cpp's attn_qkv; for multi-query
// Falcon-7B the order is already that).
func (s *Source) regroupQKV(b []byte, _ tensor.DType, rowBytes int) ([]byte, error) {
	c := s.Config
	hd, kv := c.HeadDim(), c.NKVHeads
	rep := c.NHeads / kv
	head := hd * rowBytes
	out := make([]byte, 0, len(b))
	for _, part := range []struct{ from, n int }{{0, rep}, {rep, 1}, {rep + 1, 1}} { // q, k, v
		for gi := range kv {
			g := b[gi*(rep+2)*head:]
			out = append(out, g[part.from*head:(part.from+part.n)*head]...)
		}
	}
	return out, nil
}
