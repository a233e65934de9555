package quant

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/tensor"
)

// Choice is the type one tensor is written as.
type Choice struct {
	Name     string
	Dims     []uint64     // ggml order: Dims[0] is the row length
	From     tensor.DType // the input's type
	To       tensor.DType // the output's type (From when the tensor is copied)
	Fallback bool         // the mix's type did not fit the row length
	// Refused is set when llama.cpp defines no fallback for the row length
	// (it stops with "Unsupported tensor size encountered"); herd writes
	// the tensor as F16 instead, the fallback llama.cpp uses when its own
	// fallback type does not fit either.
	Refused bool
}

// Quantized reports whether the tensor is re-encoded (not copied).
func (c Choice) Quantized() bool { return c.To != c.From }

// hparams are the model facts llama.cpp's mix rules look at.
type hparams struct {
	arch     string
	nLayer   int
	nHead    int
	nHeadKV  int
	nExpert  int
	is70B    bool
	hasOut   bool // an output.weight exists (otherwise token_embd is the output too)
	nAttnV   int  // attn_v / attn_qkv / attn_kv_b tensors
	iAttnV   int  // of those, how many have been assigned so far
	iFFNDown int
	// hasImatrix: an importance matrix is given (llama.cpp's
	// qs.has_imatrix, which changes two ffn_down rules)
	hasImatrix bool
}

func (h *hparams) nGQA() int {
	if h.nHeadKV <= 0 {
		return 0
	}
	return h.nHead / h.nHeadKV
}

func readHparams(f *gguf.File) (*hparams, error) {
	arch, ok := f.GetString("general.architecture")
	if !ok {
		return nil, fmt.Errorf("%s: no general.architecture", f.Path)
	}
	get := func(key string, def int) int {
		if v, ok := f.GetUint(arch + "." + key); ok && v < 1<<31 {
			return int(v)
		}
		return def
	}
	h := &hparams{arch: arch, nLayer: get("block_count", 0), nHead: get("attention.head_count", 0), nExpert: get("expert_count", 0)}
	h.nHeadKV = get("attention.head_count_kv", h.nHead)
	// llama.cpp calls an 80-layer LLaMA with grouped-query attention "70B".
	h.is70B = arch == "llama" && h.nLayer == 80 && h.nHead != h.nHeadKV
	if h.nLayer <= 0 {
		return nil, fmt.Errorf("%s: %s.block_count is missing", f.Path, arch)
	}
	h.count(f.Tensors)
	return h, nil
}

// count records which tensors the rules depend on: output.weight and the
// attn_v-like tensors.
func (h *hparams) count(ts []gguf.TensorInfo) {
	for _, t := range ts {
		if isAttnV(t.Name) {
			h.nAttnV++
		}
		if t.Name == "output.weight" {
			h.hasOut = true
		}
	}
}

func isAttnV(name string) bool {
	return strings.Contains(name, "attn_v.weight") || strings.Contains(name, "attn_qkv.weight") || strings.Contains(name, "attn_kv_b.weight")
}

// layerOf parses the N of "blk.N." as llama.cpp's sscanf does; -1 otherwise.
func layerOf(name string) int {
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return -1
	}
	end := 0
	if end < len(rest) && (rest[0] == '-' || rest[0] == '+') {
		end++
	}
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	if err != nil {
		return -1
	}
	return n
}

// order sorts tensors as llama.cpp's model loader does (and so as
// llama-quantize visits and writes them): by layer number, tensors outside
// the blocks first, then by name.
func order(ts []gguf.TensorInfo) []int {
	idx := make([]int, len(ts))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		la, lb := layerOf(ts[a].Name), layerOf(ts[b].Name)
		if la != lb {
			return la - lb
		}
		return strings.Compare(ts[a].Name, ts[b].Name)
	})
	return idx
}

// nDims is ggml_n_dims: the number of dims up to the last one above 1.
func nDims(dims []uint64) int {
	n := len(dims)
	for n > 1 && dims[n-1] == 1 {
		n--
	}
	return n
}

// notQuantized lists name fragments of 2D weights llama.cpp never
// quantizes (router gates, small convolution and mixing weights, position
// and token-type embeddings, relative position biases).
var notQuantized = []string{"_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
	"ssm_conv1d.weight", "shortconv.conv.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
	"time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
	"time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
	"time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd."}

// quantizable is llama-quantize's test for whether a tensor is re-encoded
// at all: a weight of two or more dims that is not a norm or one of the
// excluded small weights.
func quantizable(name string, dims []uint64) bool {
	if !strings.HasSuffix(name, "weight") || nDims(dims) < 2 {
		return false
	}
	if name == "position_embd.weight" || name == "token_types.weight" {
		return false
	}
	for _, s := range notQuantized {
		if strings.Contains(name, s) {
			return false
		}
	}
	return true
}

// useMoreBits is llama.cpp's use_more_bits: the first and last eighth of
// the layers and every third layer in between.
func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// typeFor is llama.cpp's llama_tensor_get_type for the LLaMA-family rules
// of the mixes herd writes: the mix's type t adjusted for the tensor's role
// and position. It updates the attn_v and ffn_down counters as llama.cpp
// does, so tensors must be passed in order().
func (h *hparams) typeFor(ft FileType, t tensor.DType, name string, dims []uint64) tensor.DType {
	switch {
	case name == "output.weight" || (!h.hasOut && name == "token_embd.weight"):
		nx := int(dims[0])
		if nx%t.BlockSize() != 0 {
			return tensor.Q8_0
		}
		if t != tensor.Q8_0 {
			return tensor.Q6_K
		}
		return t
	case name == "token_embd.weight" || name == "per_layer_token_embd.weight":
		return t
	case strings.Contains(name, "attn_v.weight"):
		gqa := h.nGQA()
		switch {
		case ft == MostlyQ2_K:
			t = tensor.Q3_K
			if gqa >= 4 {
				t = tensor.Q4_K
			}
		case ft == MostlyQ3KM:
			t = tensor.Q4_K
			if h.iAttnV < 2 {
				t = tensor.Q5_K
			}
		case ft == MostlyQ3KL:
			t = tensor.Q5_K
		case ft == MostlyIQ4NL && gqa >= 4:
			t = tensor.Q5_K
		case (ft == MostlyQ4KM || ft == MostlyQ5KM) && useMoreBits(h.iAttnV, h.nAttnV):
			t = tensor.Q6_K
		case ft == MostlyQ4KS && h.iAttnV < 4:
			t = tensor.Q5_K
		}
		if h.is70B && (t == tensor.Q3_K || t == tensor.Q4_K) {
			t = tensor.Q5_K
		}
		if h.nExpert == 8 {
			t = tensor.Q8_0
		}
		h.iAttnV++
	case strings.Contains(name, "attn_k.weight"):
		if h.nExpert == 8 {
			t = tensor.Q8_0
		}
	case strings.Contains(name, "ffn_down"):
		i, n := h.iFFNDown, h.nLayer
		if h.nExpert > 1 {
			i = layerOf(name) // expert tensors are not in layer order
		}
		switch ft {
		case MostlyQ2_K:
			t = tensor.Q3_K
		case MostlyQ3KM:
			t = tensor.Q4_K
			if i < n/16 {
				t = tensor.Q5_K
			}
		case MostlyQ3KL:
			t = tensor.Q5_K
		case MostlyQ4KM:
			if useMoreBits(i, n) {
				t = tensor.Q6_K
			}
		case MostlyIQ4NL:
			if i < n/8 && !h.hasImatrix {
				t = tensor.Q5_K
			}
		case MostlyQ4_0, MostlyQ5_0:
			// llama.cpp's guard for the first ffn_down layers, with an imatrix only
			if h.hasImatrix && i < n/8 {
				t = tensor.Q4_1
				if ft == MostlyQ5_0 {
					t = tensor.Q5_1
				}
			}
		case MostlyQ5KM:
			if useMoreBits(i, n) {
				t = tensor.Q6_K
			}
		case MostlyQ4KS:
			if i < n/8 {
				t = tensor.Q5_K
			}
		}
		h.iFFNDown++
	case strings.Contains(name, "attn_output.weight"):
		if h.nExpert == 8 {
			switch ft {
			case MostlyQ2_K, MostlyQ3KS, MostlyQ3KM, MostlyIQ4NL, MostlyQ4KS, MostlyQ4KM:
				t = tensor.Q5_K
			}
		} else {
			switch ft {
			case MostlyQ2_K:
				t = tensor.Q3_K
			case MostlyQ3KM:
				t = tensor.Q4_K
			case MostlyQ3KL:
				t = tensor.Q5_K
			}
		}
	case strings.Contains(name, "attn_qkv.weight"):
		switch ft {
		case MostlyQ3KM, MostlyQ3KL:
			t = tensor.Q4_K
		case MostlyQ4KM:
			t = tensor.Q5_K
		case MostlyQ5KM:
			t = tensor.Q6_K
		}
	}
	return t
}

// fallback is llama.cpp's answer to a row length that is not a whole
// number of blocks of t: a related 32-element format, or F16 when that
// does not fit either. refused reports that llama.cpp has no fallback for
// t and stops; herd uses F16 there.
func fallback(t tensor.DType, nx int) (to tensor.DType, fell, refused bool) {
	if nx%t.BlockSize() == 0 {
		return t, false, false
	}
	switch t {
	case tensor.Q2_K, tensor.Q3_K:
		to = tensor.IQ4_NL
	case tensor.Q4_K:
		to = tensor.Q5_0
	case tensor.Q5_K:
		to = tensor.Q5_1
	case tensor.Q6_K:
		to = tensor.Q8_0
	default:
		return tensor.F16, true, true
	}
	if nx%to.BlockSize() != 0 {
		to = tensor.F16
	}
	return to, true, false
}

// Plan returns the type each tensor of f gets in mix ft, in the order
// llama.cpp writes them. Tensors that are not quantized (norms, 1-D
// tensors) keep their type; with a float mix (F32, F16, BF16) every
// quantizable weight is converted to that type.
func Plan(f *gguf.File, ft FileType) ([]Choice, error) { return PlanWith(f, ft, false) }

// PlanWith is Plan for a quantization with an importance matrix when
// hasImatrix: llama.cpp then keeps IQ4_NL's first ffn_down layers IQ4_NL
// (not Q5_K) and gives Q4_0's and Q5_0's Q4_1 and Q5_1.
func PlanWith(f *gguf.File, ft FileType, hasImatrix bool) ([]Choice, error) {
	h, err := readHparams(f)
	if err != nil {
		return nil, err
	}
	h.hasImatrix = hasImatrix
	plan, err := h.plan(f.Tensors, ft)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	return plan, nil
}

// plan is Plan over tensor infos (only names, dims and types are read).
func (h *hparams) plan(ts []gguf.TensorInfo, ft FileType) ([]Choice, error) {
	base, ok := ft.Base()
	if !ok {
		return nil, fmt.Errorf("quantization type %s is not supported", ft)
	}
	var plan []Choice
	for _, i := range order(ts) {
		t := &ts[i]
		c := Choice{Name: t.Name, Dims: t.Dims, From: t.DType, To: t.DType}
		if quantizable(t.Name, t.Dims) {
			to := base
			if base.IsQuantized() {
				to = h.typeFor(ft, base, t.Name, t.Dims)
				to, c.Fallback, c.Refused = fallback(to, int(t.Dims[0]))
			}
			c.To = to
		}
		if c.Quantized() && !tensor.CanDequantize(c.From) {
			return nil, fmt.Errorf("tensor %s: cannot read type %s", t.Name, c.From)
		}
		plan = append(plan, c)
	}
	return plan, nil
}
