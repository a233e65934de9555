package kernels

import "github.com/herd-llm/herd/tensor"

// The implementations the exported kernels call. They start as the pure-Go
// versions; init in cpu.go installs the kernels of the CPU path chosen at
// start (see CPUPath): on amd64 without the purego tag, assembly when the
// CPU has AVX2, FMA and F16C, and AVX-512 kernels over some of those.
var (
	dotImpl       = dotGeneric
	axpyImpl      = axpyGeneric
	sumSqImpl     = sumSqGeneric
	scaleMulImpl  = scaleMulGeneric
	scaleImpl     = scaleGeneric
	addImpl       = addGeneric
	maxImpl       = maxGeneric
	expSubSumImpl = expSubSumGeneric
	siluMulImpl   = siluMulGeneric
	convF16       = convF16Generic
	convBF16      = convBF16Generic
	toF16Impl     = toF16Generic
	packNT16      = packNT16Generic
	scoresImpl    = scoresGeneric
	accumVImpl    = accumVGeneric
	scoresF16Impl = scoresF16Generic
	accumVF16Impl = accumVF16Generic
	quantQ8_0Impl = quantQ8_0Generic
)

// useGeneric installs the pure-Go implementation of every kernel: the
// purego path, and the base every other path installs its kernels over.
func useGeneric() {
	dotImpl = dotGeneric
	axpyImpl = axpyGeneric
	sumSqImpl = sumSqGeneric
	scaleMulImpl = scaleMulGeneric
	scaleImpl = scaleGeneric
	addImpl = addGeneric
	maxImpl = maxGeneric
	expSubSumImpl = expSubSumGeneric
	siluMulImpl = siluMulGeneric
	convF16 = convF16Generic
	convBF16 = convBF16Generic
	toF16Impl = toF16Generic
	packNT16 = packNT16Generic
	scoresImpl = scoresGeneric
	accumVImpl = accumVGeneric
	scoresF16Impl = scoresF16Generic
	accumVF16Impl = accumVF16Generic
	quantQ8_0Impl = quantQ8_0Generic
	quantQ8_KImpl = tensor.QuantizeRowQ8_K
	microKernel = microKernelGeneric
	floatDots = nil
	f16x32K = nil
	for _, f := range formats {
		f.kern = f.gen
		f.tile = nil // the pure-Go kernels take four rows at a time
		f.asmPacked = false
	}
}

func packNT16Generic(dst []float32, B operand, off, kk int) {
	packNTGeneric(dst, B, off, 0, kk, nr)
}

// scoresGeneric computes s[j] = scale·(q · k[j·kstride:][:len(q)]).
func scoresGeneric(s, q, k []float32, kstride int, scale float32) {
	d := len(q)
	for j := range s {
		s[j] = dotImpl(q, k[j*kstride:j*kstride+d]) * scale
	}
}

// accumVGeneric computes acc += Σ_j p[j]·v[j·vstride:][:len(acc)].
func accumVGeneric(acc, v []float32, vstride int, p []float32) {
	d := len(acc)
	for j, pj := range p {
		axpyImpl(pj, v[j*vstride:j*vstride+d], acc)
	}
}

// scoresF16Generic is scoresGeneric over half-float keys: each key is
// widened into w (at least len(q) long) and goes through the same dot
// product, so the results are bit-identical.
func scoresF16Generic(s, q []float32, k []uint16, kstride int, scale float32, w []float32) {
	d := len(q)
	w = w[:d]
	for j := range s {
		convF16(w, k[j*kstride:j*kstride+d])
		s[j] = dotImpl(q, w) * scale
	}
}

// accumVF16Generic is accumVGeneric over half-float values, widened into w
// (at least len(acc) long).
func accumVF16Generic(acc []float32, v []uint16, vstride int, p []float32, w []float32) {
	d := len(acc)
	w = w[:d]
	for j, pj := range p {
		convF16(w, v[j*vstride:j*vstride+d])
		axpyImpl(pj, w, acc)
	}
}
