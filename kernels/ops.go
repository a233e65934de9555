package kernels

import (
	"fmt"
	"math"
)

func checkSame(fn string, n int, s ...[]float32) {
	for _, x := range s {
		if len(x) < n {
			panic(fmt.Sprintf("kernels.%s: slice of %d elements, need %d", fn, len(x), n))
		}
	}
}

// Dot returns Σ a[i]·b[i] over len(a) elements (b must be at least as long).
func Dot(a, b []float32) float32 {
	checkSame("Dot", len(a), b)
	return dotImpl(a, b[:len(a)])
}

// Axpy computes y[i] += alpha·x[i] over len(x) elements.
func Axpy(alpha float32, x, y []float32) {
	checkSame("Axpy", len(x), y)
	axpyImpl(alpha, x, y[:len(x)])
}

// RMSNorm computes out = x / sqrt(mean(x²) + eps) · w over len(x) elements.
// out may alias x.
func RMSNorm(out, x, w []float32, eps float32) {
	n := len(x)
	checkSame("RMSNorm", n, out, w)
	if n == 0 {
		return
	}
	ss := sumSqImpl(x)/float32(n) + eps
	scaleMulImpl(out[:n], x, w[:n], 1/float32(math.Sqrt(float64(ss))))
}

// Softmax replaces x by exp(x - max x) / Σ exp(x - max x).
func Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	sum := expSubSumImpl(x, maxImpl(x))
	scaleImpl(x, 1/sum)
}

// SiLUMul computes out[i] = gate[i]·σ(gate[i])·up[i] over len(gate)
// elements, σ the logistic function. out may alias gate or up.
func SiLUMul(out, gate, up []float32) {
	n := len(gate)
	checkSame("SiLUMul", n, out, up)
	siluMulImpl(out[:n], gate, up[:n])
}

// Add computes out[i] = a[i] + b[i] over len(a) elements. out may alias a or b.
func Add(out, a, b []float32) {
	n := len(a)
	checkSame("Add", n, out, b)
	addImpl(out[:n], a, b[:n])
}

// F32ToF16 rounds src to IEEE half floats (to nearest even, as F16C's
// VCVTPS2PH does) into dst, which is at least as long as src.
func F32ToF16(dst []uint16, src []float32) {
	if len(dst) < len(src) {
		panic(fmt.Sprintf("kernels.F32ToF16: %d halves for %d values", len(dst), len(src)))
	}
	toF16Impl(dst[:len(src)], src)
}

// F16ToF32 widens the half floats of src into dst, which is at least as
// long as src.
func F16ToF32(dst []float32, src []uint16) {
	checkSame("F16ToF32", len(src), dst)
	convF16(dst[:len(src)], src)
}
