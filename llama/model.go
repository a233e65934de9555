package llama

import (
	"fmt"
	"io"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/nn"
)

// Layer is one transformer block: pre-norm attention and a pre-norm SwiGLU
// feed-forward, each added to the residual stream.
type Layer struct {
	AttnNorm []float32  // [Dim]
	Wq       *nn.Linear // Dim → Dim
	Wk       *nn.Linear // Dim → KVDim
	Wv       *nn.Linear // Dim → KVDim
	Wo       *nn.Linear // Dim → Dim
	FFNNorm  []float32  // [Dim]
	Gate     *nn.Linear // Dim → FFNDim (w1)
	Up       *nn.Linear // Dim → FFNDim (w3)
	Down     *nn.Linear // FFNDim → Dim (w2)
	// AttnNormB and FFNNormB are the LayerNorms' biases (NormLayer); a
	// parallel block may have no FFNNorm (one norm feeds both branches).
	AttnNormB, FFNNormB []float32
	// Prefix, when set, is a LLaMA-Adapter adaption prompt the layer's
	// queries also attend to (gated; see autograd.Prefix).
	Prefix     *autograd.Prefix
	layerIndex int
}

// Model is a LLaMA-architecture network. Its weights usually alias a
// memory-mapped checkpoint; Close releases the mapping.
type Model struct {
	Config  Config
	Embed   *nn.Linear // token embedding table: VocabSize rows of Dim
	Layers  []Layer
	OutNorm []float32 // [Dim]
	// OutNormB is the final LayerNorm's bias (NormLayer).
	OutNormB []float32
	Output   *nn.Linear // Dim → VocabSize; the same as Embed when tied
	// KVF32 makes NewKVCache keep keys and values in float32; by default
	// they are stored as F16, as llama.cpp does (half the memory; each
	// value rounded once, when it enters the cache).
	KVF32 bool
	// NoMmap makes PackForInference copy the matrices it does not repack
	// (F16, BF16, F32 and the formats with no packed layout) into its
	// huge-page arena as well, instead of leaving them to be read in
	// place from the file's mapping (llama.cpp's --no-mmap).
	NoMmap bool
	closer io.Closer
	frees  []func() // memory PackForInference mapped, freed by Close
}

// alibi returns the model's ALiBi slopes (computed each time: a model is
// shared by concurrent passes and the cost is NHeads powers).
func (m *Model) alibi() []float32 { return ALiBiSlopes(m.Config.NHeads) }

// Close releases the file mapping the weights live in, if any, and the
// memory of the matrices PackForInference converted.
func (m *Model) Close() error {
	for _, free := range m.frees {
		free()
	}
	m.frees = nil
	if m.closer == nil {
		return nil
	}
	c := m.closer
	m.closer = nil
	return c.Close()
}

// check verifies that every weight has the shape the config implies.
func (m *Model) check() error {
	c := m.Config
	if err := c.Validate(); err != nil {
		return err
	}
	want := func(l *nn.Linear, what string, out, in int) error {
		if l == nil {
			return fmt.Errorf("missing tensor %s", what)
		}
		if l.Out != out || l.In != in {
			return fmt.Errorf("tensor %s is %d×%d, the config wants %d×%d", l.Name, l.Out, l.In, out, in)
		}
		return nil
	}
	vec := func(v []float32, what string) error {
		if len(v) != c.Dim {
			return fmt.Errorf("tensor %s has %d elements, the config wants %d", what, len(v), c.Dim)
		}
		return nil
	}
	if err := want(m.Embed, EmbedName, c.VocabSize, c.Dim); err != nil {
		return err
	}
	if err := want(m.Output, OutputName, c.VocabSize, c.Dim); err != nil {
		return err
	}
	if err := vec(m.OutNorm, OutNormName); err != nil {
		return err
	}
	if c.Norm == NormLayer {
		if err := vec(m.OutNormB, "output_norm.bias"); err != nil {
			return err
		}
	}
	if len(m.Layers) != c.NLayers {
		return fmt.Errorf("%d layers, the config wants %d", len(m.Layers), c.NLayers)
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		errs := []error{vec(l.AttnNorm, p+"attn_norm.weight")}
		if !c.Parallel || l.FFNNorm != nil {
			errs = append(errs, vec(l.FFNNorm, p+"ffn_norm.weight"))
		}
		if c.Norm == NormLayer {
			errs = append(errs, vec(l.AttnNormB, p+"attn_norm.bias"))
			if l.FFNNorm != nil {
				errs = append(errs, vec(l.FFNNormB, p+"ffn_norm.bias"))
			}
		}
		for k, w := range l.Matrices() {
			b := BlockMatrices[k]
			if b.Module == "gate" && c.FFN != FFNSwiGLU {
				continue
			}
			out, in := b.Shape(c)
			errs = append(errs, want(*w, p+b.GGUF+".weight", out, in))
		}
		for _, e := range errs {
			if e != nil {
				return e
			}
		}
	}
	return nil
}

// Params counts the model's weights (a tied head is counted once).
func (m *Model) Params() int64 { return m.Config.Params() }

// WeightBytes is the number of bytes of weights a forward pass reads for one
// token: every matrix once (the embedding only for one row).
func (m *Model) WeightBytes() int64 {
	var n int64
	for _, l := range m.Layers {
		for _, w := range l.Matrices() {
			if *w == nil {
				continue
			}
			n += int64(len((*w).Data))
		}
	}
	return n + int64(len(m.Output.Data))
}
