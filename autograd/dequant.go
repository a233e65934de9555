package autograd

import (
	"sync"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// MatMul computes Y = X·Wᵀ as kernels.MatMul does (W rows×cols of dtype dt,
// X nt×cols, Y nt×rows), for every weight dtype package tensor can expand.
// Weights the kernels multiply directly (every format of a llama.cpp
// model file: F32, F16, BF16, the legacy blocks, the k-quants, IQ4_NL) go
// to kernels.MatMul; the others (NF4, NF4_DQ, Q8_K) are expanded to
// float32 a tile of rows at a time and multiplied as F32: the product with
// the dequantized matrix, without ever holding it whole.
func MatMul(dt tensor.DType, w []byte, rows, cols int, x []float32, nt int, y []float32) {
	if kernels.Supports(dt) || !tensor.CanDequantize(dt) {
		kernels.MatMul(dt, w, rows, cols, x, nt, y)
		return
	}
	matMulDequant(dt, w, rows, cols, x[:nt*cols], nt, y[:nt*rows])
}

// dequantTile is the number of weight elements the fallback expands per
// tile (1 MiB of float32).
const dequantTile = 1 << 18

// dequantScratch pools the fallback's tiles.
var dequantScratch = sync.Pool{New: func() any { return new([]float32) }}

func getScratch(n int) *[]float32 {
	p := dequantScratch.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// matMulDequant is MatMul's path for weights without a kernel.
func matMulDequant(dt tensor.DType, w []byte, rows, cols int, x []float32, nt int, y []float32) {
	rb, err := dt.RowBytes(cols)
	if err != nil || len(w) < rb*rows {
		kernels.MatMul(dt, w, rows, cols, x, nt, y) // panics with kernels' message
		return
	}
	tile := max(1, min(rows, dequantTile/cols))
	wp := getScratch(tile * cols)
	defer dequantScratch.Put(wp)
	wt := *wp
	var yt []float32
	if nt > 1 {
		yp := getScratch(nt * tile)
		defer dequantScratch.Put(yp)
		yt = *yp
	}
	for r0 := 0; r0 < rows; r0 += tile {
		n := min(tile, rows-r0)
		kernels.ParallelFor(n, max(1, 4096/cols), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				// sizes and dtype checked above, so this cannot fail
				_ = tensor.Dequantize(dt, wt[r*cols:(r+1)*cols], w[(r0+r)*rb:(r0+r+1)*rb])
			}
		})
		wb := tensor.BytesOfF32(wt[:n*cols])
		if nt == 1 {
			kernels.MatMul(tensor.F32, wb, n, cols, x, 1, y[r0:r0+n])
			continue
		}
		kernels.MatMul(tensor.F32, wb, n, cols, x, nt, yt[:nt*n])
		for t := 0; t < nt; t++ {
			copy(y[t*rows+r0:t*rows+r0+n], yt[t*n:(t+1)*n])
		}
	}
}

// matMulBackward adds dY·W to dX as kernels.MatMulBackward does, for every
// weight dtype package tensor can expand: the ones the kernels lack (NF4,
// NF4_DQ, Q8_K) are expanded a tile of rows at a time, so a frozen weight
// of any dtype passes gradient to its input.
func matMulBackward(dt tensor.DType, w []byte, rows, cols int, dy []float32, nt int, dx []float32) {
	if kernels.Supports(dt) || !tensor.CanDequantize(dt) {
		kernels.MatMulBackward(dt, w, rows, cols, dy, nt, dx)
		return
	}
	rb, err := dt.RowBytes(cols)
	if err != nil || len(w) < rb*rows {
		kernels.MatMulBackward(dt, w, rows, cols, dy, nt, dx) // panics with kernels' message
		return
	}
	tile := max(1, min(rows, dequantTile/cols))
	wp := getScratch(tile * cols)
	defer dequantScratch.Put(wp)
	wt := *wp
	dyp := getScratch(nt * tile)
	defer dequantScratch.Put(dyp)
	dyt := *dyp
	for r0 := 0; r0 < rows; r0 += tile {
		n := min(tile, rows-r0)
		for r := range n {
			_ = tensor.Dequantize(dt, wt[r*cols:(r+1)*cols], w[(r0+r)*rb:(r0+r+1)*rb]) // checked above
		}
		// dX += dY[:, r0:r0+n] · W[r0:r0+n, :]
		for t := range nt {
			copy(dyt[t*n:(t+1)*n], dy[t*rows+r0:t*rows+r0+n])
		}
		kernels.GemmNN(nt, cols, n, dyt[:nt*n], wt[:n*cols], dx[:nt*cols], true)
	}
}
