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
// code is exercised in every build, not only with -tags purego.
func TestKernelsMatchGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	near := func(what string, got, want []float32, tol float64) {
		t.Helper()
		for i := range want {
			if d := math.Abs(float64(got[i] - want[i])); d > tol*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%s[%d] = %g, pure Go %g", what, i, got[i], want[i])
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

	for _, sz := range [][2]int{{1, 1}, {5, 7}, {9, 64}, {3, 97}, {17, 288}} {
		rows, cols := sz[0], sz[1]
		w, x := randVec(r, rows*cols), randVec(r, cols)
		y1, y2 := make([]float32, rows), make([]float32, rows)
		matVecF32Rows(y1, w, x, cols)
		matVecF32RowsGeneric(y2, w, x, cols)
		near("matVecF32", y1, y2, 1e-5)
		h := make([]uint16, rows*cols)
		for i, v := range w {
			h[i] = tensor.F32ToF16(v)
		}
		matVecF16Rows(y1, h, x, cols)
		matVecF16RowsGeneric(y2, h, x, cols)
		near("matVecF16", y1, y2, 1e-5)
		for i, v := range w {
			h[i] = tensor.F32ToBF16(v)
		}
		matVecBF16Rows(y1, h, x, cols)
		matVecBF16RowsGeneric(y2, h, x, cols)
		near("matVecBF16", y1, y2, 1e-5)

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
	}

	for _, nb := range []int{1, 2, 5, 128} {
		rows, cols := 6, nb*qk
		x := randVec(r, cols)
		xq1, xq2 := make([]byte, nb*q8Bytes), make([]byte, nb*q8Bytes)
		quantQ8_0Impl(xq1, x)
		quantQ8_0Generic(xq2, x)
		if string(xq1) != string(xq2) {
			t.Fatalf("quantQ8_0 nb=%d differs from pure Go", nb)
		}
		w8 := make([]byte, rows*nb*q8Bytes)
		w4 := make([]byte, rows*nb*q4Bytes)
		wf := randVec(r, rows*cols)
		tensor.QuantizeRowQ8_0(w8, wf)
		tensor.QuantizeRowQ4_0(w4, wf)
		y1, y2 := make([]float32, rows), make([]float32, rows)
		matVecQ8Rows(y1, w8, xq1)
		matVecQ8RowsGeneric(y2, w8, xq1)
		near("matVecQ8", y1, y2, 1e-5)
		aux := make([]int32, nb*q4AuxInts)
		q4Prep(aux, xq1)
		matVecQ4Rows(y1, w4, xq1, aux)
		matVecQ4RowsGeneric(y2, w4, xq1, aux)
		near("matVecQ4", y1, y2, 1e-5)
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
