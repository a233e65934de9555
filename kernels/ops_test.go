package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

var opSizes = []int{1, 7, 8, 33, 64, 4097}

func TestDotAxpyAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	if Dot(nil, nil) != 0 {
		t.Fatal("Dot of empty slices is not 0")
	}
	for _, n := range opSizes {
		a, b := randVec(r, n), randVec(r, n)
		var s, sa float64
		for i := range a {
			s += float64(a[i]) * float64(b[i])
			sa += math.Abs(float64(a[i]) * float64(b[i]))
		}
		closeTo(t, fmt.Sprintf("Dot n=%d", n), []float32{Dot(a, b)}, []float64{s}, []float64{sa}, 1e-5)

		y := randVec(r, n)
		want := make([]float64, n)
		for i := range y {
			want[i] = float64(y[i]) + 0.75*float64(a[i])
		}
		Axpy(0.75, a, y)
		closeTo(t, fmt.Sprintf("Axpy n=%d", n), y, want, nil, 1e-5)

		out := make([]float32, n)
		for i := range want {
			want[i] = float64(a[i]) + float64(b[i])
		}
		Add(out, a, b)
		closeTo(t, fmt.Sprintf("Add n=%d", n), out, want, nil, 1e-6)
		Add(a, a, b) // aliasing
		closeTo(t, fmt.Sprintf("Add aliased n=%d", n), a, want, nil, 1e-6)
	}
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range opSizes {
		x, w := randVec(r, n), randVec(r, n)
		const eps = 1e-5
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(n)+eps)
		want := make([]float64, n)
		for i := range x {
			want[i] = float64(x[i]) * inv * float64(w[i])
		}
		out := make([]float32, n)
		RMSNorm(out, x, w, eps)
		closeTo(t, fmt.Sprintf("RMSNorm n=%d", n), out, want, nil, 1e-5)
		RMSNorm(x, x, w, eps)
		closeTo(t, fmt.Sprintf("RMSNorm aliased n=%d", n), x, want, nil, 1e-5)
	}
}

func TestSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, n := range opSizes {
		x := randVec(r, n)
		for i := range x {
			x[i] *= 10
		}
		x[n/2] = 80 // large values must not overflow
		m := math.Inf(-1)
		for _, v := range x {
			m = math.Max(m, float64(v))
		}
		want := make([]float64, n)
		var sum float64
		for i, v := range x {
			want[i] = math.Exp(float64(v) - m)
			sum += want[i]
		}
		for i := range want {
			want[i] /= sum
		}
		Softmax(x)
		closeTo(t, fmt.Sprintf("Softmax n=%d", n), x, want, nil, 1e-6)
	}
}

func TestSiLUMul(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, n := range opSizes {
		g, u := randVec(r, n), randVec(r, n)
		for i := range g {
			g[i] *= 8 // reach the saturated ends of σ
		}
		want := make([]float64, n)
		for i := range g {
			gg := float64(g[i])
			want[i] = gg / (1 + math.Exp(-gg)) * float64(u[i])
		}
		out := make([]float32, n)
		SiLUMul(out, g, u)
		scale := make([]float64, n)
		for i := range scale {
			scale[i] = math.Abs(want[i]) + 1e-6
		}
		closeTo(t, fmt.Sprintf("SiLUMul n=%d", n), out, want, scale, 1e-5)
		SiLUMul(g, g, u)
		closeTo(t, fmt.Sprintf("SiLUMul aliased n=%d", n), g, want, scale, 1e-5)
	}
}

// refRoPE rotates in float64 with the angle llama2.c computes in float32.
func refRoPE(x []float32, nHeads, headDim, pos int, theta float32, half bool) []float64 {
	out := make([]float64, len(x))
	for h := range nHeads {
		for i := range headDim / 2 {
			freq := 1 / float32(math.Pow(float64(theta), float64(float32(2*i)/float32(headDim))))
			ang := float64(float32(pos) * freq)
			a, b := h*headDim+2*i, h*headDim+2*i+1
			if half {
				a, b = h*headDim+i, h*headDim+i+headDim/2
			}
			v0, v1 := float64(x[a]), float64(x[b])
			out[a] = v0*math.Cos(ang) - v1*math.Sin(ang)
			out[b] = v0*math.Sin(ang) + v1*math.Cos(ang)
		}
	}
	return out
}

func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, c := range []struct{ heads, dim, pos int }{{1, 2, 0}, {3, 8, 1}, {6, 48, 255}, {2, 128, 4095}, {1, 640, 7}} {
		for _, half := range []bool{false, true} {
			x := randVec(r, c.heads*c.dim)
			want := refRoPE(x, c.heads, c.dim, c.pos, 10000, half)
			if half {
				RoPEHalf(x, c.heads, c.dim, c.pos, 10000)
			} else {
				RoPEInterleaved(x, c.heads, c.dim, c.pos, 10000)
			}
			closeTo(t, fmt.Sprintf("RoPE half=%v %+v", half, c), x, want, nil, 1e-5)
		}
	}
}

// refAttention is causal GQA with a plain two-pass softmax in float64.
func refAttention(q, k, v []float32, nq, pos0, nHeads, nKVHeads, headDim int) []float64 {
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
					d += float64(q[i*qdim+h*headDim+e]) * float64(k[j*kvdim+kh*headDim+e])
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
					out[i*qdim+h*headDim+e] += s[j] / sum * float64(v[j*kvdim+kh*headDim+e])
				}
			}
		}
	}
	return out
}

func TestAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	cases := []struct{ nq, pos0, heads, kv, dim int }{
		{1, 0, 1, 1, 1}, {1, 0, 4, 2, 8}, {5, 0, 4, 2, 8}, {1, 70, 4, 4, 16},
		{3, 63, 6, 2, 7}, {130, 0, 2, 1, 33}, {9, 200, 8, 2, 64},
		{40, 10, 4, 4, 16}, {70, 5, 8, 1, 8}, {17, 100, 2, 2, 24},
	}
	withThreads(t, func(t *testing.T) {
		for _, c := range cases {
			n := c.pos0 + c.nq
			q := randVec(r, c.nq*c.heads*c.dim)
			k, v := randVec(r, n*c.kv*c.dim), randVec(r, n*c.kv*c.dim)
			for i := range q {
				q[i] *= 2 // sharpen the softmax
			}
			want := refAttention(q, k, v, c.nq, c.pos0, c.heads, c.kv, c.dim)
			out := make([]float32, len(q))
			Attention(out, q, k, v, c.nq, c.pos0, c.heads, c.kv, c.dim)
			closeTo(t, fmt.Sprintf("threads=%d Attention %+v", Threads(), c), out, want, nil, 2e-5)
			Attention(q, q, k, v, c.nq, c.pos0, c.heads, c.kv, c.dim)
			closeTo(t, fmt.Sprintf("threads=%d Attention aliased %+v", Threads(), c), q, want, nil, 2e-5)
		}
	})
}

// TestAttentionF16 checks attention over a half-precision cache against the
// float64 reference on the keys and values as stored (rounded to F16), and
// that it is bit-identical to Attention on the same rounded values.
func TestAttentionF16(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	cases := []struct{ nq, pos0, heads, kv, dim int }{
		{1, 0, 1, 1, 1}, {1, 0, 4, 2, 8}, {5, 0, 4, 2, 8}, {1, 70, 4, 4, 16},
		{3, 63, 6, 2, 7}, {130, 0, 2, 1, 33}, {9, 200, 8, 2, 64}, {70, 5, 8, 1, 8},
	}
	withThreads(t, func(t *testing.T) {
		for _, c := range cases {
			n := c.pos0 + c.nq
			q := randVec(r, c.nq*c.heads*c.dim)
			for i := range q {
				q[i] *= 2
			}
			k16, v16 := make([]uint16, n*c.kv*c.dim), make([]uint16, n*c.kv*c.dim)
			k, v := randVec(r, len(k16)), randVec(r, len(v16))
			for i := range k {
				k16[i], v16[i] = tensor.F32ToF16(k[i]), tensor.F32ToF16(v[i])
				k[i], v[i] = tensor.F16ToF32(k16[i]), tensor.F16ToF32(v16[i])
			}
			want := refAttention(q, k, v, c.nq, c.pos0, c.heads, c.kv, c.dim)
			out := make([]float32, len(q))
			AttentionF16(out, q, k16, v16, c.nq, c.pos0, c.heads, c.kv, c.dim)
			name := fmt.Sprintf("threads=%d AttentionF16 %+v", Threads(), c)
			closeTo(t, name, out, want, nil, 2e-5)
			same := make([]float32, len(q))
			Attention(same, q, k, v, c.nq, c.pos0, c.heads, c.kv, c.dim)
			for i := range out {
				if math.Float32bits(out[i]) != math.Float32bits(same[i]) {
					t.Fatalf("%s: [%d] = %g, Attention on the rounded values gives %g", name, i, out[i], same[i])
				}
			}
			AttentionF16(q, q, k16, v16, c.nq, c.pos0, c.heads, c.kv, c.dim)
			closeTo(t, name+" aliased", q, want, nil, 2e-5)
		}
	})
}

// TestAttentionMemoryBounded: the memory attention takes does not grow with
// the context, as it never holds more than one block of scores per head
// (a full score row at 16384 positions would be 64 KiB per head).
func TestAttentionMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const heads, kv, dim = 4, 2, 16
	r := rand.New(rand.NewPCG(23, 24))
	alloc := func(n int, f16 bool) uint64 {
		q := randVec(r, heads*dim)
		k, v := randVec(r, n*kv*dim), randVec(r, n*kv*dim)
		k16, v16 := make([]uint16, len(k)), make([]uint16, len(v))
		out := make([]float32, len(q))
		run := func() {
			if f16 {
				AttentionF16(out, q, k16, v16, 1, n-1, heads, kv, dim)
			} else {
				Attention(out, q, k, v, 1, n-1, heads, kv, dim)
			}
		}
		run() // warm the worker pool
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			run()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / 10
	}
	for _, f16 := range []bool{false, true} {
		small, large := alloc(2048, f16), alloc(16384, f16)
		t.Logf("f16=%v: %d bytes per call at 2048 positions, %d at 16384", f16, small, large)
		if large > small+1024 {
			t.Errorf("f16=%v: attention allocates %d bytes per call at 16384 positions, %d at 2048: memory grows with the context", f16, large, small)
		}
	}
}
