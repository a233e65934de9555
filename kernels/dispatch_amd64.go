//go:build amd64 && !purego

package kernels

import "golang.org/x/sys/cpu"

//go:generate go run -C internal/asmgen . -out ../../kernels_amd64.s -stubs ../../kernels_amd64.go -pkg kernels

// hasAVX2 reports whether the assembly kernels are in use.
var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C

func init() {
	if !hasAVX2 {
		return
	}
	microKernel = microKernelAVX2
	dotImpl = dotAVX2
	axpyImpl = axpyAVX2
	sumSqImpl = sumSqAVX2
	scaleMulImpl = scaleMulAVX2
	addImpl = addAVX2
	convF16 = convF16AVX2
	convBF16 = convBF16AVX2
	dotF16 = dotF16AVX2
	dotBF16 = dotBF16AVX2
	dotQ8_0 = func(w, x []byte) float32 {
		nb := len(x) / q8Bytes
		if nb == 0 {
			return 0
		}
		_ = w[nb*q8Bytes-1]
		return dotQ8_0AVX2(&w[0], &x[0], nb)
	}
	dotQ4_0 = func(w, x []byte) float32 {
		nb := len(x) / q8Bytes
		if nb == 0 {
			return 0
		}
		_ = w[nb*q4Bytes-1]
		return dotQ4_0AVX2(&w[0], &x[0], nb)
	}
}

func microKernelAVX2(k int, a, b, c []float32, ldc int, accumulate bool) {
	_ = a[k*mr-1]
	_ = b[k*nr-1]
	_ = c[(mr-1)*ldc+nr-1]
	gemmKernelAVX2(k, &a[0], &b[0], &c[0], ldc, accumulate)
}
