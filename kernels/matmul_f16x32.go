package kernels

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/tensor"
)

// F16x32 weights (tensor.F16x32: groups of 32 rows, each column of a
// group's rows side by side): every element of Y = X·Wᵀ is one chain of
// fused multiply-adds over the columns in order, acc = fma(w, x, acc) from
// zero, one vector lane a weight row. The mat-vec reads a whole group as
// one stream into four YMM (two ZMM) chains; the tile multiplies six rows
// of X at once as an outer product (the GEMM micro-kernel's shape: a
// chunk of weights widened once for six broadcast activations; twelve rows
// against a whole group in ZMM where 512-bit units are whole), and both
// run exactly these operations, so a row of the product does not depend
// on how many rows of X go through at once, and the AVX2 and AVX-512
// kernels give the same bits. The plain F16 kernels (matmul_float.go) sum
// each element in sixteen lanes and reduce them, which ties the tiles to
// two accumulators an element; this layout costs a copy at load
// (llama.Model.PackForInference) and buys prompts the full width of the
// multiply-add units.

// f16x32Kernels are the assembly kernels, set by dispatch_amd64.go where
// the CPU has AVX2; nil on the pure-Go path.
type f16x32Kernels struct {
	// rows: y[32g+j] = W[32g+j]·x for g < groups
	rows func(y *float32, w *uint16, groups int, x *float32, cols int)
	// tile: the same for tx rows of X at once (xstride, ystride apart)
	tile func(y *float32, ystride int, w *uint16, groups int, x *float32, xstride int, cols int)
	tx   int
}

var f16x32K *f16x32Kernels

// f16x32BlockBytes is the weight bytes a batched product keeps in cache
// while every row of X passes over them (a whole number of groups, one at
// least).
const f16x32BlockBytes = 256 << 10

// matMulF16x32 computes Y = X·Wᵀ for an F16x32 matrix w (rows a multiple of
// 32).
func matMulF16x32(w []uint16, rows, cols int, x []float32, nt int, y []float32) {
	if rows%tensor.F16Group != 0 {
		panic(fmt.Sprintf("kernels.MatMul: F16x32 with %d rows, not a multiple of %d", rows, tensor.F16Group))
	}
	j := f16x32Job{w: w, rows: rows, cols: cols, x: x, nt: nt, y: y}
	groups := rows / tensor.F16Group
	grain := max(floatRowBlock, matGrain/max(cols*nt, 1))
	if nt == 1 {
		grain = matVecGrain(cols)
	}
	grain = max(1, grain/tensor.F16Group)
	if serial(groups, grain) {
		j.run(0, groups)
		return
	}
	pj := j
	ParallelFor(groups, grain, pj.run)
}

type f16x32Job struct {
	w              []uint16
	rows, cols, nt int
	x, y           []float32
}

// run computes the outputs of groups [lo, hi) for every row of X.
func (j *f16x32Job) run(lo, hi int) {
	const g32 = tensor.F16Group
	w, rows, cols, x, nt, y := j.w, j.rows, j.cols, j.x, j.nt, j.y
	if cols == 0 {
		for t := range nt {
			clear(y[t*rows+g32*lo : t*rows+g32*hi])
		}
		return
	}
	k := f16x32K
	if k == nil {
		f16x32Generic(w, rows, cols, x, nt, y, lo, hi)
		return
	}
	gw := g32 * cols // elements of a group
	if nt == 1 {
		k.rows(&y[g32*lo], &w[gw*lo], hi-lo, &x[0], cols)
		return
	}
	block := max(1, f16x32BlockBytes/(2*gw))
	for g0 := lo; g0 < hi; g0 += block {
		ng := min(hi, g0+block) - g0
		t := 0
		for ; t+k.tx <= nt; t += k.tx {
			k.tile(&y[t*rows+g32*g0], rows, &w[gw*g0], ng, &x[t*cols], cols, cols)
		}
		for ; t < nt; t++ {
			k.rows(&y[t*rows+g32*g0], &w[gw*g0], ng, &x[t*cols], cols)
		}
	}
}

// f16x32Generic is the pure-Go product of groups [lo, hi): the same chain
// of multiply-adds a lane, each math.FMA rounded to float64 and then to
// float32, which is a float32 fused multiply-add but in the rare cases
// where the first rounding lands exactly halfway between two float32s.
func f16x32Generic(w []uint16, rows, cols int, x []float32, nt int, y []float32, lo, hi int) {
	const g32 = tensor.F16Group
	var wf [g32]float32
	for g := lo; g < hi; g++ {
		grp := w[g*g32*cols : (g+1)*g32*cols]
		for t := range nt {
			var acc [g32]float32
			xr := x[t*cols : (t+1)*cols]
			for p, xv := range xr {
				for i, h := range grp[g32*p : g32*p+g32] {
					wf[i] = tensor.F16ToF32(h)
				}
				for i := range acc {
					acc[i] = float32(math.FMA(float64(wf[i]), float64(xv), float64(acc[i])))
				}
			}
			copy(y[t*rows+g32*g:], acc[:])
		}
	}
}
