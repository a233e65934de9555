package kernels

import "github.com/herd-llm/herd/tensor"

// Float weights (F32, F16, BF16) where the CPU has the assembly kernels:
// every element of Y = X·Wᵀ is accumulated along the row in two
// eight-lane sums, the eight columns from 8c going into sum c mod 2 by a
// fused multiply-add, below cols&^7; the two sums are reduced to a scalar
// always in the same way, then the last cols%8 products added one by one
// (floatTail). The mat-vec kernel (dotRows: one row of X, one weight row
// at a time, read as one stream) and the tile (dotTile: a few rows of X
// against a few weight rows at a time, 3×2 on AVX2, 6×4 on AVX-512)
// compute each element by exactly these operations, so MatMul's rows are the same whatever nt is. Elsewhere
// MatMul uses gemm, whose elements are likewise independent of the number
// of rows.

// dotKernels are the float MatMul kernels: rows computes y[r] = W[r]·x
// over k8 columns for rows weight rows from element off (row stride w.cs);
// tile computes y[t·ystride+r] = W[r]·X[t] for t < tx (X's rows xstride
// apart) and r < rows (a multiple of tw).
type dotKernels struct {
	rows   func(kind int, y []float32, w operand, off, rows int, x []float32, k8 int)
	tile   func(kind int, y []float32, ystride int, w operand, off, rows int, x []float32, xstride, k8 int)
	tx, tw int
}

// floatDots is set by dispatch_amd64.go where the CPU has AVX2.
var floatDots *dotKernels

// floatRowBlock is the number of weight rows a batched product keeps in
// cache while every row of X passes over them.
const floatRowBlock = 64

// matMulFloat computes Y = X·Wᵀ for float weights w (W rows×cols, row-major).
func matMulFloat(kind int, w operand, rows, cols int, x []float32, nt int, y []float32) {
	j := floatJob{kind: kind, w: w, rows: rows, cols: cols, x: x, nt: nt, y: y}
	grain := max(floatRowBlock, matGrain/max(cols*nt, 1))
	if nt == 1 {
		grain = matVecGrain(cols)
	}
	if serial(rows, grain) {
		j.run(0, rows) // no closure, no allocation for small products
		return
	}
	pj := j
	ParallelFor(rows, grain, pj.run)
}

// floatJob is one float MatMul, split by weight rows.
type floatJob struct {
	kind           int
	w              operand
	rows, cols, nt int
	x, y           []float32
}

// run computes the outputs of weight rows [lo, hi) for every row of X.
func (j *floatJob) run(lo, hi int) {
	k := floatDots
	w, rows, cols, x, nt, y := j.w, j.rows, j.cols, j.x, j.nt, j.y
	k8 := cols &^ 7
	if nt == 1 {
		k.rows(j.kind, y[lo:hi], w, lo*w.cs, hi-lo, x, k8)
		floatTail(w, y, rows, cols, x, lo, hi, 0, 1)
		return
	}
	for r0 := lo; r0 < hi; r0 += floatRowBlock {
		r1 := min(hi, r0+floatRowBlock)
		t := 0
		nw := (r1 - r0) / k.tw * k.tw
		for ; t+k.tx <= nt; t += k.tx {
			k.tile(j.kind, y[t*rows+r0:], rows, w, r0*w.cs, nw, x[t*cols:], cols, k8)
			for tt := t; tt < t+k.tx && r0+nw < r1; tt++ {
				k.rows(j.kind, y[tt*rows+r0+nw:tt*rows+r1], w, (r0+nw)*w.cs, r1-r0-nw, x[tt*cols:(tt+1)*cols], k8)
			}
		}
		for ; t < nt; t++ {
			k.rows(j.kind, y[t*rows+r0:t*rows+r1], w, r0*w.cs, r1-r0, x[t*cols:(t+1)*cols], k8)
		}
		floatTail(w, y, rows, cols, x, r0, r1, 0, nt)
	}
}

// floatTail adds to y[t][r], for rows [lo, hi) and t in [t0, t1), the
// products of the last cols%8 columns, one at a time in column order, each
// product rounded before it is added.
func floatTail(w operand, y []float32, rows, cols int, x []float32, lo, hi, t0, t1 int) {
	k8 := cols &^ 7
	if k8 == cols {
		return
	}
	var wt [8]float32 // a weight row's last columns, widened
	n := cols - k8
	for r := lo; r < hi; r++ {
		o := r*w.cs + k8
		switch w.kind {
		case kindF32:
			copy(wt[:n], w.f32[o:o+n])
		case kindF16:
			for p, h := range w.u16[o : o+n] {
				wt[p] = tensor.F16ToF32(h)
			}
		case kindBF16:
			for p, h := range w.u16[o : o+n] {
				wt[p] = tensor.BF16ToF32(h)
			}
		}
		for t := t0; t < t1; t++ {
			xr := x[t*cols+k8 : (t+1)*cols]
			s := y[t*rows+r]
			for p, v := range wt[:n] {
				s += float32(v * xr[p])
			}
			y[t*rows+r] = s
		}
	}
}
