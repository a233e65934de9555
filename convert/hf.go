package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// Architectures are the config.json architectures herd reads, each with
// what it is read as.
var Architectures = map[string]string{
	"LlamaForCausalLM":    "LLaMA",
	"MistralForCausalLM":  "LLaMA block (sliding window capped to the context)",
	"BaiChuanForCausalLM": "Baichuan-7B: LLaMA block with fused W_pack",
	"BaichuanForCausalLM": "Baichuan 2 7B (W_pack, NormHead); Baichuan-13B and Baichuan 2 13B (no max_position_embeddings: ALiBi; NormHead for Baichuan 2's 125696-token vocabulary)",
	"FalconForCausalLM":   "Falcon: parallel block, LayerNorm, GELU, multi-query / grouped KV, fused QKV (rotary only)",
	"RWForCausalLM":       "Falcon (the older RW code): as FalconForCausalLM",
}

// SupportedArchitectures lists Architectures' names, sorted.
func SupportedArchitectures() []string {
	names := make([]string, 0, len(Architectures))
	for n := range Architectures {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// hfConfig is what herd reads of a config.json.
type hfConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumHiddenLayers       int             `json:"num_hidden_layers"`
	NumAttentionHeads     int             `json:"num_attention_heads"`
	NumKeyValueHeads      int             `json:"num_key_value_heads"`
	HeadDim               int             `json:"head_dim"`
	VocabSize             int             `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	ModelMaxLength        int             `json:"model_max_length"`
	RMSNormEps            float64         `json:"rms_norm_eps"`
	RopeTheta             float64         `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	TieWordEmbeddings     bool            `json:"tie_word_embeddings"`
	HiddenAct             string          `json:"hidden_act"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
	SlidingWindow         *int            `json:"sliding_window"`
}

// readHFConfig reads config.json and derives the model's Config.
func readHFConfig(path string) (hfConfig, llama.Config, error) {
	var h hfConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return h, llama.Config{}, err
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, llama.Config{}, fmt.Errorf("%s: %w", path, err)
	}
	fail := func(format string, a ...any) (hfConfig, llama.Config, error) {
		return h, llama.Config{}, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, a...))
	}
	if len(h.Architectures) != 1 {
		return fail("architectures %v: want one of %s", h.Architectures, strings.Join(SupportedArchitectures(), ", "))
	}
	arch := h.Architectures[0]
	if _, ok := Architectures[arch]; !ok {
		return fail("architecture %s is not one herd runs (supported: %s)", arch, strings.Join(SupportedArchitectures(), ", "))
	}
	switch {
	case h.HiddenAct != "" && h.HiddenAct != "silu":
		return fail("hidden_act %q: the LLaMA block uses silu", h.HiddenAct)
	case len(h.RopeScaling) > 0 && !bytes.Equal(h.RopeScaling, []byte("null")):
		return fail("rope_scaling %s is not supported", h.RopeScaling)
	case h.AttentionBias || h.MLPBias:
		return fail("attention_bias / mlp_bias: the LLaMA block has no biases")
	}
	c := llama.Config{Dim: h.HiddenSize, NLayers: h.NumHiddenLayers, NHeads: h.NumAttentionHeads,
		NKVHeads: h.NumKeyValueHeads, FFNDim: h.IntermediateSize, VocabSize: h.VocabSize,
		ContextLen: h.MaxPositionEmbeddings, RopeTheta: 10000, NormEps: 1e-6,
		TiedEmbeddings: h.TieWordEmbeddings, Rope: llama.RopeInterleaved}
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if h.RopeTheta > 0 {
		c.RopeTheta = float32(h.RopeTheta)
	}
	if h.RMSNormEps > 0 {
		c.NormEps = float32(h.RMSNormEps)
	}
	if arch == "BaichuanForCausalLM" && c.ContextLen == 0 {
		// without max_position_embeddings: a 13B model, ALiBi instead of RoPE
		c.ALiBi = true
	}
	if c.ContextLen == 0 {
		c.ContextLen = h.ModelMaxLength
	}
	if h.SlidingWindow != nil && *h.SlidingWindow > 0 && *h.SlidingWindow < c.ContextLen {
		// within the window, sliding-window attention is causal attention
		c.ContextLen = *h.SlidingWindow
	}
	if h.HeadDim != 0 && c.NHeads > 0 && h.HeadDim*c.NHeads != c.Dim {
		return fail("head_dim %d × %d heads differs from hidden_size %d", h.HeadDim, c.NHeads, c.Dim)
	}
	if err := c.Validate(); err != nil {
		return fail("%v", err)
	}
	return h, c, nil
}

// hfNames maps the per-layer tensor names of a Hugging Face LLaMA to GGUF's,
// in the order checkpoint.SaveGGUF writes them.
var hfNames = []struct{ hf, gguf string }{
	{"input_layernorm.weight", "attn_norm.weight"},
	{"self_attn.q_proj.weight", "attn_q.weight"},
	{"self_attn.k_proj.weight", "attn_k.weight"},
	{"self_attn.v_proj.weight", "attn_v.weight"},
	{"self_attn.o_proj.weight", "attn_output.weight"},
	{"post_attention_layernorm.weight", "ffn_norm.weight"},
	{"mlp.gate_proj.weight", "ffn_gate.weight"},
	{"mlp.down_proj.weight", "ffn_down.weight"},
	{"mlp.up_proj.weight", "ffn_up.weight"},
}

// openHF opens a Hugging Face model directory.
func openHF(dir string) (src *Source, err error) {
	var peek struct {
		Architectures []string `json:"architectures"`
	}
	if data, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil && json.Unmarshal(data, &peek) == nil &&
		len(peek.Architectures) == 1 && (peek.Architectures[0] == "FalconForCausalLM" || peek.Architectures[0] == "RWForCausalLM") {
		return openFalcon(dir, peek.Architectures[0])
	}
	h, c, err := readHFConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	w, err := openHFWeights(dir)
	if err != nil {
		return nil, err
	}
	s := &Source{Path: dir, Layout: "hf", Arch: h.Architectures[0], Config: c, w: w}
	defer closeOnError(s, &err)
	if err := s.mapHF(); err != nil {
		return nil, err
	}
	if err := s.loadTokenizer(dir); err != nil {
		return nil, err
	}
	return s, nil
}

// mapHF lists the source's tensors in GGUF naming, checking each shape
// against config.json and that no tensor is left over.
func (s *Source) mapHF() error {
	c := s.Config
	used := map[string]bool{}
	hd, kv := c.HeadDim(), c.KVDim()
	add := func(hfName, name string, rows, cols int, fn transform) error {
		t, ok := s.w.byName[hfName]
		if !ok {
			return fmt.Errorf("%s: tensor %s is missing", s.Path, hfName)
		}
		used[hfName] = true
		return s.addTensor(t, name, rows, cols, fn)
	}
	permute := func(heads int) transform {
		return func(b []byte, _ tensor.DType, rowBytes int) ([]byte, error) {
			return permuteRotateHalf(b, heads, hd, rowBytes, false), nil
		}
	}
	if err := add("model.embed_tokens.weight", "token_embd.weight", c.VocabSize, c.Dim, nil); err != nil {
		return err
	}
	for i := range c.NLayers {
		p, g := fmt.Sprintf("model.layers.%d.", i), fmt.Sprintf("blk.%d.", i)
		used[p+"self_attn.rotary_emb.inv_freq"] = true // recomputed from rope_theta
		for _, n := range hfNames {
			rows, cols := c.Dim, c.Dim
			var fn transform
			switch n.gguf {
			case "attn_norm.weight", "ffn_norm.weight":
				rows, cols = 1, c.Dim
			case "attn_q.weight":
				fn = permute(c.NHeads)
			case "attn_k.weight", "attn_v.weight":
				rows = kv
				if n.gguf == "attn_k.weight" {
					fn = permute(c.NKVHeads)
				}
			case "ffn_gate.weight", "ffn_up.weight":
				rows = c.FFNDim
			case "ffn_down.weight":
				cols = c.FFNDim
			}
			if s.Arch != "LlamaForCausalLM" && s.Arch != "MistralForCausalLM" && strings.HasPrefix(n.hf, "self_attn.") && n.hf != "self_attn.o_proj.weight" {
				if err := s.addPacked(p+"self_attn.W_pack.weight", g+n.gguf, n.gguf, fn, used); err != nil {
					return err
				}
				continue
			}
			if err := add(p+n.hf, g+n.gguf, rows, cols, fn); err != nil {
				return err
			}
		}
	}
	if err := add("model.norm.weight", "output_norm.weight", 1, c.Dim, nil); err != nil {
		return err
	}
	if _, ok := s.w.byName["lm_head.weight"]; ok || !c.TiedEmbeddings {
		var fn transform
		if s.Arch == "BaichuanForCausalLM" && (!c.ALiBi || c.VocabSize == baichuan2Vocab) {
			fn = normHead
		}
		if err := add("lm_head.weight", "output.weight", c.VocabSize, c.Dim, fn); err != nil {
			return err
		}
	}
	for _, n := range s.w.order {
		if !used[n] {
			return fmt.Errorf("%s: tensor %s (in %s) is not part of a %s", s.Path, n, s.w.byName[n].file, s.Arch)
		}
	}
	return nil
}

// transform turns a tensor's bytes (rows of rowBytes of dt) into what
// herd stores.
type transform func(b []byte, dt tensor.DType, rowBytes int) ([]byte, error)

// addTensor appends source tensor t as name, checking it is rows × cols
// (rows 1: a vector of cols), transformed by fn(bytes, rowBytes) if set.
func (s *Source) addTensor(t *srcTensor, name string, rows, cols int, fn transform) error {
	want := []int64{int64(rows), int64(cols)}
	if rows == 1 {
		want = want[1:]
	}
	if !equalShape(t.shape, want) {
		return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", t.file, t.name, t.shape, want)
	}
	dt, err := herdDType(t)
	if err != nil {
		return err
	}
	dims := []uint64{uint64(cols), uint64(rows)}
	if rows == 1 {
		dims = dims[:1]
	}
	rowBytes := cols * dt.BlockBytes()
	s.Tensors = append(s.Tensors, Tensor{Name: name, DType: dt, Dims: dims, Read: func() ([]byte, error) {
		b, err := readAs(t)
		if err != nil || fn == nil {
			return b, err
		}
		return fn(b, dt, rowBytes)
	}})
	return nil
}

// addPacked appends q, k or v cut from Baichuan's fused W_pack (rows q, k,
// v one after another; Baichuan has no grouped-query attention).
func (s *Source) addPacked(packName, name, which string, fn transform, used map[string]bool) error {
	c := s.Config
	t, ok := s.w.byName[packName]
	if !ok {
		return fmt.Errorf("%s: tensor %s is missing", s.Path, packName)
	}
	used[packName] = true
	if c.NKVHeads != c.NHeads {
		return fmt.Errorf("%s: a fused W_pack with %d kv heads for %d heads", s.Path, c.NKVHeads, c.NHeads)
	}
	part := map[string]int{"attn_q.weight": 0, "attn_k.weight": 1, "attn_v.weight": 2}[which]
	cut := func(b []byte, dt tensor.DType, rowBytes int) ([]byte, error) {
		n := c.Dim * rowBytes
		b = b[part*n : (part+1)*n]
		if fn != nil {
			return fn(b, dt, rowBytes)
		}
		return append([]byte(nil), b...), nil
	}
	packed := *t
	packed.shape = []int64{int64(3 * c.Dim), int64(c.Dim)}
	if !equalShape(t.shape, packed.shape) {
		return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", t.file, t.name, t.shape, packed.shape)
	}
	if err := s.addTensor(&packed, name, 3*c.Dim, c.Dim, cut); err != nil {
		return err
	}
	s.Tensors[len(s.Tensors)-1].Dims[1] = uint64(c.Dim)
	return nil
}

// baichuan2Vocab is the vocabulary size of Baichuan 2 (Yang et al. 2023),
// which tells its 13B model (NormHead) from Baichuan-13B's (none).
const baichuan2Vocab = 125696

// normHead is Baichuan 2's NormHead at inference: each row of the output
// head divided by its Euclidean norm (torch.nn.functional.normalize, eps
// 1e-12), applied once at conversion.
func normHead(b []byte, dt tensor.DType, rowBytes int) ([]byte, error) {
	return mapRows(b, dt, rowBytes, func(row []float32) {
		var ss float64
		for _, x := range row {
			ss += float64(x) * float64(x)
		}
		n := math.Max(math.Sqrt(ss), 1e-12)
		for i := range row {
			row[i] = float32(float64(row[i]) / n)
		}
	})
}

// mapRows applies fn to each row (rowBytes of dtype dt) of a matrix, in
// place.
func mapRows(b []byte, dt tensor.DType, rowBytes int, fn func([]float32)) ([]byte, error) {
	if len(b)%rowBytes != 0 {
		return nil, fmt.Errorf("%d bytes are not rows of %d", len(b), rowBytes)
	}
	row := make([]float32, rowBytes/dt.BlockBytes())
	for at := 0; at < len(b); at += rowBytes {
		if err := tensor.Dequantize(dt, row, b[at:at+rowBytes]); err != nil {
			return nil, err
		}
		fn(row)
		if err := tensor.Quantize(dt, b[at:at+rowBytes], row); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
