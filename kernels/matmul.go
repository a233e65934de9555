package kernels

import (
	"fmt"

	"github.com/herd-llm/herd/tensor"
)

// Block geometry (package tensor's, geometry.go).
const (
	qk       = tensor.QK
	q8Bytes  = tensor.BytesQ8_0
	q4Bytes  = tensor.BytesQ4_0
	matGrain = 1 << 20 // elements of weight per parallel chunk, at least
)

// Supports reports whether MatMul handles weights of dtype dt.
func Supports(dt tensor.DType) bool {
	switch dt {
	case tensor.F32, tensor.F16, tensor.BF16, tensor.F16x32:
		return true
	}
	_, ok := formats[dt]
	return ok
}

// MatMul computes Y = X·Wᵀ: Y[t][r] = Σ_c W[r][c]·X[t][c] for t < nt, r < rows.
// W holds rows rows of cols elements of dtype dt, stored as GGUF stores them
// (little-endian; quantized types in their ggml blocks). X is nt×cols and Y
// nt×rows. For quantized weights each row of X is first quantized to the
// activation format ggml pairs with the weight type (Q8_0, Q8_1 or Q8_K) and
// the dot products are integer block dot products scaled by the block
// scales, as ggml computes them.
//
// Every row of Y is computed by the same sequence of floating-point
// operations whatever nt is: Y[t] depends only on W and X[t], bit for bit,
// so a row computed alone equals the same row computed in a batch.
//
// It panics on an unsupported dtype or short slices.
func MatMul(dt tensor.DType, w []byte, rows, cols int, x []float32, nt int, y []float32) {
	need, err := dt.RowBytes(cols)
	if err != nil || !Supports(dt) {
		panic(fmt.Sprintf("kernels.MatMul: dtype %s with %d columns: unsupported (%v)", dt, cols, err))
	}
	if len(w) < need*rows {
		panic(fmt.Sprintf("kernels.MatMul: %d weight bytes, need %d", len(w), need*rows))
	}
	checkLen("MatMul", "x", x, nt*cols)
	checkLen("MatMul", "y", y, nt*rows)
	if nt <= 0 || rows == 0 {
		return
	}
	w = w[:need*rows]
	var wop operand // Wᵀ: element (p, r) at r·cols + p
	switch dt {
	case tensor.F32:
		wop = operand{f32: tensor.F32s(w), rs: 1, cs: cols}
	case tensor.F16:
		wop = operand{kind: kindF16, u16: tensor.U16s(w), rs: 1, cs: cols}
	case tensor.BF16:
		wop = operand{kind: kindBF16, u16: tensor.U16s(w), rs: 1, cs: cols}
	case tensor.F16x32:
		matMulF16x32(tensor.U16s(w), rows, cols, x, nt, y)
		return
	default:
		matMulQuant(formats[dt], y, w, rows, cols, x, nt)
		return
	}
	if floatDots != nil {
		matMulFloat(wop.kind, wop, rows, cols, x, nt, y)
		return
	}
	gemm(nt, rows, cols, operand{f32: x, rs: cols, cs: 1}, wop, y, rows, false)
}

// MatMulBatch computes Y = X·Wᵀ as MatMul does, for a batch that is
// computed as one and never decoded a row at a time (training's forward
// pass, and the scoring passes that must agree with it): float weights
// (F32, F16, BF16) go through the packed GEMM, faster than MatMul's
// dot-product tiles for many rows, whose elements are rounded differently
// from MatMul's but likewise do not depend on nt. Other dtypes, and nt = 1,
// are MatMul's.
func MatMulBatch(dt tensor.DType, w []byte, rows, cols int, x []float32, nt int, y []float32) {
	if nt <= 1 || (dt != tensor.F32 && dt != tensor.F16 && dt != tensor.BF16) {
		MatMul(dt, w, rows, cols, x, nt, y)
		return
	}
	need, err := dt.RowBytes(cols)
	if err != nil || len(w) < need*rows {
		MatMul(dt, w, rows, cols, x, nt, y) // panics with MatMul's message
		return
	}
	checkLen("MatMulBatch", "x", x, nt*cols)
	checkLen("MatMulBatch", "y", y, nt*rows)
	w = w[:need*rows]
	wop := operand{f32: tensor.F32s(w), rs: 1, cs: cols} // Wᵀ
	switch dt {
	case tensor.F16:
		wop = operand{kind: kindF16, u16: tensor.U16s(w), rs: 1, cs: cols}
	case tensor.BF16:
		wop = operand{kind: kindBF16, u16: tensor.U16s(w), rs: 1, cs: cols}
	}
	gemm(nt, rows, cols, operand{f32: x, rs: cols, cs: 1}, wop, y, rows, false)
}

// matVecGrain is the rows of a mat-vec (decoding) chunk: a quarter of
// matGrain's elements, since a one-row product does one multiply-add per
// weight read and the pool's threads wake spinning: at matGrain a
// TinyLlama K or V projection (256×2048) ran on one thread while the
// other waited.
func matVecGrain(cols int) int { return max(1, matGrain/4/max(cols, 1)) }
