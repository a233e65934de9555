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

// Seq is one sequence's share of a batched forward pass: its new tokens,
// the cache holding its earlier positions (0..Cache.Len-1), and whether
// logits are wanted for every new token or only the last.
type Seq struct {
	Tokens []int
	Cache  *KVCache
	All    bool
}

// Forward runs the model over tokens at positions pos, pos+1, … with the
// cache holding positions 0..pos-1, appends their keys and values to the
// cache, and returns logits: for every token when all is true (len(tokens)
// rows of VocabSize), otherwise for the last token only. The returned slice
// is owned by s and valid until its next use.
func (m *Model) Forward(s *State, cache *KVCache, tokens []int, pos int, all bool) ([]float32, error) {
	if pos != cache.Len {
		return nil, fmt.Errorf("forward: position %d but the cache holds %d positions", pos, cache.Len)
	}
	out, err := m.ForwardBatch(s, []Seq{{Tokens: tokens, Cache: cache, All: all}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// ForwardBatch runs several sequences through the model in one pass: every
// weight matrix multiplies the new tokens of all sequences at once, while
// attention stays within each sequence and its own cache. It returns each
// sequence's logits (rows of VocabSize, every token's or the last one's),
// slices owned by s and valid until its next use.
func (m *Model) ForwardBatch(s *State, seqs []Seq) ([][]float32, error) {
	c := m.Config
	nt, outRows := 0, 0
	for i, q := range seqs {
		if len(q.Tokens) == 0 {
			return nil, fmt.Errorf("forward: sequence %d has no tokens", i)
		}
		if q.Cache.Len+len(q.Tokens) > q.Cache.Cap {
			return nil, fmt.Errorf("forward: positions %d..%d exceed the context of %d", q.Cache.Len, q.Cache.Len+len(q.Tokens)-1, q.Cache.Cap)
		}
		for _, o := range seqs[:i] {
			if o.Cache == q.Cache {
				return nil, fmt.Errorf("forward: sequences share a cache")
			}
		}
		if len(q.Cache.K) != c.NLayers {
			return nil, fmt.Errorf("forward: sequence %d: the cache has %d layers, the model %d", i, len(q.Cache.K), c.NLayers)
		}
		for _, t := range q.Tokens {
			if t < 0 || t >= c.VocabSize {
				return nil, fmt.Errorf("forward: token id %d outside the vocabulary of %d", t, c.VocabSize)
			}
		}
		nt += len(q.Tokens)
		if q.All {
			outRows += len(q.Tokens)
		} else {
			outRows++
		}
	}
	if nt == 0 {
		return nil, fmt.Errorf("forward: no tokens")
	}
	s.ensure(c, nt, outRows)
	dim, kvDim, hd := c.Dim, c.KVDim(), c.HeadDim()
	x := s.x[:nt*dim]
	row := 0
	for _, q := range seqs {
		for _, t := range q.Tokens {
			m.Embed.Row(x[row*dim:(row+1)*dim], t)
			row++
		}
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
		r0 := 0
		for _, sq := range seqs {
			pos, n := sq.Cache.Len, len(sq.Tokens)
			for i := 0; i < n; i++ {
				r := r0 + i
				rope(q[r*dim:(r+1)*dim], c.NHeads, hd, pos+i, c.RopeTheta)
				rope(k[r*kvDim:(r+1)*kvDim], c.NKVHeads, hd, pos+i, c.RopeTheta)
			}
			kc, vc := sq.Cache.K[li], sq.Cache.V[li]
			copy(kc[pos*kvDim:], k[r0*kvDim:(r0+n)*kvDim])
			copy(vc[pos*kvDim:], v[r0*kvDim:(r0+n)*kvDim])
			kernels.Attention(att[r0*dim:(r0+n)*dim], q[r0*dim:(r0+n)*dim], kc[:(pos+n)*kvDim], vc[:(pos+n)*kvDim],
				n, pos, c.NHeads, c.NKVHeads, hd)
			r0 += n
		}
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
	// final norm of the rows whose logits are wanted, then one output product
	out := 0
	r0 := 0
	for _, sq := range seqs {
		n := len(sq.Tokens)
		first := n - 1
		if sq.All {
			first = 0
		}
		for i := first; i < n; i++ {
			kernels.RMSNorm(xb[out*dim:(out+1)*dim], x[(r0+i)*dim:(r0+i+1)*dim], m.OutNorm, c.NormEps)
			out++
		}
		sq.Cache.Len += n
		r0 += n
	}
	logits := s.logits[:outRows*c.VocabSize]
	m.Output.Forward(logits, xb[:outRows*dim], outRows)
	res := make([][]float32, len(seqs))
	out = 0
	for i, sq := range seqs {
		n := 1
		if sq.All {
			n = len(sq.Tokens)
		}
		res[i] = logits[out*c.VocabSize : (out+n)*c.VocabSize]
		out += n
	}
	return res, nil
}
