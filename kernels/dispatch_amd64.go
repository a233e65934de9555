//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

//go:generate go run -C internal/asmgen . -out ../../kernels_amd64.s -stubs ../../kernels_amd64.go -pkg kernels

// useAsm reports whether the assembly kernels are in use.
var useAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

func init() {
	if !useAsm {
		return
	}
	microKernel = microKernelAVX2
	dotImpl = dotAVX2
	axpyImpl = axpyAVX2
	sumSqImpl = sumSqAVX2
	scaleMulImpl = scaleMulAVX2
	scaleImpl = scaleAVX2
	addImpl = addAVX2
	maxImpl = maxAVX2
	expSubSumImpl = expSubSumAsm
	siluMulImpl = siluMulAsm
	convF16 = convF16AVX2
	convBF16 = convBF16AVX2
	matVecF32Rows = matVecF32RowsAsm
	matVecF16Rows = matVecF16RowsAsm
	matVecBF16Rows = matVecBF16RowsAsm
	matVecQ8Rows = matVecQ8RowsAsm
	matVecQ4Rows = matVecQ4RowsAsm
	dotQ8_0x4 = dotQ8_0x4Asm
	dotQ4_0x4 = dotQ4_0x4Asm
	packNT16 = packNT16Asm
	scoresImpl = scoresAsm
	accumVImpl = accumVAsm
	quantQ8_0Impl = quantQ8_0Asm
}

func microKernelAVX2(k int, a, b, c []float32, ldc int, accumulate bool) {
	_ = a[k*mr-1]
	_ = b[k*nr-1]
	_ = c[(mr-1)*ldc+nr-1]
	gemmKernelAVX2(k, &a[0], &b[0], &c[0], ldc, accumulate)
}

func dotQ8_0x4Asm(w, x []byte, xstride int, out *[4]float32) {
	nb := len(w) / q8Bytes
	if nb == 0 {
		*out = [4]float32{}
		return
	}
	_ = x[3*xstride+nb*q8Bytes-1]
	dotQ8_0x4AVX2(&w[0], &x[0], xstride, nb, &out[0])
}

func dotQ4_0x4Asm(w, x []byte, xstride int, aux []int32, auxstride int, out *[4]float32) {
	nb := len(w) / q4Bytes
	if nb == 0 {
		*out = [4]float32{}
		return
	}
	_, _ = x[3*xstride+nb*q8Bytes-1], aux[3*auxstride+nb*q4AuxInts-1]
	dotQ4_0x4AVX2(&w[0], &x[0], xstride, &aux[0], 4*auxstride, nb, &out[0])
}

func packNT16Asm(dst []float32, B operand, off, kk int) {
	k8 := kk &^ 7
	if k8 > 0 {
		_ = dst[kk*nr-1]
		last := off + (nr-1)*B.cs + k8 - 1 // last element read
		switch B.kind {
		case kindF32:
			_ = B.f32[last]
			packNTF32AVX2(&dst[0], &B.f32[off], B.cs, k8)
		case kindF16:
			_ = B.u16[last]
			packNTF16AVX2(&dst[0], &B.u16[off], B.cs, k8)
		case kindBF16:
			_ = B.u16[last]
			packNTBF16AVX2(&dst[0], &B.u16[off], B.cs, k8)
		}
	}
	if k8 < kk {
		packNTGeneric(dst, B, off, k8, kk, nr)
	}
}

func expSubSumAsm(x []float32, m float32) float32 {
	n8 := len(x) &^ 7
	var s float32
	if n8 > 0 {
		s = expSubSumAVX2(x[:n8], m)
	}
	return s + expSubSumGeneric(x[n8:], m)
}

func siluMulAsm(out, gate, up []float32) {
	n8 := len(out) &^ 7
	if n8 > 0 {
		_, _ = gate[n8-1], up[n8-1]
		siluMulAVX2(out[:n8], gate, up)
	}
	siluMulGeneric(out[n8:], gate[n8:], up[n8:])
}

func scoresAsm(s, q, k []float32, kstride int, scale float32) {
	d := len(q)
	if d%8 != 0 || len(s) == 0 || d == 0 {
		scoresGeneric(s, q, k, kstride, scale)
		return
	}
	_ = k[(len(s)-1)*kstride+d-1]
	attnScoresAVX2(&s[0], &q[0], &k[0], kstride, len(s), d, scale)
}

func accumVAsm(acc, v []float32, vstride int, p []float32) {
	d := len(acc)
	if d%8 != 0 || len(p) == 0 || d == 0 {
		accumVGeneric(acc, v, vstride, p)
		return
	}
	_ = v[(len(p)-1)*vstride+d-1]
	attnAccumAVX2(&acc[0], &v[0], vstride, &p[0], len(p), d)
}

func quantQ8_0Asm(dst []byte, x []float32) {
	nb := len(x) / qk
	if nb == 0 {
		return
	}
	_ = dst[nb*q8Bytes-1]
	quantQ8_0AVX2(&dst[0], &x[0], nb)
}

func matVecF32RowsAsm(y, w, x []float32, cols int) {
	if len(y) == 0 || cols == 0 {
		clear(y)
		return
	}
	_, _ = w[len(y)*cols-1], x[cols-1]
	matVecF32AVX2(&y[0], &w[0], &x[0], len(y), cols)
}

func matVecF16RowsAsm(y []float32, w []uint16, x []float32, cols int) {
	if len(y) == 0 || cols == 0 {
		clear(y)
		return
	}
	_, _ = w[len(y)*cols-1], x[cols-1]
	matVecF16AVX2(&y[0], &w[0], &x[0], len(y), cols)
}

// matVecBF16RowsAsm rearranges x so that each group of 16 holds its even
// elements, then its odd ones, the order in which matVecBF16AVX2 unpacks
// bfloat16 pairs; a row's last cols%16 elements are done in Go.
func matVecBF16RowsAsm(y []float32, w []uint16, x []float32, cols int) {
	groups := cols / 16
	n16 := groups * 16
	if len(y) == 0 || groups == 0 {
		matVecBF16RowsGeneric(y, w, x, cols)
		return
	}
	_, _ = w[len(y)*cols-1], x[cols-1]
	xpp := floatScratch.get(n16)
	defer floatScratch.put(xpp)
	xp := *xpp
	for g := range groups {
		src := x[16*g : 16*g+16]
		dst := xp[16*g : 16*g+16]
		for i := range 8 {
			dst[i], dst[8+i] = src[2*i], src[2*i+1]
		}
	}
	if n16 == cols {
		matVecBF16AVX2(&y[0], &w[0], &xp[0], len(y), groups)
		return
	}
	for r := range y {
		row := w[r*cols : (r+1)*cols]
		matVecBF16AVX2(&y[r], &row[0], &xp[0], 1, groups)
		y[r] += dotBF16Generic(row[n16:], x[n16:cols])
	}
}

func matVecQ8RowsAsm(y []float32, w, xq []byte) {
	nb := len(xq) / q8Bytes
	if len(y) == 0 || nb == 0 {
		clear(y)
		return
	}
	_ = w[len(y)*nb*q8Bytes-1]
	matVecQ8_0AVX2(&y[0], &w[0], &xq[0], len(y), nb)
}

func matVecQ4RowsAsm(y []float32, w, xq []byte, aux []int32) {
	nb := len(xq) / q8Bytes
	if len(y) == 0 || nb == 0 {
		clear(y)
		return
	}
	_, _ = w[len(y)*nb*q4Bytes-1], aux[nb*q4AuxInts-1]
	matVecQ4_0AVX2(&y[0], &w[0], &xq[0], &aux[0], len(y), nb)
}
