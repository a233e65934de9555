package llama

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// rawTensor is a named tensor as a checkpoint holds it, in GGUF naming and
// ggml dimension order (Dims[0] is the row length).
type rawTensor struct {
	Name  string
	DType tensor.DType
	Dims  []uint64
	Data  []byte
}

// build assembles a Model from tensors named as GGUF names them.
func build(src string, c Config, ts []rawTensor) (*Model, error) {
	byName := make(map[string]rawTensor, len(ts))
	for _, t := range ts {
		byName[t.Name] = t
	}
	used := map[string]bool{}
	mat := func(name string) (*nn.Linear, error) {
		t, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%s: missing tensor %s", src, name)
		}
		used[name] = true
		if len(t.Dims) != 2 {
			return nil, fmt.Errorf("%s: tensor %s has %d dimensions, want 2", src, name, len(t.Dims))
		}
		if t.Dims[0] > 1<<31 || t.Dims[1] > 1<<31 {
			return nil, fmt.Errorf("%s: tensor %s has absurd dimensions %v", src, name, t.Dims)
		}
		l, err := nn.NewLinear(name, t.DType, int(t.Dims[1]), int(t.Dims[0]), t.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return l, nil
	}
	vec := func(name string) ([]float32, error) {
		t, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("%s: missing tensor %s", src, name)
		}
		used[name] = true
		n := uint64(1)
		for _, d := range t.Dims {
			n *= d
		}
		if n != uint64(c.Dim) {
			return nil, fmt.Errorf("%s: tensor %s has %d elements, the config wants %d", src, name, n, c.Dim)
		}
		out := make([]float32, n)
		if err := tensor.Dequantize(t.DType, out, t.Data); err != nil {
			return nil, fmt.Errorf("%s: tensor %s: %w", src, name, err)
		}
		return out, nil
	}
	m := &Model{Config: c}
	var err error
	if m.Embed, err = mat("token_embd.weight"); err != nil {
		return nil, err
	}
	if c.VocabSize == 0 {
		m.Config.VocabSize = m.Embed.Out
		c = m.Config
	}
	if m.OutNorm, err = vec("output_norm.weight"); err != nil {
		return nil, err
	}
	if _, ok := byName["output.weight"]; ok {
		if m.Output, err = mat("output.weight"); err != nil {
			return nil, err
		}
		m.Config.TiedEmbeddings = false
	} else {
		m.Output = m.Embed
		m.Config.TiedEmbeddings = true
	}
	m.Layers = make([]Layer, c.NLayers)
	for i := range m.Layers {
		l := &m.Layers[i]
		l.layerIndex = i
		p := fmt.Sprintf("blk.%d.", i)
		if l.AttnNorm, err = vec(p + "attn_norm.weight"); err != nil {
			return nil, err
		}
		if l.FFNNorm, err = vec(p + "ffn_norm.weight"); err != nil {
			return nil, err
		}
		for k, w := range l.Matrices() {
			if *w, err = mat(p + BlockMatrices[k].GGUF + ".weight"); err != nil {
				return nil, err
			}
		}
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	for _, t := range ts {
		// score.weight is a reward model's head (herd rm train), read by
		// package align; the model itself is a language model as any other
		if !used[t.Name] && t.Name != "rope_freqs.weight" && t.Name != "score.weight" {
			return nil, fmt.Errorf("%s: unexpected tensor %s", src, t.Name)
		}
	}
	return m, nil
}

// FromGGUF builds a model over the tensors of an open GGUF file of
// architecture "llama". The model aliases the file's mapping; the file must
// stay open while the model is used.
func FromGGUF(f *gguf.File) (*Model, error) {
	arch, _ := f.GetString("general.architecture")
	if arch != "llama" {
		return nil, fmt.Errorf("%s: architecture %q, herd runs \"llama\"", f.Path, arch)
	}
	u := func(key string, def int) (int, error) {
		v, ok := f.GetUint("llama." + key)
		if !ok {
			if def >= 0 {
				return def, nil
			}
			return 0, fmt.Errorf("%s: missing metadata llama.%s", f.Path, key)
		}
		if v > 1<<31 {
			return 0, fmt.Errorf("%s: metadata llama.%s = %d is absurd", f.Path, key, v)
		}
		return int(v), nil
	}
	var c Config
	var err error
	if c.Dim, err = u("embedding_length", -1); err != nil {
		return nil, err
	}
	if c.NLayers, err = u("block_count", -1); err != nil {
		return nil, err
	}
	if c.NHeads, err = u("attention.head_count", -1); err != nil {
		return nil, err
	}
	if c.NKVHeads, err = u("attention.head_count_kv", c.NHeads); err != nil {
		return nil, err
	}
	if c.FFNDim, err = u("feed_forward_length", -1); err != nil {
		return nil, err
	}
	if c.ContextLen, err = u("context_length", 2048); err != nil {
		return nil, err
	}
	if c.VocabSize, err = u("vocab_size", 0); err != nil {
		return nil, err
	}
	c.RopeTheta = 10000
	if v, ok := f.GetFloat("llama.rope.freq_base"); ok {
		c.RopeTheta = float32(v)
	}
	c.NormEps = 1e-5
	if v, ok := f.GetFloat("llama.attention.layer_norm_rms_epsilon"); ok {
		c.NormEps = float32(v)
	}
	if c.NHeads > 0 && c.Dim%c.NHeads == 0 {
		if rd, ok := f.GetUint("llama.rope.dimension_count"); ok && rd != uint64(c.Dim/c.NHeads) {
			return nil, fmt.Errorf("%s: llama.rope.dimension_count %d differs from the head size %d; partial RoPE is not supported", f.Path, rd, c.Dim/c.NHeads)
		}
	}
	ts := make([]rawTensor, len(f.Tensors))
	for i, t := range f.Tensors {
		ts[i] = rawTensor{t.Name, t.DType, t.Dims, t.Data}
	}
	return build(f.Path, c, ts)
}

// FromLlama2c builds a model over the tensors of a llama2.c checkpoint.
func FromLlama2c(path string, ck *llama2c.Checkpoint) (*Model, error) {
	k := ck.Config
	c := Config{Dim: k.Dim, NLayers: k.NLayers, NHeads: k.NHeads, NKVHeads: k.NKVHeads, FFNDim: k.HiddenDim,
		VocabSize: k.VocabSize, ContextLen: k.SeqLen, RopeTheta: 10000, NormEps: 1e-5, TiedEmbeddings: k.SharedClassifier}
	ts := make([]rawTensor, len(ck.Tensors))
	for i, t := range ck.Tensors {
		ts[i] = rawTensor{t.Name, t.DType, t.Dims, t.Data}
	}
	return build(path, c, ts)
}

// Format names a checkpoint format by its first bytes.
func Format(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var head [4]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return "", fmt.Errorf("%s: too short to be a checkpoint: %w", path, err)
	}
	switch {
	case bytes.Equal(head[:], []byte("GGUF")):
		return "gguf", nil
	default:
		return "llama2c", nil // the legacy header has no magic; the parser validates it
	}
}

// Open loads a model from a GGUF file or a llama2.c checkpoint (legacy,
// version 1 or version 2), memory-mapped where the file allows.
func Open(path string) (*Model, error) {
	kind, err := Format(path)
	if err != nil {
		return nil, err
	}
	if kind == "gguf" {
		f, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		m, err := FromGGUF(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		m.closer = f
		return m, nil
	}
	ck, err := llama2c.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := FromLlama2c(path, ck)
	if err != nil {
		ck.Close()
		return nil, err
	}
	m.closer = ck
	return m, nil
}
