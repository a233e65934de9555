package llama

import (
	"bytes"
	"fmt"
	"io"
	"math"
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
	if c.NLayers <= 0 || c.NLayers > len(ts)/9 {
		return nil, fmt.Errorf("%s: %d blocks, but the file holds %d tensors (each block has 9)", src, c.NLayers, len(ts))
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
	if arch == "falcon" {
		return fromGGUFFalcon(f)
	}
	if arch == "baichuan" {
		return fromGGUFBaichuan(f)
	}
	if arch != "llama" {
		return nil, fmt.Errorf("%s: architecture %q, herd runs \"llama\", \"baichuan\" and \"falcon\"", f.Path, arch)
	}
	c, err := configFromGGUF(f)
	if err != nil {
		return nil, err
	}
	return build(f.Path, c, rawTensors(f))
}

// ggufUint reads the integer hyperparameter ARCH.KEY (llama.block_count,
// falcon.block_count …): def when absent (or an error when def < 0), an
// error when it is stored as another type or is absurd.
func ggufUint(f *gguf.File, arch, key string, def int) (int, error) {
	name := arch + "." + key
	v, ok := f.Get(name)
	if !ok {
		if def >= 0 {
			return def, nil
		}
		return 0, fmt.Errorf("%s: missing metadata %s", f.Path, name)
	}
	n, ok := v.AsUint()
	if !ok {
		return 0, fmt.Errorf("%s: metadata %s is %s %v, want a non-negative integer", f.Path, name, v.Type, shortValue(v))
	}
	if n > 1<<31 {
		return 0, fmt.Errorf("%s: metadata %s = %d is absurd", f.Path, name, n)
	}
	return int(n), nil
}

// ggufFloat reads the float hyperparameter ARCH.KEY: def when absent, an
// error when stored as another type or not finite (ranges are Config's).
func ggufFloat(f *gguf.File, arch, key string, def float32) (float32, error) {
	name := arch + "." + key
	v, ok := f.Get(name)
	if !ok {
		return def, nil
	}
	x, ok := v.AsFloat()
	if !ok {
		return 0, fmt.Errorf("%s: metadata %s is %s %v, want a float", f.Path, name, v.Type, shortValue(v))
	}
	if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > math.MaxFloat32 {
		return 0, fmt.Errorf("%s: metadata %s = %g is not a finite float32", f.Path, name, x)
	}
	return float32(x), nil
}

// rawTensors lists f's tensors for build.
func rawTensors(f *gguf.File) []rawTensor {
	ts := make([]rawTensor, len(f.Tensors))
	for i, t := range f.Tensors {
		ts[i] = rawTensor{t.Name, t.DType, t.Dims, t.Data}
	}
	return ts
}

// shortValue formats a metadata value for an error message, cut to 40
// characters (a hostile file may hold a megabyte string).
func shortValue(v gguf.Value) string {
	s := v.String()
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// configFromGGUF reads a Config from the llama.* metadata, each value
// checked for its type; shapes and ranges are checked by Config.Validate.
func configFromGGUF(f *gguf.File) (Config, error) {
	var c Config
	var err error
	for _, k := range []struct {
		dst *int
		key string
		def func() int
	}{
		{&c.Dim, "embedding_length", func() int { return -1 }},
		{&c.NLayers, "block_count", func() int { return -1 }},
		{&c.NHeads, "attention.head_count", func() int { return -1 }},
		{&c.NKVHeads, "attention.head_count_kv", func() int { return c.NHeads }},
		{&c.FFNDim, "feed_forward_length", func() int { return -1 }},
		{&c.ContextLen, "context_length", func() int { return 2048 }},
		{&c.VocabSize, "vocab_size", func() int { return 0 }},
	} {
		if *k.dst, err = ggufUint(f, "llama", k.key, k.def()); err != nil {
			return c, err
		}
	}
	if c.RopeTheta, err = ggufFloat(f, "llama", "rope.freq_base", 10000); err != nil {
		return c, err
	}
	if c.NormEps, err = ggufFloat(f, "llama", "attention.layer_norm_rms_epsilon", 1e-5); err != nil {
		return c, err
	}
	if c.NHeads > 0 && c.Dim%c.NHeads == 0 {
		rd, err := ggufUint(f, "llama", "rope.dimension_count", c.Dim/c.NHeads)
		if err != nil {
			return c, err
		}
		if rd != c.Dim/c.NHeads {
			return c, fmt.Errorf("%s: llama.rope.dimension_count %d differs from the head size %d; partial RoPE is not supported", f.Path, rd, c.Dim/c.NHeads)
		}
	}
	return c, nil
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
