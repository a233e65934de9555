package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// Backward kernels are checked against central finite differences of a
// float64 reference forward: for a loss L = Σ out ⊙ R with a fixed random R,
// the kernel (fed dout = R) must give dL/dinput. The reference is float64
// throughout, so the difference quotient with h = 1e-4 is accurate to about
// 1e-8 and the tolerance (relative to the largest gradient) covers the
// float32 arithmetic of the kernel.

// fdGrad returns (L(x+h·e_i) − L(x−h·e_i)) / 2h for every i, perturbing x in
// place (and restoring it).
func fdGrad(x []float64, loss func() float64) []float64 {
	const h = 1e-4
	g := make([]float64, len(x))
	for i := range x {
		v := x[i]
		x[i] = v + h
		lp := loss()
		x[i] = v - h
		lm := loss()
		x[i] = v
		g[i] = (lp - lm) / (2 * h)
	}
	return g
}

// fdSample is fdGrad at up to n coordinates of x chosen at random (all of
// them when x is shorter); it returns the coordinates and the quotients.
func fdSample(r *rand.Rand, x []float64, loss func() float64, n int) ([]int, []float64) {
	idx := r.Perm(len(x))
	if len(idx) > n {
		idx = idx[:n]
	}
	const h = 1e-4
	g := make([]float64, len(idx))
	for k, i := range idx {
		v := x[i]
		x[i] = v + h
		lp := loss()
		x[i] = v - h
		lm := loss()
		x[i] = v
		g[k] = (lp - lm) / (2 * h)
	}
	return idx, g
}

func pick(x []float32, idx []int) []float32 {
	y := make([]float32, len(idx))
	for k, i := range idx {
		y[k] = x[i]
	}
	return y
}

func to64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func dot64(a []float64, b []float32) float64 {
	var s float64
	for i, v := range a {
		s += v * float64(b[i])
	}
	return s
}

// gradClose compares a kernel gradient with a finite-difference one,
// relative to the largest finite-difference magnitude.
func gradClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	var s float64
	for _, v := range want {
		s = math.Max(s, math.Abs(v))
	}
	closeTo(t, what, got, want, constScale(len(want), math.Max(s, 1e-3)), tol)
}

func constScale(n int, s float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = s
	}
	return v
}

func TestMatMulBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0} {
		for _, c := range []struct{ nt, rows, cols int }{{1, 3, 32}, {5, 7, 64}, {9, 300, 32}} {
			w32 := randVec(r, c.rows*c.cols)
			rb, _ := dt.RowBytes(c.cols)
			w := make([]byte, rb*c.rows)
			if err := tensor.Quantize(dt, w, w32); err != nil {
				t.Fatal(err)
			}
			if err := tensor.Dequantize(dt, w32, w); err != nil { // the weight as the kernel sees it
				t.Fatal(err)
			}
			x := to64(randVec(r, c.nt*c.cols))
			R := randVec(r, c.nt*c.rows)
			loss := func() float64 {
				var l float64
				for i := range c.nt {
					for o := range c.rows {
						var y float64
						for k := range c.cols {
							y += x[i*c.cols+k] * float64(w32[o*c.cols+k])
						}
						l += y * float64(R[i*c.rows+o])
					}
				}
				return l
			}
			want := fdGrad(x, loss)
			got := randVec(r, len(x)) // accumulates onto what is there
			for i := range want {
				want[i] += float64(got[i])
			}
			withThreads(t, func(t *testing.T) {
				g := append([]float32(nil), got...)
				MatMulBackward(dt, w, c.rows, c.cols, R, c.nt, g)
				gradClose(t, fmt.Sprintf("MatMulBackward %s %+v", dt, c), g, want, 1e-5)
			})
		}
	}
}

func TestRMSNormBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	const eps = 1e-5
	for _, c := range []struct{ rows, dim int }{{1, 1}, {1, 8}, {3, 33}, {37, 16}} {
		x, w := to64(randVec(r, c.rows*c.dim)), to64(randVec(r, c.dim))
		R := randVec(r, c.rows*c.dim)
		loss := func() float64 {
			var l float64
			for i := range c.rows {
				xr := x[i*c.dim : (i+1)*c.dim]
				var ss float64
				for _, v := range xr {
					ss += v * v
				}
				s := 1 / math.Sqrt(ss/float64(c.dim)+eps)
				for j, v := range xr {
					l += v * s * w[j] * float64(R[i*c.dim+j])
				}
			}
			return l
		}
		wantX, wantW := fdGrad(x, loss), fdGrad(w, loss)
		withThreads(t, func(t *testing.T) {
			dx, dw := make([]float32, len(x)), make([]float32, len(w))
			RMSNormBackward(dx, dw, R, to32(x), to32(w), c.rows, c.dim, eps)
			gradClose(t, fmt.Sprintf("RMSNormBackward dx %+v", c), dx, wantX, 1e-4)
			gradClose(t, fmt.Sprintf("RMSNormBackward dw %+v", c), dw, wantW, 1e-4)
			dx2 := make([]float32, len(x))
			RMSNormBackward(dx2, nil, R, to32(x), to32(w), c.rows, c.dim, eps)
			gradClose(t, fmt.Sprintf("RMSNormBackward dx, frozen gain %+v", c), dx2, wantX, 1e-4)
		})
	}
}

func TestRMSNormBackwardDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	rows, dim := 100, 64
	x, w, dy := randVec(r, rows*dim), randVec(r, dim), randVec(r, rows*dim)
	var first []float32
	for _, n := range []int{1, 2, 3, 4} {
		SetThreads(n)
		dx, dw := make([]float32, rows*dim), make([]float32, dim)
		RMSNormBackward(dx, dw, dy, x, w, rows, dim, 1e-5)
		if first == nil {
			first = dw
			continue
		}
		for i := range dw {
			if dw[i] != first[i] {
				t.Fatalf("threads=%d: dw[%d] = %g, with one thread %g: the reduction depends on the thread count", n, i, dw[i], first[i])
			}
		}
	}
	SetThreads(0)
}

func TestRoPEBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 38))
	for _, c := range []struct{ heads, dim, pos int }{{1, 2, 0}, {3, 8, 5}, {2, 48, 255}} {
		for _, half := range []bool{false, true} {
			x := to64(randVec(r, c.heads*c.dim))
			R := randVec(r, len(x))
			loss := func() float64 {
				return dot64(refRoPE(to32(x), c.heads, c.dim, c.pos, 10000, half), R)
			}
			// refRoPE takes float32 input: perturb in float64 but with a step
			// float32 represents exactly around these magnitudes
			want := make([]float64, len(x))
			for i := range x {
				v := x[i]
				hp, hm := float64(float32(v+1e-2)), float64(float32(v-1e-2))
				x[i] = hp
				lp := loss()
				x[i] = hm
				lm := loss()
				x[i] = v
				want[i] = (lp - lm) / (hp - hm)
			}
			g := append([]float32(nil), R...)
			if half {
				RoPEHalfBackward(g, c.heads, c.dim, c.pos, 10000)
			} else {
				RoPEInterleavedBackward(g, c.heads, c.dim, c.pos, 10000)
			}
			gradClose(t, fmt.Sprintf("RoPE backward half=%v %+v", half, c), g, want, 1e-5)
		}
	}
}

// refAttention64 is causal GQA attention in float64 on float64 inputs.
func refAttention64(q, k, v []float64, nq, pos0, nHeads, nKVHeads, headDim int) []float64 {
	qdim, kvdim := nHeads*headDim, nKVHeads*headDim
	out := make([]float64, nq*qdim)
	for i := range nq {
		for h := range nHeads {
			kh := h / (nHeads / nKVHeads)
			n := pos0 + i + 1
			s := make([]float64, n)
			m := math.Inf(-1)
			for j := range n {
				var d float64
				for e := range headDim {
					d += q[i*qdim+h*headDim+e] * k[j*kvdim+kh*headDim+e]
				}
				s[j] = d / math.Sqrt(float64(headDim))
				m = math.Max(m, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - m)
				sum += s[j]
			}
			for j := range s {
				for e := range headDim {
					out[i*qdim+h*headDim+e] += s[j] / sum * v[j*kvdim+kh*headDim+e]
				}
			}
		}
	}
	return out
}

func TestAttentionBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(39, 40))
	cases := []struct{ nq, pos0, heads, kv, dim int }{
		{1, 0, 1, 1, 2}, {5, 0, 4, 2, 8}, {3, 4, 2, 2, 6}, {70, 0, 2, 1, 8}, {66, 3, 4, 4, 16},
	}
	if testing.Short() {
		cases = cases[:3]
	}
	for _, c := range cases {
		n := c.pos0 + c.nq
		q := to64(randVec(r, c.nq*c.heads*c.dim))
		k, v := to64(randVec(r, n*c.kv*c.dim)), to64(randVec(r, n*c.kv*c.dim))
		R := randVec(r, len(q))
		loss := func() float64 {
			return dot64(refAttention64(q, k, v, c.nq, c.pos0, c.heads, c.kv, c.dim), R)
		}
		// the long cases are checked at a sample of coordinates
		iq, wq := fdSample(r, q, loss, 60)
		ik, wk := fdSample(r, k, loss, 60)
		iv, wv := fdSample(r, v, loss, 60)
		withThreads(t, func(t *testing.T) {
			dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
			AttentionBackward(dq, dk, dv, R, to32(q), to32(k), to32(v), c.nq, c.pos0, c.heads, c.kv, c.dim)
			gradClose(t, fmt.Sprintf("AttentionBackward dq %+v", c), pick(dq, iq), wq, 1e-4)
			gradClose(t, fmt.Sprintf("AttentionBackward dk %+v", c), pick(dk, ik), wk, 1e-4)
			gradClose(t, fmt.Sprintf("AttentionBackward dv %+v", c), pick(dv, iv), wv, 1e-4)
		})
	}
}

func TestSiLUMulBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, n := range []int{1, 7, 8, 33, 600} {
		g, u := to64(randVec(r, n)), to64(randVec(r, n))
		for i := range g {
			g[i] *= 4 // reach the tails of σ
		}
		R := randVec(r, n)
		loss := func() float64 {
			var l float64
			for i := range g {
				l += g[i] / (1 + math.Exp(-g[i])) * u[i] * float64(R[i])
			}
			return l
		}
		wg, wu := fdGrad(g, loss), fdGrad(u, loss)
		dg, du := make([]float32, n), make([]float32, n)
		SiLUMulBackward(dg, du, R, to32(g), to32(u))
		gradClose(t, fmt.Sprintf("SiLUMulBackward dgate n=%d", n), dg, wg, 1e-5)
		gradClose(t, fmt.Sprintf("SiLUMulBackward dup n=%d", n), du, wu, 1e-5)
	}
	// far tails: no NaN or Inf
	dg, du := make([]float32, 2), make([]float32, 2)
	SiLUMulBackward(dg, du, []float32{1, 1}, []float32{-200, 200}, []float32{1, 1})
	if dg[0] != 0 || math.Abs(float64(dg[1])-1) > 1e-6 || du[0] != 0 || du[1] != 200 {
		t.Errorf("tails: dgate %v dup %v, want [0 1] [0 200]", dg, du)
	}
}

func TestCrossEntropy(t *testing.T) {
	r := rand.New(rand.NewPCG(43, 44))
	for _, c := range []struct{ rows, vocab int }{{1, 1}, {3, 5}, {6, 37}, {4, 1000}} {
		logits := to64(randVec(r, c.rows*c.vocab))
		for i := range logits {
			logits[i] *= 3
		}
		targets := make([]int, c.rows)
		for i := range targets {
			targets[i] = r.IntN(c.vocab)
		}
		if c.rows > 2 {
			targets[1] = -1 // ignored
		}
		const scale = 0.7
		loss := func() float64 {
			var l float64
			for i, tg := range targets {
				if tg < 0 {
					continue
				}
				row := logits[i*c.vocab : (i+1)*c.vocab]
				m := math.Inf(-1)
				for _, v := range row {
					m = math.Max(m, v)
				}
				var s float64
				for _, v := range row {
					s += math.Exp(v - m)
				}
				l += math.Log(s) + m - row[tg]
			}
			return scale * l
		}
		idx, want := fdSample(r, logits, loss, 200)
		wantLoss := loss() / scale
		withThreads(t, func(t *testing.T) {
			l := to32(logits)
			losses := make([]float32, c.rows)
			SoftmaxCrossEntropy(losses, l, targets, c.vocab)
			var sum float64
			for i, v := range losses {
				sum += float64(v)
				if targets[i] < 0 && v != 0 {
					t.Errorf("ignored row %d has loss %g", i, v)
				}
			}
			if math.Abs(sum-wantLoss) > 1e-5*math.Max(1, wantLoss) {
				t.Errorf("%+v: loss %g, want %g", c, sum, wantLoss)
			}
			CrossEntropyBackward(l, l, targets, c.vocab, scale) // in place
			gradClose(t, fmt.Sprintf("CrossEntropyBackward %+v", c), pick(l, idx), want, 1e-5)
		})
	}
}

func TestCrossEntropyExtreme(t *testing.T) {
	// a logit far below the others: the loss must stay finite and exact
	logits := []float32{0, 200, -200}
	losses := make([]float32, 1)
	SoftmaxCrossEntropy(losses, logits, []int{2}, 3)
	if math.Abs(float64(losses[0])-400) > 1e-3 {
		t.Errorf("loss %g, want 400", losses[0])
	}
}

// BenchmarkAttentionBackward is one sequence of 256 positions in the head
// shapes of stories260K (8 heads of 8, 4 KV heads) and stories15M (6 of 48).
func BenchmarkAttentionBackward(b *testing.B) {
	for _, c := range []struct {
		name           string
		heads, kv, dim int
	}{{"260K", 8, 4, 8}, {"15M", 6, 6, 48}} {
		b.Run(c.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			const n = 256
			q, do := randVec(r, n*c.heads*c.dim), randVec(r, n*c.heads*c.dim)
			k, v := randVec(r, n*c.kv*c.dim), randVec(r, n*c.kv*c.dim)
			dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
			for range b.N {
				AttentionBackward(dq, dk, dv, do, q, k, v, n, 0, c.heads, c.kv, c.dim)
			}
			// the forward's 2 FLOP per multiply-add of QKᵀ and PV over the causal half, times two for backward
			flop := 2.0 * 2 * float64(n*(n+1)/2*c.heads*c.dim) * 2
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// The cache rotates exactly as the per-call kernels, forward and backward.
func TestRoPECache(t *testing.T) {
	r := rand.New(rand.NewPCG(45, 46))
	for _, hd := range []int{2, 8, 48, 128} {
		rc := NewRoPECache(hd, 10000)
		rc.Grow(300)
		if rc.Len() != 300 || !rc.Matches(hd, 10000) || rc.Matches(hd, 500000) {
			t.Fatalf("hd %d: Len %d", hd, rc.Len())
		}
		for _, pos := range []int{0, 1, 7, 299} {
			for _, half := range []bool{false, true} {
				for _, inverse := range []bool{false, true} {
					x := randVec(r, 3*hd)
					want := append([]float32(nil), x...)
					switch {
					case half && inverse:
						RoPEHalfBackward(want, 3, hd, pos, 10000)
					case half:
						RoPEHalf(want, 3, hd, pos, 10000)
					case inverse:
						RoPEInterleavedBackward(want, 3, hd, pos, 10000)
					default:
						RoPEInterleaved(want, 3, hd, pos, 10000)
					}
					rc.Rotate(x, 3, pos, half, inverse)
					for i := range x {
						if x[i] != want[i] {
							t.Fatalf("hd %d pos %d half %v inverse %v: element %d = %g, the kernel gives %g", hd, pos, half, inverse, i, x[i], want[i])
						}
					}
				}
			}
		}
	}
}
