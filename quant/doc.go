// Package quant quantizes whole models as llama-quantize does: each
// tensor to the type of llama.cpp's per-tensor mix for a file type
// (Q4_0 … Q8_0, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K), with a
// fallback type for rows that are not whole blocks, and the row
// quantizers of package tensor.
//
// # How herd's quantized bytes were established to be ggml's
//
//
// No C implementation of ggml is packaged for this project's machines
// (Debian bookworm has no llama.cpp or libggml package), so a
// byte-for-byte differential run against ggml's reference quantizer was
// not possible. The evidence, weakest assumptions first:
//
//  1. Q8_0 against an independent quantizer: llama.cpp's sibling llama2.c
//     exported stories260K in its version-2 format with the same rule
//     (groups of 32, scale max|x|/127, q = round(x/scale)). Quantizing the
//     same float32 weights with herd's Q8_0 gives identical int8 values in
//     all 8104 groups of all 36 matrices, and herd's float16 scale is the
//     float16 rounding of llama2.c's float32 scale in every group
//     (TestLlama2cQ8_0).
//  2. The legacy formats against ggml's own test: on test-quantize-fns'
//     vectors the dot-product errors of Q4_0, Q5_0, Q5_1 and Q8_0 land
//     within 1e-6 of the figures ggml's test printed (as recorded in
//     candle's tests), and the round trips of 0..127 match the values an
//     independent port (candle) publishes for Q4_0, Q5_0 and Q5_1
//     (package tensor's TestQuantizationErrorBudgets, TestLegacySpotValues).
//  3. The k-quants against an independent port: Q3_K and Q8_K, whose ggml
//     reference has not changed since candle ported it, match candle's
//     published values; Q2_K, Q4_K, Q5_K and Q6_K follow the current
//     ggml-quants.c (make_qx_quants with its 19-candidate search,
//     make_qkx2_quants), which candle predates (TestKQuantSpotValues).
//  4. Line-by-line transcription of ggml-quants.c's quantize_row_*_ref and
//     quantize_iq4_nl (IQ4_NL as llama-quantize writes it, ntry = 7),
//     keeping C's single-precision evaluation order: every product that C
//     adds is converted to float32 first, so Go cannot fuse it into an FMA;
//     nearest_int is the same bit trick; float16 conversion rounds to
//     nearest even as ggml's does. The outputs are frozen by SHA-256 digests
//     that come out identical under GOAMD64=v3 (TestQuantizeGolden).
//     Caveat: a ggml built with FMA contraction (-march=native with GCC's
//     default -ffp-contract=fast) may itself round differently in rare
//     ties; herd matches the uncontracted reference.
//  5. Whole files: the per-tensor mixes reproduce the tensor-type counts
//     llama.cpp reports for TinyLlama-1.1B files (Q4_K_M and Q5_K_M: f32 45,
//     q4_K/q5_K 135, q6_K 21), the tensor order is llama.cpp's loader
//     order (layer, then name), metadata is copied in order with
//     general.quantization_version and general.file_type moved to the end,
//     and an independent GGUF reader (gpustack/gguf-parser-go) agrees on
//     every tensor's type, shape and offset (TestIndependentReader).
//
// To check against ggml where a C toolchain and llama.cpp are available:
// quantize the same F32/F16 GGUF with llama-quantize (no --imatrix) and
// with herd quantize, then compare the files with cmp; they should be
// identical except where llama.cpp refuses the model (rows that fit no
// block format, e.g. stories260K's 172-wide ffn_down for the legacy mixes,
// which herd writes as F16 with a warning).
package quant
