// Package autograd is reverse-mode automatic differentiation over the
// kernels. A forward pass calls the ops of this package; each computes its
// output with a kernel and, when given a Tape, records the backward step (a
// closure over the same buffers calling the backward kernels). Backward then
// runs the recorded steps in reverse order.
//
// Values are Vars: a Data slice and, when a gradient is wanted, a Grad slice
// of the same length. Backward steps accumulate (+=) into Grad, so a value
// read by several ops collects every contribution; whoever owns the Vars
// zeroes the gradients before the pass. Weights are Weights: a matrix in any
// dtype the kernels multiply, with a float32 Grad only for F32 weights
// (gradients for F32 leaves only; a frozen weight of any dtype still passes
// gradient to its input).
//
// Without a tape (a nil *Tape) the ops only compute: this is how inference
// runs the same code. With a tape, an op's inputs must stay unchanged until
// Backward, so outputs must not alias the inputs a backward step reads.
package autograd

import (
	"fmt"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// Tape is the record of a forward pass: the backward steps of its ops, in
// the order the ops ran.
type Tape struct {
	steps []func()
	// Ready, when set, is called during Backward with gradients that are
	// final: nothing Backward runs after it adds to them (see MarkReady).
	Ready func(grads [][]float32)
	marks map[*float32]int // MarkReady steps still to run, per gradient
}

// MarkReady records a step that passes grads to t.Ready: a forward pass
// calls it before the ops that add to grads, and no op recorded before
// it may add to them, so in the backward pass they are final when it
// runs. A gradient marked by several steps (a tape of several forward
// passes) is passed on by the last of them to run. A data-parallel
// trainer starts their all-reduce there.
func (t *Tape) MarkReady(grads ...[]float32) {
	if t == nil {
		return
	}
	if t.marks == nil {
		t.marks = map[*float32]int{}
	}
	var gs [][]float32
	for _, g := range grads {
		if len(g) > 0 {
			gs = append(gs, g)
			t.marks[&g[0]]++
		}
	}
	t.Record(func() {
		var final [][]float32
		for _, g := range gs {
			if t.marks[&g[0]]--; t.marks[&g[0]] == 0 {
				final = append(final, g)
			}
		}
		if t.Ready != nil && len(final) > 0 {
			t.Ready(final)
		}
	})
}

// Record appends a backward step.
func (t *Tape) Record(step func()) { t.steps = append(t.steps, step) }

// Len is the number of recorded steps.
func (t *Tape) Len() int { return len(t.steps) }

// Backward runs the recorded steps from last to first, then empties the
// tape. The gradient of the final value (a loss op seeds it) flows back into
// every Var and Weight with a Grad.
func (t *Tape) Backward() {
	for i := len(t.steps) - 1; i >= 0; i-- {
		t.steps[i]()
		t.steps[i] = nil
	}
	t.steps = t.steps[:0]
	clear(t.marks)
}

// Recompute is activation checkpointing: it runs f(nil), a forward pass that
// keeps nothing for backward, and records one step that runs f again with a
// fresh tape and then that tape's Backward. f must compute the same values
// both times, read its inputs and write its outputs in the same Vars, and
// leave the gradient of its outputs untouched (it is what its backward
// starts from).
func Recompute(t *Tape, f func(t *Tape)) {
	f(nil)
	if t == nil {
		return
	}
	t.Record(func() {
		var sub Tape
		f(&sub)
		sub.Backward()
	})
}

// Var is a value in a forward pass: Data, and Grad (the same length) when a
// gradient is wanted; nil Grad means none is.
type Var struct {
	Data []float32
	Grad []float32
}

// NewVar allocates a Var of n elements, with a gradient when grad is true.
func NewVar(n int, grad bool) *Var {
	v := &Var{Data: make([]float32, n)}
	if grad {
		v.Grad = make([]float32, n)
	}
	return v
}

// ZeroGrad clears the gradient of each Var that has one.
func ZeroGrad(vs ...*Var) {
	for _, v := range vs {
		clear(v.Grad)
	}
}

// Weight is a matrix of Out rows by In columns stored in DType as GGUF
// stores it (row-major), usually a model's weight. Grad, of Out·In float32,
// receives dL/dW when not nil; only F32 weights are trained.
type Weight struct {
	Name  string
	DType tensor.DType
	Data  []byte
	Out   int
	In    int
	Grad  []float32
	// Batch multiplies through kernels.MatMulBatch (the packed GEMM for
	// float weights) instead of MatMul: for the passes of a whole batch
	// (training, and scoring that must match it bit for bit), never for
	// decoding, whose rows must equal a prompt's.
	Batch bool
}

// Param is a trainable F32 tensor and its gradient, as an optimizer sees it.
type Param struct {
	Name  string
	Data  []float32
	Grad  []float32
	Decay bool // weight decay applies (matrices); false for norm gains and biases
}

// Span is one sequence's rows in a batched attention: rows [Row, Row+N) of
// the queries at positions Pos0..Pos0+N-1. K and V, when not nil, hold the
// keys and values of positions 0..Pos0+N-1 (a KV cache the new rows were
// appended to); K16 and V16 do the same for a half-precision cache. When
// neither is set, the keys and values are rows [Row, Row+N) of the k and v
// Vars and Pos0 must be 0.
type Span struct {
	Row, N, Pos0 int
	K, V         []float32
	K16, V16     []uint16
}

// cached reports whether the span's keys and values come from a cache.
func (s Span) cached() bool { return s.K != nil || s.K16 != nil }

// Linear computes y = x·Wᵀ for nt rows (x nt×In, y nt×Out). Backward adds
// dy·W to x's gradient and dyᵀ·x to W's.
func Linear(t *Tape, y, x *Var, w Weight, nt int) {
	if w.Batch && kernels.Supports(w.DType) {
		kernels.MatMulBatch(w.DType, w.Data, w.Out, w.In, x.Data, nt, y.Data)
	} else {
		MatMul(w.DType, w.Data, w.Out, w.In, x.Data, nt, y.Data)
	}
	if t == nil {
		return
	}
	t.Record(func() {
		dy := y.Grad[:nt*w.Out]
		if x.Grad != nil {
			matMulBackward(w.DType, w.Data, w.Out, w.In, dy, nt, x.Grad)
		}
		if w.Grad != nil {
			kernels.GemmTN(w.Out, w.In, nt, dy, x.Data[:nt*w.In], w.Grad, true)
		}
	})
}

// Transpose says which operands of Gemm are transposed.
type Transpose int

// The products Gemm computes.
const (
	NN Transpose = iota // C = A·B,  A m×k, B k×n
	NT                  // C = A·Bᵀ, A m×k, B n×k
	TN                  // C = Aᵀ·B, A k×m, B k×n
)

// Gemm computes the m×n product C of two float32 matrices (row-major,
// both possibly activations) in the form tr says. Backward adds to the operands' gradients
//
//	NN: dA += dC·Bᵀ   dB += Aᵀ·dC
//	NT: dA += dC·B    dB += dCᵀ·A
//	TN: dA += B·dCᵀ   dB += A·dC
func Gemm(t *Tape, c, a, b *Var, m, n, k int, tr Transpose) {
	switch tr {
	case NN:
		kernels.GemmNN(m, n, k, a.Data, b.Data, c.Data, false)
	case NT:
		kernels.GemmNT(m, n, k, a.Data, b.Data, c.Data, false)
	case TN:
		kernels.GemmTN(m, n, k, a.Data, b.Data, c.Data, false)
	default:
		panic(fmt.Sprintf("autograd.Gemm: transpose %d", tr))
	}
	if t == nil {
		return
	}
	t.Record(func() {
		dc := c.Grad[:m*n]
		switch tr {
		case NN:
			if a.Grad != nil {
				kernels.GemmNT(m, k, n, dc, b.Data, a.Grad, true)
			}
			if b.Grad != nil {
				kernels.GemmTN(k, n, m, a.Data, dc, b.Grad, true)
			}
		case NT:
			if a.Grad != nil {
				kernels.GemmNN(m, k, n, dc, b.Data, a.Grad, true)
			}
			if b.Grad != nil {
				kernels.GemmTN(n, k, m, dc, a.Data, b.Grad, true)
			}
		case TN:
			if a.Grad != nil {
				kernels.GemmNT(k, m, n, b.Data, dc, a.Grad, true)
			}
			if b.Grad != nil {
				kernels.GemmNN(k, n, m, a.Data, dc, b.Grad, true)
			}
		}
	})
}

// Embedding copies row tokens[i] of the table w into row i of out.
// Backward adds each row's gradient to its token's row of w's gradient.
// Token ids must be below w.Out (callers check user input).
func Embedding(t *Tape, out *Var, w Weight, tokens []int) {
	rb, err := w.DType.RowBytes(w.In)
	if err != nil {
		panic(fmt.Sprintf("autograd.Embedding: %s: %v", w.Name, err))
	}
	for i, tok := range tokens {
		if err := tensor.Dequantize(w.DType, out.Data[i*w.In:(i+1)*w.In], w.Data[tok*rb:(tok+1)*rb]); err != nil {
			panic(fmt.Sprintf("autograd.Embedding: %s: %v", w.Name, err))
		}
	}
	if t == nil || w.Grad == nil {
		return
	}
	t.Record(func() {
		// in token order: the sum for a repeated token is deterministic
		for i, tok := range tokens {
			kernels.Axpy(1, out.Grad[i*w.In:(i+1)*w.In], w.Grad[tok*w.In:(tok+1)*w.In])
		}
	})
}

// RMSNorm normalizes each of rows rows of dim elements of x into y with gain
// w (see kernels.RMSNorm). gw, when not nil, receives the gain's gradient.
func RMSNorm(t *Tape, y, x *Var, w, gw []float32, rows, dim int, eps float32) {
	for i := range rows {
		kernels.RMSNorm(y.Data[i*dim:(i+1)*dim], x.Data[i*dim:(i+1)*dim], w, eps)
	}
	if t == nil || (x.Grad == nil && gw == nil) {
		return
	}
	t.Record(func() {
		dx := x.Grad
		if dx == nil {
			dx = make([]float32, rows*dim)
		}
		kernels.RMSNormBackward(dx, gw, y.Grad, x.Data, w, rows, dim, eps)
	})
}

// RoPE rotates, in place, the rows of x (nHeads heads each) that the spans
// cover, each row by its position, with the rotations of rc (grown as
// needed); half selects the rotate-half layout instead of the interleaved
// one. Backward rotates the gradient back.
func RoPE(t *Tape, x *Var, spans []Span, nHeads int, rc *kernels.RoPECache, half bool) {
	n := 0
	for _, s := range spans {
		n = max(n, s.Pos0+s.N)
	}
	rc.Grow(n)
	ropeSpans(x.Data, spans, nHeads, rc, half, false)
	if t == nil || x.Grad == nil {
		return
	}
	t.Record(func() { ropeSpans(x.Grad, spans, nHeads, rc, half, true) })
}

// ropeSpans rotates (or, inverse, rotates back) the spans' rows of buf.
func ropeSpans(buf []float32, spans []Span, nHeads int, rc *kernels.RoPECache, half, inverse bool) {
	d := nHeads * rc.HeadDim()
	for _, s := range spans {
		for i := range s.N {
			r := s.Row + i
			rc.Rotate(buf[r*d:(r+1)*d], nHeads, s.Pos0+i, half, inverse)
		}
	}
}

// Attention computes causal grouped-query attention (kernels.Attention) of
// each span's query rows against its keys and values into the same rows of
// out. Backward adds the gradients of q, and of k and v for the span's own
// rows (cached earlier positions are constants).
func Attention(t *Tape, out, q, k, v *Var, spans []Span, nHeads, nKVHeads, headDim int) {
	AttentionALiBi(t, out, q, k, v, spans, nHeads, nKVHeads, headDim, nil)
}

// AttentionALiBi is Attention with ALiBi's position bias, one slope per
// query head (kernels.AttentionALiBi); nil slopes is Attention.
func AttentionALiBi(t *Tape, out, q, k, v *Var, spans []Span, nHeads, nKVHeads, headDim int, slopes []float32) {
	qd, kvd := nHeads*headDim, nKVHeads*headDim
	for _, s := range spans {
		if !s.cached() && s.Pos0 != 0 {
			panic("autograd.Attention: a span without a cache must start at position 0")
		}
	}
	a := attnArgs{out: out, q: q, k: k, v: v, nHeads: nHeads, nKVHeads: nKVHeads, headDim: headDim, slopes: slopes}
	// Many short spans (a decoding batch: one new row per sequence) are
	// spread over the threads a span at a time; each kernel call then finds
	// its own work too small to split. A long span splits its own rows.
	grain := len(spans)
	if len(spans) > 1 && len(spans) >= len(out.Data)/qd/2 {
		work := 0 // multiply-adds, roughly
		for _, s := range spans {
			work += s.N * (s.Pos0 + s.N) * qd
		}
		grain = max(1, len(spans)*(1<<20)/max(work, 1))
	}
	if grain >= len(spans) {
		for _, s := range spans {
			a.attend(s)
		}
	} else {
		pa := a
		kernels.ParallelFor(len(spans), grain, func(lo, hi int) {
			for _, s := range spans[lo:hi] {
				pa.attend(s)
			}
		})
	}
	if t == nil {
		return
	}
	t.Record(func() {
		dq := q.Grad
		if dq == nil {
			dq = make([]float32, len(q.Data))
		}
		for _, s := range spans {
			own := s.Row * kvd // the span's rows of k and v
			end := (s.Row + s.N) * kvd
			// Gradients go straight into k and v when the keys are their
			// rows; through a buffer over all positions when they are a
			// cache, whose last N rows are the span's own.
			direct := !s.cached() && k.Grad != nil && v.Grad != nil
			var dk, dv []float32
			if direct {
				dk, dv = k.Grad[own:end], v.Grad[own:end]
			} else {
				dk, dv = make([]float32, (s.Pos0+s.N)*kvd), make([]float32, (s.Pos0+s.N)*kvd)
			}
			kernels.AttentionBackwardALiBi(dq[s.Row*qd:(s.Row+s.N)*qd], dk, dv, out.Grad[s.Row*qd:(s.Row+s.N)*qd],
				q.Data[s.Row*qd:(s.Row+s.N)*qd], spanKV(s, k, s.K, s.K16, kvd), spanKV(s, v, s.V, s.V16, kvd), s.N, s.Pos0, nHeads, nKVHeads, headDim, slopes)
			if !direct {
				if k.Grad != nil {
					kernels.Add(k.Grad[own:end], k.Grad[own:end], dk[s.Pos0*kvd:])
				}
				if v.Grad != nil {
					kernels.Add(v.Grad[own:end], v.Grad[own:end], dv[s.Pos0*kvd:])
				}
			}
		}
	})
}

// attnArgs are the operands of one Attention call.
type attnArgs struct {
	out, q, k, v              *Var
	nHeads, nKVHeads, headDim int
	slopes                    []float32 // ALiBi; nil: none
}

// attend runs the forward attention of one span.
func (a *attnArgs) attend(s Span) {
	qd, kvd := a.nHeads*a.headDim, a.nKVHeads*a.headDim
	o, qs := a.out.Data[s.Row*qd:(s.Row+s.N)*qd], a.q.Data[s.Row*qd:(s.Row+s.N)*qd]
	if s.K16 != nil {
		n := (s.Pos0 + s.N) * kvd
		if a.slopes != nil {
			kernels.AttentionF16ALiBi(o, qs, s.K16[:n], s.V16[:n], s.N, s.Pos0, a.nHeads, a.nKVHeads, a.headDim, a.slopes)
			return
		}
		kernels.AttentionF16(o, qs, s.K16[:n], s.V16[:n], s.N, s.Pos0, a.nHeads, a.nKVHeads, a.headDim)
		return
	}
	k, v := spanKV(s, a.k, s.K, nil, kvd), spanKV(s, a.v, s.V, nil, kvd)
	if a.slopes != nil {
		kernels.AttentionALiBi(o, qs, k, v, s.N, s.Pos0, a.nHeads, a.nKVHeads, a.headDim, a.slopes)
		return
	}
	kernels.Attention(o, qs, k, v, s.N, s.Pos0, a.nHeads, a.nKVHeads, a.headDim)
}

// spanKV is the keys (or values) a span attends to, as float32: the
// cache's first Pos0+N rows, or the span's own rows of x; a half-precision
// cache is widened into a new slice (only backward needs that).
func spanKV(s Span, x *Var, cached []float32, cached16 []uint16, kvd int) []float32 {
	n := (s.Pos0 + s.N) * kvd
	switch {
	case cached != nil:
		return cached[:n]
	case cached16 != nil:
		w := make([]float32, n)
		kernels.F16ToF32(w, cached16[:n])
		return w
	}
	return x.Data[s.Row*kvd : (s.Row+s.N)*kvd]
}

// SiLUMul computes out = silu(gate) ⊙ up, the SwiGLU activation.
func SiLUMul(t *Tape, out, gate, up *Var) {
	n := len(out.Data)
	kernels.SiLUMul(out.Data, gate.Data[:n], up.Data[:n])
	if t == nil {
		return
	}
	t.Record(func() {
		dg, du := gate.Grad, up.Grad
		if dg == nil {
			dg = make([]float32, n)
		}
		if du == nil {
			du = make([]float32, n)
		}
		kernels.SiLUMulBackward(dg[:n], du[:n], out.Grad[:n], gate.Data[:n], up.Data[:n])
	})
}

// Add computes out = a + b over len(out.Data) elements (a residual
// connection); out may alias a. Backward adds out's gradient to both.
func Add(t *Tape, out, a, b *Var) {
	n := len(out.Data)
	kernels.Add(out.Data, a.Data[:n], b.Data[:n])
	if t == nil || n == 0 {
		return
	}
	t.Record(func() {
		for _, in := range []*Var{a, b} {
			if in.Grad != nil && &in.Grad[0] != &out.Grad[0] {
				kernels.Add(in.Grad[:n], in.Grad[:n], out.Grad[:n])
			}
		}
	})
}

// CrossEntropy is the softmax cross-entropy of the rows of logits (rows of
// vocab, one per target) against targets; a negative target is ignored (a
// loss mask). It returns the sum of the counted rows' losses and their
// number. The logits are replaced by their probabilities. Backward writes
// the gradient of scale·sum into logits.Grad, which may alias logits.Data
// (the loss is the logits' only consumer).
func CrossEntropy(t *Tape, logits *Var, targets []int, vocab int, scale float32) (sum float64, count int) {
	losses := make([]float32, len(targets))
	kernels.SoftmaxCrossEntropy(losses, logits.Data, targets, vocab)
	for i, l := range losses {
		if targets[i] >= 0 {
			sum += float64(l)
			count++
		}
	}
	if t != nil {
		t.Record(func() {
			kernels.CrossEntropyBackward(logits.Grad, logits.Data, targets, vocab, scale)
		})
	}
	return sum, count
}
