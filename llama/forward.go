package llama

import (
	"fmt"

	"github.com/herd-llm/herd/kernels"
)

// KVCache holds the keys and values of every position processed so far, per
// layer: Len rows of KVDim float32 each, room for Cap positions.
type KVCache struct {
	K, V [][]float32 // [layer][Cap·KVDim]
	Len  int         // positions filled
	Cap  int         // positions the cache can hold
}

// NewKVCache allocates a cache for ctx positions.
func (m *Model) NewKVCache(ctx int) *KVCache {
	kv := m.Config.KVDim()
	c := &KVCache{K: make([][]float32, m.Config.NLayers), V: make([][]float32, m.Config.NLayers), Cap: ctx}
	for i := range c.K {
		c.K[i] = make([]float32, ctx*kv)
		c.V[i] = make([]float32, ctx*kv)
	}
	return c
}

// Bytes is the memory the cache holds.
func (c *KVCache) Bytes() int64 { return int64(len(c.K)) * 2 * int64(len(c.K[0])) * 4 }

// State is the scratch a Forward call works in: activations for up to a
// batch of positions. It grows as needed and can be reused across calls.
type State struct {
	x, xb, q, k, v, att, ffnG, ffnU, logits []float32
	nt                                      int
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func (s *State) ensure(c Config, nt int, logitRows int) {
	if s.nt >= nt && len(s.logits) >= logitRows*c.VocabSize {
		return
	}
	nt = max(nt, s.nt)
	s.x = grow(s.x, nt*c.Dim)
	s.xb = grow(s.xb, nt*c.Dim)
	s.q = grow(s.q, nt*c.Dim)
	s.k = grow(s.k, nt*c.KVDim())
	s.v = grow(s.v, nt*c.KVDim())
	s.att = grow(s.att, nt*c.Dim)
	s.ffnG = grow(s.ffnG, nt*c.FFNDim)
	s.ffnU = grow(s.ffnU, nt*c.FFNDim)
	s.logits = grow(s.logits, max(logitRows, len(s.logits)/c.VocabSize)*c.VocabSize)
	s.nt = nt
}

// Forward runs the model over tokens at positions pos, pos+1, … with the
// cache holding positions 0..pos-1, appends their keys and values to the
// cache, and returns logits: for every token when all is true (len(tokens)
// rows of VocabSize), otherwise for the last token only. The returned slice
// is owned by s and valid until its next use.
func (m *Model) Forward(s *State, cache *KVCache, tokens []int, pos int, all bool) ([]float32, error) {
	c := m.Config
	nt := len(tokens)
	if nt == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	if pos != cache.Len {
		return nil, fmt.Errorf("forward: position %d but the cache holds %d positions", pos, cache.Len)
	}
	if pos+nt > cache.Cap {
		return nil, fmt.Errorf("forward: positions %d..%d exceed the context of %d", pos, pos+nt-1, cache.Cap)
	}
	for _, t := range tokens {
		if t < 0 || t >= c.VocabSize {
			return nil, fmt.Errorf("forward: token id %d outside the vocabulary of %d", t, c.VocabSize)
		}
	}
	outRows := 1
	if all {
		outRows = nt
	}
	s.ensure(c, nt, outRows)
	dim, kvDim, hd := c.Dim, c.KVDim(), c.HeadDim()
	x := s.x[:nt*dim]
	for i, t := range tokens {
		m.Embed.Row(x[i*dim:(i+1)*dim], t)
	}
	rope := kernels.RoPEInterleaved
	if c.Rope == RopeHalf {
		rope = kernels.RoPEHalf
	}
	xb, q, k, v, att := s.xb[:nt*dim], s.q[:nt*dim], s.k[:nt*kvDim], s.v[:nt*kvDim], s.att[:nt*dim]
	g, u := s.ffnG[:nt*c.FFNDim], s.ffnU[:nt*c.FFNDim]
	for li := range m.Layers {
		l := &m.Layers[li]
		// attention: x += Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n), n = rmsnorm(x)
		for i := 0; i < nt; i++ {
			kernels.RMSNorm(xb[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], l.AttnNorm, c.NormEps)
		}
		l.Wq.Forward(q, xb, nt)
		l.Wk.Forward(k, xb, nt)
		l.Wv.Forward(v, xb, nt)
		for i := 0; i < nt; i++ {
			rope(q[i*dim:(i+1)*dim], c.NHeads, hd, pos+i, c.RopeTheta)
			rope(k[i*kvDim:(i+1)*kvDim], c.NKVHeads, hd, pos+i, c.RopeTheta)
		}
		copy(cache.K[li][pos*kvDim:], k)
		copy(cache.V[li][pos*kvDim:], v)
		kernels.Attention(att, q, cache.K[li][:(pos+nt)*kvDim], cache.V[li][:(pos+nt)*kvDim], nt, pos, c.NHeads, c.NKVHeads, hd)
		l.Wo.Forward(xb, att, nt)
		kernels.Add(x, x, xb)
		// feed-forward: x += Down · (silu(Gate·n) ⊙ Up·n), n = rmsnorm(x)
		for i := 0; i < nt; i++ {
			kernels.RMSNorm(xb[i*dim:(i+1)*dim], x[i*dim:(i+1)*dim], l.FFNNorm, c.NormEps)
		}
		l.Gate.Forward(g, xb, nt)
		l.Up.Forward(u, xb, nt)
		kernels.SiLUMul(g, g, u)
		l.Down.Forward(xb, g, nt)
		kernels.Add(x, x, xb)
	}
	cache.Len = pos + nt
	first := 0
	if !all {
		first = nt - 1
	}
	rows := nt - first
	for i := first; i < nt; i++ {
		kernels.RMSNorm(xb[(i-first)*dim:(i-first+1)*dim], x[i*dim:(i+1)*dim], m.OutNorm, c.NormEps)
	}
	logits := s.logits[:rows*c.VocabSize]
	m.Output.Forward(logits, xb[:rows*dim], rows)
	return logits, nil
}
