package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// TestKernelsMatchGeneric checks each dispatched kernel (assembly where the
// CPU has it) against its pure-Go twin on awkward lengths, so the pure-Go
// code is exercised in every build, not only with -tags purego. It runs
// once for every CPU path this CPU runs (purego, avx2, avx512), whatever
// path HERD_CPU chose.
func TestKernelsMatchGeneric(t *testing.T) {
	forEachPath(t, kernelsMatchGeneric)
}

func kernelsMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	near := func(what string, got, want []float32, tol float64) {
		t.Helper()
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) {
				t.Errorf("%s[%d] = %g, pure Go %g", what, i, got[i], want[i])
				return // the first difference of each check, every check run
			}
		}
	}
	for _, n := range []int{1, 7, 8, 31, 33, 100, 1023} {
		a, b := randVec(r, n), randVec(r, n)
		near(fmt.Sprintf("dot n=%d", n), []float32{dotImpl(a, b)}, []float32{dotGeneric(a, b)}, 1e-5)
		near(fmt.Sprintf("sumSq n=%d", n), []float32{sumSqImpl(a)}, []float32{sumSqGeneric(a)}, 1e-5)
		near(fmt.Sprintf("max n=%d", n), []float32{maxImpl(a)}, []float32{maxGeneric(a)}, 0)

		y1, y2 := append([]float32(nil), b...), append([]float32(nil), b...)
		axpyImpl(0.3, a, y1)
		axpyGeneric(0.3, a, y2)
		near("axpy", y1, y2, 1e-6)
		scaleMulImpl(y1, a, b, 1.7)
		scaleMulGeneric(y2, a, b, 1.7)
		near("scaleMul", y1, y2, 1e-6)
		addImpl(y1, a, b)
		addGeneric(y2, a, b)
		near("add", y1, y2, 0)
		scaleImpl(y1, 0.9)
		scaleGeneric(y2, 0.9)
		near("scale", y1, y2, 0)
		siluMulImpl(y1, a, b)
		siluMulGeneric(y2, a, b)
		near("siluMul", y1, y2, 1e-6)
		copy(y1, a)
		copy(y2, a)
		s1, s2 := expSubSumImpl(y1, 1), expSubSumGeneric(y2, 1)
		near("expSubSum", y1, y2, 1e-6)
		near("expSubSum sum", []float32{s1}, []float32{s2}, 1e-5)

		h := make([]uint16, n)
		for i := range h {
			h[i] = uint16(r.Uint32())&0x3fff | 0x2000 // finite halves and bfloat16s
		}
		convF16(y1, h)
		convF16Generic(y2, h)
		near("convF16", y1, y2, 0)
		convBF16(y1, h)
		convBF16Generic(y2, h)
		near("convBF16", y1, y2, 0)
	}

	// float32 to half: rounding to nearest even, overflow, subnormals,
	// zeros and infinities, against tensor.F32ToF16
	for _, n := range []int{1, 7, 8, 33, 100} {
		x := randVec(r, n)
		special := []float32{65504, 65520, 65519.99, 1e9, -1e9, 5.96e-8, 2.98e-8, 2.99e-8, 1e-10, 0, float32(math.Copysign(0, -1)),
			float32(math.Inf(1)), float32(math.Inf(-1)), 1 + 1.0/2048, 1 + 3.0/2048, 6.1e-5, -3.1e-5}
		for i := range x {
			if i%3 == 0 {
				x[i] = special[(i/3)%len(special)]
			} else {
				x[i] *= float32(math.Pow(2, float64(i%40-20)))
			}
		}
		h1, h2 := make([]uint16, n), make([]uint16, n)
		toF16Impl(h1, x)
		toF16Generic(h2, x)
		for i := range h1 {
			if h1[i] != h2[i] {
				t.Errorf("toF16 n=%d: %g gives %#04x, tensor.F32ToF16 %#04x", n, x[i], h1[i], h2[i])
				break
			}
		}
	}

	for _, sz := range [][2]int{{1, 1}, {5, 7}, {9, 64}, {3, 97}, {17, 288}} {
		rows, cols := sz[0], sz[1]
		x := randVec(r, cols)
		y1, y2 := make([]float32, rows), make([]float32, rows)
		// Attention inner loops: keys of cols floats at a stride.
		stride := cols + 3
		kv := randVec(r, rows*stride)
		scoresImpl(y1, x, kv, stride, 0.5)
		scoresGeneric(y2, x, kv, stride, 0.5)
		near("scores", y1, y2, 1e-5)
		acc1, acc2 := randVec(r, cols), make([]float32, cols)
		copy(acc2, acc1)
		accumVImpl(acc1, kv, stride, y1)
		accumVGeneric(acc2, kv, stride, y1)
		near("accumV", acc1, acc2, 1e-5)
		// the same over half-float keys and values: bit-identical to the
		// float32 kernels on the widened values
		kv16, kvw := make([]uint16, len(kv)), make([]float32, len(kv))
		for i, x := range kv {
			kv16[i] = tensor.F32ToF16(x)
			kvw[i] = tensor.F16ToF32(kv16[i])
		}
		scoresF16Impl(y1, x, kv16, stride, 0.5, make([]float32, cols))
		scoresImpl(y2, x, kvw, stride, 0.5)
		near("scoresF16", y1, y2, 0)
		scoresF16Generic(y1, x, kv16, stride, 0.5, make([]float32, cols))
		scoresGeneric(y2, x, kvw, stride, 0.5)
		near("scoresF16Generic", y1, y2, 0)
		copy(acc2, acc1)
		accumVF16Impl(acc1, kv16, stride, y1, make([]float32, cols))
		accumVImpl(acc2, kvw, stride, y1)
		near("accumVF16", acc1, acc2, 0)
		accumVF16Generic(acc1, kv16, stride, y1, make([]float32, cols))
		accumVGeneric(acc2, kvw, stride, y1)
		near("accumVF16Generic", acc1, acc2, 0)
	}

	for _, nb := range []int{1, 2, 5, 128} {
		x := randVec(r, nb*qk)
		xq1, xq2 := make([]byte, nb*q8Bytes), make([]byte, nb*q8Bytes)
		quantQ8_0Impl(xq1, x)
		quantQ8_0Generic(xq2, x)
		if string(xq1) != string(xq2) {
			t.Errorf("quantQ8_0 nb=%d differs from pure Go", nb)
		}
	}

	// Q8_K activations: byte for byte tensor's reference, including an
	// all-zero block, ties of the largest magnitude in both signs, and the
	// largest value last.
	xk := randVec(r, 5*qkk)
	clear(xk[qkk : 2*qkk])
	xk[2*qkk+7], xk[2*qkk+9] = -9, 9
	xk[3*qkk+200], xk[3*qkk+3] = 9, -9
	xk[5*qkk-1] = 20
	k1, k2 := make([]byte, 5*q8kBytes), make([]byte, 5*q8kBytes)
	quantQ8_KImpl(k1, xk)
	tensor.QuantizeRowQ8_K(k2, xk)
	if string(k1) != string(k2) {
		for b := range 5 {
			if string(k1[b*q8kBytes:(b+1)*q8kBytes]) != string(k2[b*q8kBytes:(b+1)*q8kBytes]) {
				t.Errorf("quantQ8_K block %d differs from tensor.QuantizeRowQ8_K", b)
			}
		}
	}

	// The quantized kernels, every activation-row count, awkward row counts.
	for _, dt := range weightTypes {
		f := formats[dt]
		if f == nil {
			continue
		}
		t.Run(dt.String(), func(t *testing.T) { // one subtest per weight type: every type is checked
			quantKernelsMatch(t, r, dt, f)
		})
	}

	// The float MatMul kernels (where the CPU has them) against the GEMM
	// every build has, on awkward shapes: odd rows, columns not a multiple
	// of 8, one to seven rows of X.
	if dots := floatDots; dots != nil {
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
			for _, sz := range [][2]int{{1, 1}, {5, 7}, {9, 64}, {3, 97}, {17, 288}, {66, 1031}} {
				rows, cols := sz[0], sz[1]
				w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
				for _, nt := range []int{1, 3, 7} {
					x := randVec(r, nt*cols)
					y1, y2 := make([]float32, nt*rows), make([]float32, nt*rows)
					MatMul(dt, w, rows, cols, x, nt, y1)
					floatDots = nil
					MatMul(dt, w, rows, cols, x, nt, y2)
					floatDots = dots
					_, scale := refMatMul(t, dt, deq, rows, cols, x, nt)
					for i := range y1 {
						if d := math.Abs(float64(y1[i] - y2[i])); d > 1e-5*scale[i] {
							t.Errorf("%s %dx%d nt=%d: y[%d] = %g, GEMM %g", dt, rows, cols, nt, i, y1[i], y2[i])
						}
					}
				}
			}
		}
	}

	// GEMM micro-kernel and the transposing panel packer.
	for _, k := range []int{1, 3, 8, 13, 256} {
		a, b := randVec(r, k*mr), randVec(r, k*nr)
		c1, c2 := randVec(r, 3*nr*mr), make([]float32, 3*nr*mr)
		copy(c2, c1)
		microKernel(k, a, b, c1, 3*nr, true)
		microKernelGeneric(k, a, b, c2, 3*nr, true)
		near("microKernel", c1, c2, 1e-5)

		src := randVec(r, nr*(k+5))
		B := operand{f32: src, rs: 1, cs: k + 5}
		p1, p2 := make([]float32, k*nr), make([]float32, k*nr)
		packNT16(p1, B, 2, k)
		packNT16Generic(p2, B, 2, k)
		near("packNT16", p1, p2, 0)
	}
}

// quantKernelsMatch: the quantized kernel of dt against its pure-Go twin,
// every activation-row count, awkward row counts.
func quantKernelsMatch(t *testing.T, r *rand.Rand, dt tensor.DType, f *qformat) {
	for _, nb := range []int{1, 3, 16} {
		rows, cols := 7, nb*f.block
		w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
		xs := randVec(r, 4*cols)
		a, release := quantizeActs(f, xs, cols, 4)
		_, scale := refMatMul(t, dt, deq, rows, cols, xs, 4)
		for nt := 1; nt <= 4; nt++ {
			ystride := rows + 3
			y1, y2 := make([]float32, nt*ystride), make([]float32, nt*ystride)
			f.kern(y1, ystride, w, rows, a.xq, a.xrow, a.aux, a.arow, nb, nt)
			f.gen(y2, ystride, w, rows, a.xq, a.xrow, a.aux, a.arow, nb, nt)
			for i := range nt * rows {
				k := i/rows*ystride + i%rows
				if d := math.Abs(float64(y1[k] - y2[k])); d > 1e-5*scale[i] {
					t.Errorf("%s nb=%d nt=%d: y[%d][%d] = %g, pure Go %g", dt, nb, nt, i/rows, i%rows, y1[k], y2[k])
					break
				}
			}
		}
		release()
	}
}
