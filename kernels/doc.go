// Package kernels holds herd's compute kernels: GEMM, the weight products
// of every GGUF weight type (MatMul), the row operations of a LLaMA block
// (RMSNorm, softmax, SiLU, RoPE), causal grouped-query attention, their
// backward passes, and the worker pool that splits work across cores.
//
// All matrices are row-major float32 unless a function says otherwise.
// Every kernel has a pure-Go implementation. On amd64 CPUs with AVX2, FMA
// and F16C the hot loops run in assembly (kernels_amd64.s), generated with
// avo by internal/asmgen, a module of its own: run `go generate` in this
// directory after editing the generator. The build tag purego keeps the
// pure-Go path, which is also what runs on other CPUs and architectures.
// On CPUs with AVX-512 (F, BW, VL, DQ and VNNI) some kernels have a
// 512-bit version, installed over the AVX2 ones: the Q8_0 product
// (VPDPBUSD, two blocks per register) and the float (F32, F16, BF16)
// mat-vec and batch kernels and the GEMM micro-kernel, bit-identical to
// the AVX2 ones.
//
// CPU paths: the kernels in use are chosen once at start, the best path
// the CPU runs (purego, avx2, avx512), or the one the environment variable
// HERD_CPU names (HERD_CPU=avx2 forces the AVX2 kernels on an AVX-512 CPU;
// a name the CPU cannot run is reported on stderr and the best path used).
// CPUPath says which is in use. The tests run every path the CPU runs.
//
// Results are not bit-identical between the two paths (the assembly sums in
// eight-lane partial sums and its exp is a polynomial within ~2 ulp).
//
// MatMul multiplies weights of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL and Q2_K…Q6_K. Quantized weights are multiplied as ggml
// does: each row of X is quantized to the activation format ggml pairs with
// the weight type (Q8_0, with round-to-nearest-even as ggml's SIMD paths;
// Q8_1's sums for Q4_1/Q5_1; Q8_K, byte for byte tensor.QuantizeRowQ8_K,
// for the k-quants), block products are exact integer sums, scaled by both
// block scales in float32.
//
// Batch invariance: within one build on one CPU and CPU path, every row of MatMul's
// result is computed by the same floating-point operations whatever the
// number of rows nt, so a row computed alone is bit-identical to the same
// row computed in any batch. The quantized kernels run one (weight row,
// activation row) pair through the same instructions whether a call
// carries one activation row or four; the float kernels accumulate every
// element in the same two eight-lane sums in the one-row mat-vec and in the
// register-tiled batch kernel (see matmul_float.go). On the avx2 path Q4_0
// and Q8_0 sum each pair block by block (acc = fma(float32(s), dw·dx, acc))
// in three kernels that agree bit for bit: eight weight rows at a time for
// one activation row, one row for the rows left over, and activation tiles
// of eight rows (tile.go) for batches of eight or more. F16 matrices packed
// into tensor.F16x32 (what llama.Model.PackForInference does on the
// assembly paths) are summed otherwise: each element one chain of fused
// multiply-adds over the columns in order, a weight row a vector lane, in
// the mat-vec and in the six- and twelve-row outer-product tiles alike
// (matmul_f16x32.go), bit-identical between avx2 and avx512.
package kernels
