package autograd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// The backward kernels have their own float64 finite-difference tests; these
// check the wiring of each op (which buffer receives which gradient,
// accumulation, spans, caches, aliasing) by finite differences of the ops'
// own float32 forward, summed in float64: loss = Σ out ⊙ R for a fixed R.

type leaf struct {
	name string
	data []float32 // perturbed in place by the check
	grad []float32 // where the op under test leaves dL/d(data)
}

func randVec(r *rand.Rand, n int, s float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * s)
	}
	return v
}

// checkGrads runs build with a tape, seeds the output's gradient with R,
// runs Backward and compares every leaf's gradient, at up to 40 coordinates,
// with central differences of Σ build(nil).Data ⊙ R.
func checkGrads(t *testing.T, what string, build func(tp *Tape) *Var, leaves []leaf, tol float64) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for _, l := range leaves {
		clear(l.grad)
	}
	var tp Tape
	out := build(&tp)
	R := randVec(r, len(out.Data), 1)
	copy(out.Grad, R)
	tp.Backward()
	loss := func() float64 {
		o := build(nil)
		var s float64
		for i, v := range o.Data {
			s += float64(v) * float64(R[i])
		}
		return s
	}
	for _, l := range leaves {
		idx := r.Perm(len(l.data))
		if len(idx) > 40 {
			idx = idx[:40]
		}
		var worst, scale float64
		fd := make([]float64, len(idx))
		for k, i := range idx {
			v := l.data[i]
			h := float32(3e-3 * math.Max(1, math.Abs(float64(v))))
			l.data[i] = v + h
			hp := float64(l.data[i])
			lp := loss()
			l.data[i] = v - h
			hm := float64(l.data[i])
			lm := loss()
			l.data[i] = v
			fd[k] = (lp - lm) / (hp - hm)
			scale = math.Max(scale, math.Abs(fd[k]))
		}
		for k, i := range idx {
			worst = math.Max(worst, math.Abs(float64(l.grad[i])-fd[k]))
		}
		if worst > tol*math.Max(scale, 1e-3) {
			t.Errorf("%s: d/d%s differs from finite differences by %.3g (largest gradient %.3g)", what, l.name, worst, scale)
		}
	}
}

func TestLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	nt, in, out := 3, 32, 5
	x, gx := randVec(r, nt*in, 1), make([]float32, nt*in)
	w, gw := randVec(r, out*in, 0.3), make([]float32, out*in)
	build := func(tp *Tape) *Var {
		xv := &Var{Data: x, Grad: gx}
		y := NewVar(nt*out, true)
		Linear(tp, y, xv, Weight{Name: "w", DType: tensor.F32, Data: tensor.BytesOfF32(w), Out: out, In: in, Grad: gw}, nt)
		return y
	}
	checkGrads(t, "Linear F32", build, []leaf{{"x", x, gx}, {"W", w, gw}}, 2e-3)

	// a frozen F16 weight still passes gradient to its input
	wh := make([]byte, out*in*2)
	if err := tensor.Quantize(tensor.F16, wh, w); err != nil {
		t.Fatal(err)
	}
	build16 := func(tp *Tape) *Var {
		xv := &Var{Data: x, Grad: gx}
		y := NewVar(nt*out, true)
		Linear(tp, y, xv, Weight{Name: "w", DType: tensor.F16, Data: wh, Out: out, In: in}, nt)
		return y
	}
	checkGrads(t, "Linear F16 frozen", build16, []leaf{{"x", x, gx}}, 2e-3)
}

func TestGemmTransposes(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	m, n, k := 5, 7, 3
	for _, tc := range []struct {
		name string
		tr   Transpose
	}{{"NN", NN}, {"NT", NT}, {"TN", TN}} {
		a, ga := randVec(r, m*k, 1), make([]float32, m*k)
		b, gb := randVec(r, n*k, 1), make([]float32, n*k)
		build := func(tp *Tape) *Var {
			c := NewVar(m*n, true)
			Gemm(tp, c, &Var{Data: a, Grad: ga}, &Var{Data: b, Grad: gb}, m, n, k, tc.tr)
			return c
		}
		// the product against a plain triple loop
		c := build(nil)
		at := func(i, p int) float32 { // A as an m×k matrix
			if tc.tr == TN {
				return a[p*m+i]
			}
			return a[i*k+p]
		}
		bt := func(p, j int) float32 { // B as a k×n matrix
			if tc.tr == NT {
				return b[j*k+p]
			}
			return b[p*n+j]
		}
		for i := range m {
			for j := range n {
				var s float64
				for p := range k {
					s += float64(at(i, p)) * float64(bt(p, j))
				}
				if math.Abs(s-float64(c.Data[i*n+j])) > 1e-5 {
					t.Fatalf("%s: C[%d][%d] = %g, want %g", tc.name, i, j, c.Data[i*n+j], s)
				}
			}
		}
		checkGrads(t, "Gemm "+tc.name, build, []leaf{{"A", a, ga}, {"B", b, gb}}, 2e-3)
	}
}

func TestEmbedding(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	vocab, dim := 7, 6
	w, gw := randVec(r, vocab*dim, 1), make([]float32, vocab*dim)
	tokens := []int{3, 1, 3, 6, 3} // repeated ids accumulate
	build := func(tp *Tape) *Var {
		o := NewVar(len(tokens)*dim, true)
		Embedding(tp, o, Weight{Name: "emb", DType: tensor.F32, Data: tensor.BytesOfF32(w), Out: vocab, In: dim, Grad: gw}, tokens)
		return o
	}
	checkGrads(t, "Embedding", build, []leaf{{"table", w, gw}}, 1e-4)
}

func TestRMSNormOp(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	rows, dim := 4, 12
	x, gx := randVec(r, rows*dim, 1), make([]float32, rows*dim)
	w, gw := randVec(r, dim, 1), make([]float32, dim)
	build := func(tp *Tape) *Var {
		y := NewVar(rows*dim, true)
		RMSNorm(tp, y, &Var{Data: x, Grad: gx}, w, gw, rows, dim, 1e-5)
		return y
	}
	checkGrads(t, "RMSNorm", build, []leaf{{"x", x, gx}, {"gain", w, gw}}, 2e-3)
}

func TestRoPEOp(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	heads, hd := 2, 8
	spans := []Span{{Row: 0, N: 3}, {Row: 3, N: 2, Pos0: 5}}
	x, gx := randVec(r, 5*heads*hd, 1), make([]float32, 5*heads*hd)
	for _, half := range []bool{false, true} {
		build := func(tp *Tape) *Var {
			v := &Var{Data: append([]float32(nil), x...), Grad: gx}
			RoPE(tp, v, spans, heads, kernels.NewRoPECache(hd, 10000), half)
			return v
		}
		clear(gx)
		checkGrads(t, fmt.Sprintf("RoPE half=%v", half), build, []leaf{{"x", x, gx}}, 2e-3)
	}
}

func TestAttentionOp(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	heads, kvh, hd := 4, 2, 8
	qd, kvd := heads*hd, kvh*hd
	// two fresh sequences (3 and 4 rows) and one of 2 rows after 3 cached positions
	rows := 9
	q, gq := randVec(r, rows*qd, 1), make([]float32, rows*qd)
	k, gk := randVec(r, rows*kvd, 1), make([]float32, rows*kvd)
	v, gv := randVec(r, rows*kvd, 1), make([]float32, rows*kvd)
	past := randVec(r, 3*kvd*2, 1)
	build := func(tp *Tape) *Var {
		cacheK := append(append([]float32(nil), past[:3*kvd]...), k[7*kvd:9*kvd]...)
		cacheV := append(append([]float32(nil), past[3*kvd:]...), v[7*kvd:9*kvd]...)
		spans := []Span{{Row: 0, N: 3}, {Row: 3, N: 4}, {Row: 7, N: 2, Pos0: 3, K: cacheK, V: cacheV}}
		out := NewVar(rows*qd, true)
		Attention(tp, out, &Var{Data: q, Grad: gq}, &Var{Data: k, Grad: gk}, &Var{Data: v, Grad: gv}, spans, heads, kvh, hd)
		return out
	}
	checkGrads(t, "Attention", build, []leaf{{"q", q, gq}, {"k", k, gk}, {"v", v, gv}}, 2e-3)
}

func TestSiLUMulAndAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	n := 20
	g, gg := randVec(r, n, 2), make([]float32, n)
	u, gu := randVec(r, n, 1), make([]float32, n)
	build := func(tp *Tape) *Var {
		gv, uv := &Var{Data: g, Grad: gg}, &Var{Data: u, Grad: gu}
		h := NewVar(n, true)
		SiLUMul(tp, h, gv, uv)
		// out = h + u: u is read twice, its gradient collects both
		out := NewVar(n, true)
		Add(tp, out, h, uv)
		return out
	}
	checkGrads(t, "SiLUMul+Add", build, []leaf{{"gate", g, gg}, {"up", u, gu}}, 2e-3)

	// out = silu(g + u) ⊙ u: Add's backward runs after SiLUMul's has
	// written to u's gradient, and must add to it
	build1 := func(tp *Tape) *Var {
		gv, uv := &Var{Data: g, Grad: gg}, &Var{Data: u, Grad: gu}
		a := NewVar(n, true)
		Add(tp, a, gv, uv)
		out := NewVar(n, true)
		SiLUMul(tp, out, a, uv)
		return out
	}
	checkGrads(t, "Add+SiLUMul", build1, []leaf{{"gate", g, gg}, {"up", u, gu}}, 2e-3)

	// an in-place residual: x += y
	x, gx := randVec(r, n, 1), make([]float32, n)
	build2 := func(tp *Tape) *Var {
		xv := &Var{Data: append([]float32(nil), x...), Grad: gx}
		h := NewVar(n, true)
		SiLUMul(tp, h, &Var{Data: g, Grad: gg}, &Var{Data: u, Grad: gu})
		Add(tp, xv, xv, h)
		return xv
	}
	checkGrads(t, "in-place Add", build2, []leaf{{"gate", g, gg}, {"x", x, gx}}, 2e-3)
}

func TestCrossEntropyOp(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	rows, vocab := 5, 11
	logits := randVec(r, rows*vocab, 2)
	targets := []int{3, -1, 0, 10, 3}
	var tp Tape
	l := &Var{Data: append([]float32(nil), logits...)}
	l.Grad = l.Data
	sum, n := CrossEntropy(&tp, l, targets, vocab, 0.5)
	if n != 4 {
		t.Fatalf("counted %d rows, want 4", n)
	}
	tp.Backward()
	var want float64
	for i, tg := range targets {
		if tg < 0 {
			continue
		}
		row := logits[i*vocab : (i+1)*vocab]
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v))
		}
		want += math.Log(s) - float64(row[tg])
		for j, v := range row {
			g := 0.5 * math.Exp(float64(v)) / s
			if j == tg {
				g -= 0.5
			}
			if d := math.Abs(float64(l.Grad[i*vocab+j]) - g); d > 1e-6 {
				t.Errorf("dlogits[%d][%d] = %g, want %g", i, j, l.Grad[i*vocab+j], g)
			}
		}
	}
	if math.Abs(sum-want) > 1e-4 {
		t.Errorf("loss sum %g, want %g", sum, want)
	}
	for j := range vocab {
		if l.Grad[vocab+j] != 0 {
			t.Fatalf("ignored row has gradient %g", l.Grad[vocab+j])
		}
	}
}

func TestRecomputeMatchesTape(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	nt, dim := 3, 16
	x := randVec(r, nt*dim, 1)
	w, gain := randVec(r, dim*dim, 0.3), randVec(r, dim, 1)
	run := func(recompute bool) ([]float32, []float32, []float32) {
		gw, gg := make([]float32, dim*dim), make([]float32, dim)
		xv := &Var{Data: x, Grad: make([]float32, nt*dim)}
		n, y, out := NewVar(nt*dim, true), NewVar(nt*dim, true), NewVar(nt*dim, true)
		block := func(tp *Tape) {
			if tp != nil {
				ZeroGrad(n, y)
			}
			RMSNorm(tp, n, xv, gain, gg, nt, dim, 1e-5)
			Linear(tp, y, n, Weight{DType: tensor.F32, Data: tensor.BytesOfF32(w), Out: dim, In: dim, Grad: gw}, nt)
			Add(tp, out, xv, y)
		}
		var tp Tape
		if recompute {
			Recompute(&tp, block)
		} else {
			block(&tp)
		}
		for i := range out.Grad {
			out.Grad[i] = float32(i%7) - 3
		}
		tp.Backward()
		return xv.Grad, gw, gg
	}
	a1, a2, a3 := run(false)
	b1, b2, b3 := run(true)
	for _, p := range [][2][]float32{{a1, b1}, {a2, b2}, {a3, b3}} {
		for i := range p[0] {
			if p[0][i] != p[1][i] {
				t.Fatalf("recomputed gradient differs at %d: %g vs %g", i, p[1][i], p[0][i])
			}
		}
	}
}

// MarkReady passes a gradient on when it is final: after the backward of
// every op recorded after its marks, once however many forward passes
// marked it; the gradient at that moment is the one Backward ends with.
func TestMarkReady(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	nt, in, out := 2, 8, 3
	x := randVec(r, nt*in, 1)
	w, gw := randVec(r, out*in, 0.3), make([]float32, out*in)
	g2 := make([]float32, 4) // marked, never written
	var tp Tape
	var seen [][]float32
	var atReady []float32
	tp.Ready = func(gs [][]float32) {
		seen = append(seen, gs...)
		for _, g := range gs {
			if &g[0] == &gw[0] {
				atReady = append([]float32(nil), g...)
			}
		}
	}
	for range 2 { // two forward passes through the same weight
		tp.MarkReady(gw, g2, nil)
		y := NewVar(nt*out, true)
		Linear(&tp, y, &Var{Data: x}, Weight{Name: "w", DType: tensor.F32, Data: tensor.BytesOfF32(w), Out: out, In: in, Grad: gw}, nt)
		tp.Record(func() {
			for i := range y.Grad {
				y.Grad[i] = 1
			}
		})
	}
	tp.Backward()
	if len(seen) != 2 {
		t.Fatalf("%d gradients passed on, want 2 (once each)", len(seen))
	}
	if atReady == nil || !slices.Equal(atReady, gw) {
		t.Errorf("the gradient passed on is not the final one")
	}
	// the counts start again with the next pass
	seen = nil
	tp.MarkReady(g2)
	tp.Backward()
	if len(seen) != 1 {
		t.Errorf("%d gradients passed on after a second Backward", len(seen))
	}
}
