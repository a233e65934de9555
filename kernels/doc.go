// Package kernels holds herd's compute kernels: GEMM, mat-vec per weight
// dtype, the row operations of a LLaMA block (RMSNorm, softmax, SiLU, RoPE),
// causal grouped-query attention, and the worker pool that splits work across
// cores.
//
// All matrices are row-major float32 unless a function says otherwise.
// Every kernel has a pure-Go implementation. On amd64 CPUs with AVX2, FMA
// and F16C the hot loops run in assembly (kernels_amd64.s), generated with
// avo by internal/asmgen, a module of its own: run `go generate` in this
// directory after editing the generator. The build tag purego keeps the
// pure-Go path, which is also what runs on other CPUs and architectures.
//
// Results are not bit-identical between the two paths (the assembly sums in
// eight-lane partial sums and its exp is a polynomial within ~2 ulp), and
// quantized dot products follow ggml: activations are quantized to Q8_0
// with round-to-nearest-even, and block products are exact integer sums
// scaled by both block scales.
package kernels
