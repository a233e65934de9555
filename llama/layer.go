package llama

import (
	"fmt"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
)

// EmbedTokens writes the embedding rows of tokens into x (len(tokens) rows of
// Dim): the residual stream that enters layer 0.
func (m *Model) EmbedTokens(x []float32, tokens []int) error {
	c := m.Config
	if len(x) < len(tokens)*c.Dim {
		return fmt.Errorf("embed: %d floats for %d tokens of %d", len(x), len(tokens), c.Dim)
	}
	for i, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return fmt.Errorf("embed: token id %d outside the vocabulary of %d", t, c.VocabSize)
		}
		m.Embed.Row(x[i*c.Dim:(i+1)*c.Dim], t)
	}
	return nil
}

// ForwardLayer runs transformer block li alone over the residual stream x,
// in place: x holds len(x)/(seqLen·Dim) sequences of seqLen positions each,
// every one starting at position 0 with no cache. It is the block Forward
// runs (the same code), for tools that walk a model layer by layer (GPTQ
// quantizes layer li from the inputs the already-quantized layers before
// it produce).
func (m *Model) ForwardLayer(s *State, li int, x []float32, seqLen int) error {
	c := m.Config
	if li < 0 || li >= len(m.Layers) {
		return fmt.Errorf("forward layer: layer %d of %d", li, len(m.Layers))
	}
	if seqLen <= 0 || len(x) == 0 || len(x)%(seqLen*c.Dim) != 0 {
		return fmt.Errorf("forward layer: %d floats are not whole sequences of %d positions of %d", len(x), seqLen, c.Dim)
	}
	nt := len(x) / c.Dim
	s.ensure(c, nt, 1, modeInfer)
	if s.rope == nil || !s.rope.Matches(c.HeadDim(), c.RopeTheta) {
		s.rope = kernels.NewRoPECache(c.HeadDim(), c.RopeTheta)
	}
	seqs := make([]Seq, nt/seqLen)
	spans := make([]autograd.Span, len(seqs))
	for i := range spans {
		spans[i] = autograd.Span{Row: i * seqLen, N: seqLen}
	}
	res := rows(&s.res[0], nt*c.Dim)
	copy(res.Data, x)
	a := s.layers[0].view(c, nt)
	m.block(nil, li, res, res, &a, spans, seqs, LayerGrads{}, s.rope, s.Batch)
	copy(x, res.Data)
	return nil
}
