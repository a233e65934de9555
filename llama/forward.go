package llama

import (
	"fmt"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
)

// acts are the activations of one transformer block, for the rows of a
// batch:
//
//	xn   = rmsnorm(x)·AttnNorm          q, k, v = Wq·xn, Wk·xn, Wv·xn (then RoPE on q, k)
//	att  = attention(q, k, v)           ao = Wo·att,  xmid = x + ao
//	xn2  = rmsnorm(xmid)·FFNNorm        g, u = Gate·xn2, Up·xn2
//	h    = silu(g) ⊙ u                  fo = Down·h,  out = xmid + fo
//
// Without a tape several of them share a buffer (xn, xn2, ao and fo; g and
// h; xmid is the residual stream itself), as nothing reads them later.
// With a tape every layer keeps its values (or, recomputing, one layer at a
// time does), while the gradients live in one set shared by all layers:
// a layer's activation gradients are only alive during its own backward
// step, which starts by zeroing them. The gradient of ao is that of xmid and
// the gradient of fo that of the block's output (each is the other operand
// of a sum and read by nothing else), so they share those buffers.
type acts struct {
	xn, q, k, v, att, ao, xmid, xn2, g, u, h, fo autograd.Var
}

// actGrads are the shared gradient buffers of a taped pass.
type actGrads struct {
	xn, q, k, v, att, xmid, xn2, g, u, h []float32
}

// forwardMode says how a State's buffers are laid out.
type forwardMode int

const (
	modeInfer     forwardMode = iota // one set of buffers reused by every layer, no gradients
	modeTape                         // every layer's activations kept, with gradients
	modeRecompute                    // only each layer's input kept; one set with gradients for recomputation
)

// State is the scratch a forward pass works in: activations for up to a
// batch of positions (and, for a taped pass, their gradients). It grows as
// needed and can be reused across calls.
type State struct {
	// Batch makes a pass without a tape (ForwardBatch, Hidden) multiply
	// its float weights as a taped pass does, through the packed GEMM
	// (kernels.MatMulBatch), so that its logits equal ForwardTape's bit for
	// bit: for scoring a batch that training compares with (RL's rollout
	// log-probabilities). Off, a pass computes what decoding does, row for
	// row. Taped passes always multiply so.
	Batch bool

	mode     forwardMode
	nt       int            // rows the buffers hold
	outRows  int            // rows of logits the buffers hold
	res      []autograd.Var // residual stream: res[l] enters layer l, res[NLayers] leaves the last
	layers   []acts         // values: per layer (modeTape) or one shared set
	grads    actGrads       // taped: activation gradients shared by the layers
	sel      autograd.Var   // the rows whose logits are wanted, when not all
	fin      autograd.Var   // final-normed rows
	logits   autograd.Var   // logits; with a tape its gradient shares the buffer
	tokens   []int
	rope     *kernels.RoPECache // rotations by position, for the model's head size
	bytes    int64
	parallel bool // laid out for a parallel block (see ensure)
}

// Seq is one sequence's share of a batched forward pass: its new tokens,
// the cache holding its earlier positions (0..Cache.Len-1), and whether
// logits are wanted for every new token or only the last. A nil Cache means
// a sequence that starts at position 0 and keeps no keys and values after
// the call (how training runs).
type Seq struct {
	Tokens []int
	Cache  *KVCache
	All    bool
}

// TapeOptions tune a taped forward pass.
type TapeOptions struct {
	// Recompute keeps only each block's input during the forward pass and
	// recomputes the block's activations when the backward pass reaches it
	// (activation checkpointing): less memory for about a third more work.
	Recompute bool
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
	logits, err := m.forward(s, nil, nil, seqs, modeInfer, false)
	if err != nil {
		return nil, err
	}
	return splitRows(logits.Data, seqs, m.Config.VocabSize), nil
}

// Hidden is ForwardBatch without the output head: it returns each
// sequence's final hidden states after the output norm (rows of Dim, every
// token's or the last one's), the vectors the logits are computed from and
// the ones embeddings pool. The slices are owned by s and valid until its
// next use.
func (m *Model) Hidden(s *State, seqs []Seq) ([][]float32, error) {
	h, err := m.forward(s, nil, nil, seqs, modeInfer, true)
	if err != nil {
		return nil, err
	}
	return splitRows(h.Data, seqs, m.Config.Dim), nil
}

// splitRows cuts the output rows of a batch, width w each, into the
// sequences' shares.
func splitRows(data []float32, seqs []Seq, w int) [][]float32 {
	res := make([][]float32, len(seqs))
	out := 0
	for i, sq := range seqs {
		n := 1
		if sq.All {
			n = len(sq.Tokens)
		}
		res[i] = data[out*w : (out+n)*w]
		out += n
	}
	return res
}

// ForwardTape is ForwardBatch for training: the same pass, recording on
// tape the backward step of every operation. Each sequence must have no
// cache (it starts at position 0) and want all its logits. It returns the
// logits of every token, sequences one after another, as a Var whose
// gradient shares its buffer: a loss op (autograd.CrossEntropy) consumes
// the logits and seeds the gradient, then tape.Backward() accumulates dL/dW
// into g (nil: the weights are constants) for every F32 weight g has room
// for. The Var is owned by s and valid until its next use.
func (m *Model) ForwardTape(s *State, tape *autograd.Tape, g *Grads, seqs []Seq, opt TapeOptions) (*autograd.Var, error) {
	if tape == nil {
		return nil, fmt.Errorf("forward: a taped pass needs a tape")
	}
	for i, sq := range seqs {
		if sq.Cache != nil || !sq.All {
			return nil, fmt.Errorf("forward: sequence %d: a taped pass takes sequences without a cache and with all logits", i)
		}
	}
	mode := modeTape
	if opt.Recompute {
		mode = modeRecompute
	}
	return m.forward(s, tape, g, seqs, mode, false)
}

// check validates seqs and returns the number of new tokens and of logit rows.
func (m *Model) checkSeqs(seqs []Seq) (nt, outRows int, err error) {
	c := m.Config
	for i, q := range seqs {
		if len(q.Tokens) == 0 {
			return 0, 0, fmt.Errorf("forward: sequence %d has no tokens", i)
		}
		if q.Cache != nil {
			if q.Cache.Len+len(q.Tokens) > q.Cache.Cap {
				return 0, 0, fmt.Errorf("forward: positions %d..%d exceed the context of %d", q.Cache.Len, q.Cache.Len+len(q.Tokens)-1, q.Cache.Cap)
			}
			for _, o := range seqs[:i] {
				if o.Cache == q.Cache {
					return 0, 0, fmt.Errorf("forward: sequences share a cache")
				}
			}
			if q.Cache.layers() != c.NLayers {
				return 0, 0, fmt.Errorf("forward: sequence %d: the cache has %d layers, the model %d", i, q.Cache.layers(), c.NLayers)
			}
			if q.Cache.kvd != c.KVDim() {
				return 0, 0, fmt.Errorf("forward: sequence %d: the cache holds rows of %d, the model's keys have %d", i, q.Cache.kvd, c.KVDim())
			}
		}
		for _, t := range q.Tokens {
			if t < 0 || t >= c.VocabSize {
				return 0, 0, fmt.Errorf("forward: token id %d outside the vocabulary of %d", t, c.VocabSize)
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
		return 0, 0, fmt.Errorf("forward: no tokens")
	}
	return nt, outRows, nil
}

// forward is the one LLaMA forward pass: embedding, the blocks, the final
// norm and the output head, with or without a tape. With hidden it stops
// before the output head and returns the normalised final hidden states.
func (m *Model) forward(s *State, tp *autograd.Tape, g *Grads, seqs []Seq, mode forwardMode, hidden bool) (*autograd.Var, error) {
	c := m.Config
	nt, outRows, err := m.checkSeqs(seqs)
	if err != nil {
		return nil, err
	}
	for _, q := range seqs {
		if q.Cache != nil {
			q.Cache.grow(q.Cache.Len + len(q.Tokens))
		}
	}
	s.ensure(c, nt, outRows, mode)
	if s.rope == nil || !s.rope.Matches(c.HeadDim(), c.RopeTheta) {
		s.rope = kernels.NewRoPECache(c.HeadDim(), c.RopeTheta)
	}
	dim := c.Dim

	spans := make([]autograd.Span, len(seqs))
	s.tokens = s.tokens[:0]
	row := 0
	for i, q := range seqs {
		pos := 0
		if q.Cache != nil {
			pos = q.Cache.Len
		}
		spans[i] = autograd.Span{Row: row, N: len(q.Tokens), Pos0: pos}
		s.tokens = append(s.tokens, q.Tokens...)
		row += len(q.Tokens)
	}
	res := make([]*autograd.Var, len(s.res))
	for i := range s.res {
		res[i] = rows(&s.res[i], nt*dim)
	}
	if tp != nil {
		// the gradients the final norm's backward adds to
		clear(res[len(res)-1].Grad)
		clear(s.fin.Grad)
	}
	var gv Grads // the gradients wanted: none when g is nil
	if g != nil {
		gv = *g
	}
	layerGrads := func(li int) LayerGrads {
		if gv.Layers == nil {
			return LayerGrads{}
		}
		return gv.Layers[li]
	}
	autograd.Embedding(tp, res[0], m.Embed.Weight(gv.Embed), s.tokens)
	batch := mode != modeInfer || s.Batch
	for li := range m.Layers {
		switch mode {
		case modeInfer: // the residual stream is updated in place
			a := s.layers[0].view(c, nt)
			m.block(nil, li, res[0], res[0], &a, spans, seqs, LayerGrads{}, s.rope, batch)
		case modeTape:
			// the block's weights are final once its backward is done
			tp.MarkReady(layerGrads(li).all()...)
			a := s.taped(c, li, nt, res[li+1])
			m.block(tp, li, res[li], res[li+1], &a, spans, seqs, layerGrads(li), s.rope, batch)
			// runs first in this block's backward
			tp.Record(func() { s.zeroLayerGrads(c, nt, res[li]) })
		case modeRecompute:
			tp.MarkReady(layerGrads(li).all()...)
			a := s.taped(c, li, nt, res[li+1])
			autograd.Recompute(tp, func(t *autograd.Tape) {
				if t != nil {
					s.zeroLayerGrads(c, nt, res[li])
				}
				m.block(t, li, res[li], res[li+1], &a, spans, seqs, layerGrads(li), s.rope, batch)
			})
		}
	}
	// the final norm of the rows whose logits are wanted, then one output product
	final := res[len(res)-1]
	if outRows != nt {
		final = rows(&s.sel, outRows*dim)
		r0, out := 0, 0
		for _, sq := range seqs {
			n := len(sq.Tokens)
			first := n - 1
			if sq.All {
				first = 0
			}
			copy(final.Data[out*dim:], res[len(res)-1].Data[(r0+first)*dim:(r0+n)*dim])
			out += n - first
			r0 += n
		}
	}
	fin := rows(&s.fin, outRows*dim)
	// the final norm's and the output head's gradients are final after
	// their backward (tied embeddings only after the embedding's)
	tp.MarkReady(gv.OutNorm)
	if !hidden && (gv.Output == nil || gv.Embed == nil || &gv.Output[0] != &gv.Embed[0]) {
		tp.MarkReady(gv.Output)
	}
	m.norm(tp, fin, final, m.OutNorm, m.OutNormB, gv.OutNorm, outRows)
	if hidden {
		m.advance(seqs)
		return fin, nil
	}
	logits := rows(&s.logits, outRows*c.VocabSize)
	if tp != nil {
		logits.Grad = logits.Data
	}
	m.Output.ApplyBatch(tp, logits, fin, gv.Output, outRows, batch)
	m.advance(seqs)
	return logits, nil
}

// advance counts the sequences' new positions into their caches.
func (m *Model) advance(seqs []Seq) {
	for _, sq := range seqs {
		if sq.Cache != nil {
			sq.Cache.Len += len(sq.Tokens)
		}
	}
}

// block runs transformer block li from x into out (see acts). Sequences
// with a cache append their keys and values to it and attend to all of it.
func (m *Model) block(tp *autograd.Tape, li int, x, out *autograd.Var, a *acts, spans []autograd.Span, seqs []Seq, lg LayerGrads, rc *kernels.RoPECache, batch bool) {
	c := m.Config
	l := &m.Layers[li]
	dim, kvd, hd := c.Dim, c.KVDim(), c.HeadDim()
	nt := len(x.Data) / dim
	half := c.Rope == RopeHalf
	// attention: x + Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n), n = norm(x)
	m.norm(tp, &a.xn, x, l.AttnNorm, l.AttnNormB, lg.AttnNorm, nt)
	ffnIn := &a.xn2 // the feed-forward's normed input
	if c.Parallel {
		// both branches read x: its second norm (if any) before x changes
		if l.FFNNorm != nil {
			m.norm(tp, &a.xn2, x, l.FFNNorm, l.FFNNormB, lg.FFNNorm, nt)
		} else {
			ffnIn = &a.xn
		}
	}
	l.Wq.ApplyBatch(tp, &a.q, &a.xn, lg.Wq, nt, batch)
	l.Wk.ApplyBatch(tp, &a.k, &a.xn, lg.Wk, nt, batch)
	l.Wv.ApplyBatch(tp, &a.v, &a.xn, lg.Wv, nt, batch)
	var slopes []float32
	if c.ALiBi {
		slopes = m.alibi()
	} else {
		autograd.RoPE(tp, &a.q, spans, c.NHeads, rc, half)
		autograd.RoPE(tp, &a.k, spans, c.NKVHeads, rc, half)
	}
	sp := spans
	for i, sq := range seqs {
		if sq.Cache == nil {
			continue
		}
		if &sp[0] == &spans[0] {
			sp = append([]autograd.Span(nil), spans...)
		}
		s := spans[i]
		sp[i] = sq.Cache.store(li, s.Pos0, a.k.Data[s.Row*kvd:(s.Row+s.N)*kvd], a.v.Data[s.Row*kvd:(s.Row+s.N)*kvd], s, kvd)
	}
	autograd.AttentionALiBi(tp, &a.att, &a.q, &a.k, &a.v, sp, c.NHeads, c.NKVHeads, hd, slopes)
	if l.Prefix != nil {
		autograd.PrefixAttention(tp, &a.att, &a.q, l.Prefix, l.Wk.Weight(nil), l.Wv.Weight(nil), nt, c.NHeads, c.NKVHeads, hd)
	}
	l.Wo.ApplyBatch(tp, &a.ao, &a.att, lg.Wo, nt, batch)
	autograd.Add(tp, &a.xmid, x, &a.ao)
	// feed-forward: xmid + Down·(silu(Gate·n) ⊙ Up·n), n = norm(xmid)
	// (parallel: n = norm'(x); GELU: Down·gelu(Up·n))
	if !c.Parallel {
		m.norm(tp, &a.xn2, &a.xmid, l.FFNNorm, l.FFNNormB, lg.FFNNorm, nt)
	}
	l.Up.ApplyBatch(tp, &a.u, ffnIn, lg.Up, nt, batch)
	if c.FFN == FFNGELU {
		autograd.GELU(tp, &a.h, &a.u)
	} else {
		l.Gate.ApplyBatch(tp, &a.g, ffnIn, lg.Gate, nt, batch)
		autograd.SiLUMul(tp, &a.h, &a.g, &a.u)
	}
	l.Down.ApplyBatch(tp, &a.fo, &a.h, lg.Down, nt, batch)
	autograd.Add(tp, out, &a.xmid, &a.fo)
}

// norm is the block's normalisation of the rows of x into y: RMSNorm, or
// LayerNorm with bias b (whose gradient is not collected).
func (m *Model) norm(tp *autograd.Tape, y, x *autograd.Var, w, b, gw []float32, nt int) {
	c := m.Config
	if c.Norm == NormLayer {
		autograd.LayerNorm(tp, y, x, w, gw, b, nil, nt, c.Dim, c.NormEps)
		return
	}
	autograd.RMSNorm(tp, y, x, w, gw, nt, c.Dim, c.NormEps)
}

// rows returns a Var over the first n elements of v (and of its gradient).
func rows(v *autograd.Var, n int) *autograd.Var {
	r := &autograd.Var{Data: v.Data[:n]}
	if v.Grad != nil {
		r.Grad = v.Grad[:n]
	}
	return r
}

// view is a over the first nt rows.
func (a *acts) view(c Config, nt int) acts {
	d, kv, f := nt*c.Dim, nt*c.KVDim(), nt*c.FFNDim
	return acts{
		xn: *rows(&a.xn, d), q: *rows(&a.q, d), k: *rows(&a.k, kv), v: *rows(&a.v, kv), att: *rows(&a.att, d),
		ao: *rows(&a.ao, d), xmid: *rows(&a.xmid, d), xn2: *rows(&a.xn2, d), g: *rows(&a.g, f), u: *rows(&a.u, f),
		h: *rows(&a.h, f), fo: *rows(&a.fo, d),
	}
}

// taped returns layer li's activations in a taped pass: its values (the
// layer's own, or the shared set when recomputing) and the shared
// gradients, with ao's gradient that of xmid and fo's that of out.
func (s *State) taped(c Config, li, nt int, out *autograd.Var) acts {
	idx := 0
	if s.mode == modeTape {
		idx = li
	}
	a := s.layers[idx].view(c, nt)
	d, kv, f := nt*c.Dim, nt*c.KVDim(), nt*c.FFNDim
	g := &s.grads
	a.xn.Grad, a.q.Grad, a.k.Grad, a.v.Grad, a.att.Grad = g.xn[:d], g.q[:d], g.k[:kv], g.v[:kv], g.att[:d]
	a.xmid.Grad, a.xn2.Grad, a.g.Grad, a.u.Grad, a.h.Grad = g.xmid[:d], g.xn2[:d], g.g[:f], g.u[:f], g.h[:f]
	a.ao.Grad, a.fo.Grad = a.xmid.Grad, out.Grad
	return a
}

// zeroLayerGrads clears the shared activation gradients and the gradient of
// the layer's input x before the layer's backward step adds to them.
func (s *State) zeroLayerGrads(c Config, nt int, x *autograd.Var) {
	d, kv, f := nt*c.Dim, nt*c.KVDim(), nt*c.FFNDim
	g := &s.grads
	for _, b := range [][]float32{g.xn[:d], g.q[:d], g.k[:kv], g.v[:kv], g.att[:d], g.xmid[:d], g.xn2[:d], g.g[:f], g.u[:f], g.h[:f], x.Grad} {
		clear(b)
	}
}

// ensure lays out the buffers for nt rows and outRows rows of logits in
// mode, keeping the current ones when they are large enough.
func (s *State) ensure(c Config, nt, outRows int, mode forwardMode) {
	if s.mode == mode && s.nt >= nt && s.outRows >= outRows && s.res != nil && s.parallel == c.Parallel {
		return
	}
	if s.mode == mode {
		nt, outRows = max(nt, s.nt), max(outRows, s.outRows)
	}
	*s = State{Batch: s.Batch, mode: mode, nt: nt, outRows: outRows, tokens: s.tokens, rope: s.rope, parallel: c.Parallel}
	taped := mode != modeInfer
	buf := func(n int) []float32 {
		s.bytes += 4 * int64(n)
		return make([]float32, n)
	}
	val := func(n int) autograd.Var { return autograd.Var{Data: buf(n)} }
	d, kv, f := nt*c.Dim, nt*c.KVDim(), nt*c.FFNDim
	newActs := func() acts {
		if !taped && c.Parallel {
			// xn and xn2 are read after ao is written: ao and fo share
			xb, g := val(d), val(f)
			return acts{xn: val(d), q: val(d), k: val(kv), v: val(kv), att: val(d), ao: xb, xn2: val(d), g: g, u: val(f), h: g, fo: xb}
		}
		if !taped {
			// xn, xn2, ao and fo share one buffer, g and h another; xmid is
			// the residual stream (set below)
			xb, g := val(d), val(f)
			return acts{xn: xb, q: val(d), k: val(kv), v: val(kv), att: val(d), ao: xb, xn2: xb, g: g, u: val(f), h: g, fo: xb}
		}
		return acts{xn: val(d), q: val(d), k: val(kv), v: val(kv), att: val(d), ao: val(d), xmid: val(d), xn2: val(d),
			g: val(f), u: val(f), h: val(f), fo: val(d)}
	}
	if !taped {
		// one residual buffer updated in place by every layer
		s.res = []autograd.Var{val(d)}
		s.layers = []acts{newActs()}
		s.layers[0].xmid = s.res[0]
		s.sel = val(outRows * c.Dim)
		s.fin = val(outRows * c.Dim)
		s.logits = val(outRows * c.VocabSize)
		return
	}
	n := 1
	if mode == modeTape {
		n = c.NLayers
	}
	for range n {
		s.layers = append(s.layers, newActs())
	}
	s.grads = actGrads{xn: buf(d), q: buf(d), k: buf(kv), v: buf(kv), att: buf(d), xmid: buf(d), xn2: buf(d),
		g: buf(f), u: buf(f), h: buf(f)}
	// the residual stream's values, and its gradient in two buffers used
	// in turn: a layer reads its output's and writes its input's
	ping := [2][]float32{buf(d), buf(d)}
	s.res = make([]autograd.Var, c.NLayers+1)
	for i := range s.res {
		s.res[i] = autograd.Var{Data: buf(d), Grad: ping[i%2]}
	}
	s.fin = autograd.Var{Data: buf(outRows * c.Dim), Grad: buf(outRows * c.Dim)}
	s.logits = val(outRows * c.VocabSize) // its gradient shares the buffer
}

// Bytes is the memory s holds for activations and their gradients.
func (s *State) Bytes() int64 { return s.bytes }

// ActivationBytes predicts the memory a State holds after a taped pass over
// nt tokens (ForwardTape), in bytes: per token, float32
//
//	values of every block (or of one, recomputing):
//	    7·Dim (xn, q, att, ao, xmid, xn2, fo) + 2·KVDim (k, v) + 3·FFNDim (g, u, h)
//	gradients of one block, shared by all:
//	    5·Dim (xn, q, att, xmid, xn2) + 2·KVDim + 3·FFNDim
//	the residual stream entering each block and leaving the last: (NLayers+1)·Dim,
//	    and its gradient in two buffers: 2·Dim
//	the final norm and its gradient: 2·Dim
//	the logits, VocabSize (their gradient overwrites them)
//
// Transient scratch of the kernels (attention's probabilities for a block
// of queries per thread, per-row losses) is not counted.
func ActivationBytes(c Config, nt int, recompute bool) int64 {
	d, kv, f := int64(c.Dim), int64(c.KVDim()), int64(c.FFNDim)
	blocks := int64(c.NLayers)
	if recompute {
		blocks = 1
	}
	perTok := blocks*(7*d+2*kv+3*f) + (5*d + 2*kv + 3*f) + (int64(c.NLayers)+1)*d + 2*d + 2*d + int64(c.VocabSize)
	return 4 * perTok * int64(nt)
}
