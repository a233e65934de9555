package kernels

import (
	"fmt"

	"github.com/herd-llm/herd/tensor"
)

// Byte sizes of the block formats: 32 elements behind a float16 scale.
const (
	qk       = 32
	q8Bytes  = 34
	q4Bytes  = 18
	matGrain = 1 << 16 // elements of weight per parallel chunk, at least
)

// Supports reports whether MatMul handles weights of dtype dt.
func Supports(dt tensor.DType) bool {
	switch dt {
	case tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0:
		return true
	}
	return false
}

// MatMul computes Y = X·Wᵀ: Y[t][r] = Σ_c W[r][c]·X[t][c] for t < nt, r < rows.
// W holds rows rows of cols elements of dtype dt, stored as GGUF stores them
// (little-endian; Q8_0/Q4_0 blocks of 32). X is nt×cols and Y nt×rows. For
// Q8_0 and Q4_0 weights each row of X is first quantized to Q8_0 and the dot
// products are integer block dot products scaled by both block scales, as
// ggml computes them. It panics on an unsupported dtype or short slices.
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
	switch dt {
	case tensor.F32:
		if nt == 1 {
			MatVecF32(y, tensor.F32s(w), x, rows, cols)
			return
		}
		GemmNT(nt, rows, cols, x, tensor.F32s(w), y, false)
	case tensor.F16, tensor.BF16:
		h := tensor.U16s(w)
		if nt == 1 {
			if dt == tensor.F16 {
				MatVecF16(y, h, x, rows, cols)
			} else {
				MatVecBF16(y, h, x, rows, cols)
			}
			return
		}
		kind := kindF16
		if dt == tensor.BF16 {
			kind = kindBF16
		}
		gemm(nt, rows, cols, operand{f32: x, rs: cols, cs: 1}, operand{kind: kind, u16: h, rs: 1, cs: cols}, y, rows, false)
	case tensor.Q8_0, tensor.Q4_0:
		xrow := cols / qk * q8Bytes
		xqp := byteScratch.get(nt * xrow)
		defer byteScratch.put(xqp)
		xq := *xqp
		ParallelFor(nt, max(1, matGrain/max(cols, 1)), func(lo, hi int) {
			for t := lo; t < hi; t++ {
				QuantizeQ8_0(xq[t*xrow:(t+1)*xrow], x[t*cols:(t+1)*cols])
			}
		})
		if nt == 1 {
			if dt == tensor.Q8_0 {
				MatVecQ8_0(y, w, xq, rows, cols)
			} else {
				MatVecQ4_0(y, w, xq, rows, cols)
			}
			return
		}
		matMulQuant(dt, y, w, xq, rows, cols, nt)
	}
}

// matMulQuant computes nt mat-vecs against the same quantized weights,
// walking the weights in blocks of rows small enough to stay in cache while
// every row of X passes over them, four rows of X per weight pass.
func matMulQuant(dt tensor.DType, y []float32, w, xq []byte, rows, cols, nt int) {
	const rowBlock = 16
	nb := cols / qk
	xrow := nb * q8Bytes
	var (
		wrow  int
		rows1 func(y []float32, w []byte, t int) // y = W·x_t for len(y) rows of w
		dot4  func(w []byte, t int, out *[4]float32)
	)
	if dt == tensor.Q8_0 {
		wrow = nb * q8Bytes
		rows1 = func(y []float32, w []byte, t int) { matVecQ8Rows(y, w, xq[t*xrow:(t+1)*xrow]) }
		dot4 = func(w []byte, t int, out *[4]float32) { dotQ8_0x4(w, xq[t*xrow:(t+4)*xrow], xrow, out) }
	} else {
		wrow = nb * q4Bytes
		arow := nb * q4AuxInts
		auxp := intScratch.get(nt * arow)
		defer intScratch.put(auxp)
		aux := *auxp
		for t := range nt {
			q4Prep(aux[t*arow:(t+1)*arow], xq[t*xrow:(t+1)*xrow])
		}
		rows1 = func(y []float32, w []byte, t int) {
			matVecQ4Rows(y, w, xq[t*xrow:(t+1)*xrow], aux[t*arow:(t+1)*arow])
		}
		dot4 = func(w []byte, t int, out *[4]float32) {
			dotQ4_0x4(w, xq[t*xrow:(t+4)*xrow], xrow, aux[t*arow:(t+4)*arow], arow, out)
		}
	}
	ParallelFor(rows, max(rowBlock, matGrain/max(cols*nt, 1)), func(lo, hi int) {
		var out [4]float32
		for r0 := lo; r0 < hi; r0 += rowBlock {
			r1 := min(hi, r0+rowBlock)
			t := 0
			for ; t+4 <= nt; t += 4 {
				for r := r0; r < r1; r++ {
					dot4(w[r*wrow:(r+1)*wrow], t, &out)
					for i, v := range out {
						y[(t+i)*rows+r] = v
					}
				}
			}
			for ; t < nt; t++ {
				rows1(y[t*rows+r0:t*rows+r1], w[r0*wrow:r1*wrow], t)
			}
		}
	})
}

// QuantizeQ8_0 quantizes x (a multiple of 32 long) into len(x)/32 Q8_0 blocks
// of 34 bytes in dst, as the activation side of a Q8_0 or Q4_0 dot product.
// Rounding is to nearest even, as ggml's SIMD paths do (tensor.QuantizeRowQ8_0
// rounds halves away from zero); the two agree except on exact halves.
func QuantizeQ8_0(dst []byte, x []float32) {
	if len(x)%qk != 0 || len(dst) < len(x)/qk*q8Bytes {
		panic(fmt.Sprintf("kernels.QuantizeQ8_0: %d values (need a multiple of %d) into %d bytes", len(x), qk, len(dst)))
	}
	quantQ8_0Impl(dst, x)
}

func matVecGrain(cols int) int { return max(1, matGrain/max(cols, 1)) }

func checkRows(fn string, y []float32, rows int) {
	if len(y) < rows {
		panic(fmt.Sprintf("kernels.%s: len(y) = %d, need %d", fn, len(y), rows))
	}
}

// MatVecF32 computes y[r] = Σ_c w[r·cols+c]·x[c] for r < rows.
func MatVecF32(y, w, x []float32, rows, cols int) {
	checkRows("MatVecF32", y, rows)
	checkLen("MatVecF32", "w", w, rows*cols)
	checkLen("MatVecF32", "x", x, cols)
	x = x[:cols]
	ParallelFor(rows, matVecGrain(cols), func(lo, hi int) {
		matVecF32Rows(y[lo:hi], w[lo*cols:hi*cols], x, cols)
	})
}

// MatVecF16 computes y = W·x for W of rows×cols IEEE half-precision values.
func MatVecF16(y []float32, w []uint16, x []float32, rows, cols int) {
	checkRows("MatVecF16", y, rows)
	checkLenU16("MatVecF16", w, rows*cols)
	checkLen("MatVecF16", "x", x, cols)
	x = x[:cols]
	ParallelFor(rows, matVecGrain(cols), func(lo, hi int) {
		matVecF16Rows(y[lo:hi], w[lo*cols:hi*cols], x, cols)
	})
}

// MatVecBF16 computes y = W·x for W of rows×cols bfloat16 values.
func MatVecBF16(y []float32, w []uint16, x []float32, rows, cols int) {
	checkRows("MatVecBF16", y, rows)
	checkLenU16("MatVecBF16", w, rows*cols)
	checkLen("MatVecBF16", "x", x, cols)
	x = x[:cols]
	ParallelFor(rows, matVecGrain(cols), func(lo, hi int) {
		matVecBF16Rows(y[lo:hi], w[lo*cols:hi*cols], x, cols)
	})
}

func checkLenU16(fn string, w []uint16, need int) {
	if len(w) < need {
		panic(fmt.Sprintf("kernels.%s: len(w) = %d, need %d", fn, len(w), need))
	}
}

func checkQuant(fn string, w, xq []byte, rows, cols, wblock int) {
	if cols%qk != 0 {
		panic(fmt.Sprintf("kernels.%s: cols = %d is not a multiple of %d", fn, cols, qk))
	}
	if len(w) < rows*cols/qk*wblock {
		panic(fmt.Sprintf("kernels.%s: len(w) = %d, need %d", fn, len(w), rows*cols/qk*wblock))
	}
	if len(xq) < cols/qk*q8Bytes {
		panic(fmt.Sprintf("kernels.%s: len(xq) = %d, need %d", fn, len(xq), cols/qk*q8Bytes))
	}
}

// MatVecQ8_0 computes y = W·x for Q8_0 weights W (rows×cols) and x already
// quantized to Q8_0 (see QuantizeQ8_0).
func MatVecQ8_0(y []float32, w []byte, xq []byte, rows, cols int) {
	checkRows("MatVecQ8_0", y, rows)
	checkQuant("MatVecQ8_0", w, xq, rows, cols, q8Bytes)
	wrow := cols / qk * q8Bytes
	xq = xq[:cols/qk*q8Bytes]
	ParallelFor(rows, matVecGrain(cols), func(lo, hi int) {
		matVecQ8Rows(y[lo:hi], w[lo*wrow:hi*wrow], xq)
	})
}

// MatVecQ4_0 computes y = W·x for Q4_0 weights W (rows×cols) and x already
// quantized to Q8_0 (see QuantizeQ8_0).
func MatVecQ4_0(y []float32, w []byte, xq []byte, rows, cols int) {
	checkRows("MatVecQ4_0", y, rows)
	checkQuant("MatVecQ4_0", w, xq, rows, cols, q4Bytes)
	nb := cols / qk
	wrow := nb * q4Bytes
	xq = xq[:nb*q8Bytes]
	auxp := intScratch.get(nb * q4AuxInts)
	defer intScratch.put(auxp)
	aux := *auxp
	q4Prep(aux, xq)
	ParallelFor(rows, matVecGrain(cols), func(lo, hi int) {
		matVecQ4Rows(y[lo:hi], w[lo*wrow:hi*wrow], xq, aux)
	})
}
