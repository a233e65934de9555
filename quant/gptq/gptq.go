// Package gptq quantizes weight matrices with GPTQ (Frantar, Ashkboos,
// Hoefler and Alistarh, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", 2022): the columns of W are
// quantized one at a time and the error each leaves is spread over the
// columns not yet quantized through the inverse Hessian of the layer's
// reconstruction loss ‖W·X − Ŵ·X‖², H = 2·X·Xᵀ, so that later columns
// compensate it. The grid a weight is rounded to is pluggable (Grid): GPTQ's
// own uniform per-group grid (the AutoGPTQ layout) or the scales of one of
// llama.cpp's block formats, so the result is stored exactly as Q4_0, Q4_K
// and the others.
//
// Step by step, as the paper's Algorithm 1 with the reference
// implementation's details: columns whose diagonal of H is zero ("dead":
// the input never reaches them) get H_ii = 1 and weight 0; with ActOrder
// the columns are processed by decreasing H_ii; λ = Damp·mean(diag H) is
// added to the diagonal; U is the upper Cholesky factor of H⁻¹
// (H⁻¹ = Uᵀ·U); column i is rounded to q, its error e = (w − q)/U_ii is
// subtracted, scaled by U_ij, from the columns j > i of its block of
// BlockSize columns at once and from the later blocks lazily, once per
// block. Grid parameters are fitted as each group is reached (from the
// corrected weights), or, with ActOrder, for every group up front from the
// original weights ("static groups"), so the groups stay contiguous runs
// of original columns and the output a plain per-group layout.
package gptq

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/herd-llm/herd/kernels"
)

// Options control Quantize.
type Options struct {
	// Damp is the dampening added to H's diagonal, as a fraction of its
	// mean (GPTQ's percdamp, 0.01 there). 0 adds none, and a singular H
	// then fails.
	Damp float64
	// ActOrder processes the columns by decreasing H_ii, with static groups.
	ActOrder bool
	// BlockSize is the number of columns of one lazy batch; 0 means 128.
	BlockSize int
}

// Result is a quantized matrix: the integers and the grids they index.
type Result struct {
	Rows, Cols int
	Group, Sub int       // columns per Fit and per grid
	Q          []int32   // Rows×Cols integers, in the original column order
	Deq        []float64 // Rows×Cols dequantized weights Ŵ
	// Corrected holds each weight as it was when it was quantized: the
	// original weight plus the corrections of the columns before it.
	Corrected []float64
	Subs      []Sub    // Rows × Cols/Sub grids
	Headers   [][]byte // Rows × Cols/Group: the grid's header bytes of each group
	Perm      []int    // the order the columns were processed in
}

// Quantize runs GPTQ on w (rows×cols, row-major: y = W·x) with the Hessian
// h (cols×cols, row-major, symmetric; it is modified) onto grid g.
func Quantize(w []float32, rows, cols int, h []float64, g Grid, opt Options) (*Result, error) {
	gs, ss := g.GroupSize(cols), g.SubSize(cols)
	switch {
	case len(w) != rows*cols || len(h) != cols*cols:
		return nil, fmt.Errorf("gptq: %d weights and a Hessian of %d for %d×%d", len(w), len(h), rows, cols)
	case gs <= 0 || ss <= 0 || gs%ss != 0 || cols%gs != 0:
		return nil, fmt.Errorf("gptq: rows of %d columns are not whole groups of %d", cols, gs)
	case opt.Damp < 0:
		return nil, fmt.Errorf("gptq: negative dampening %g", opt.Damp)
	}
	bs := opt.BlockSize
	if bs <= 0 {
		bs = 128
	}
	if !opt.ActOrder && gs < cols && (gs%bs != 0 && bs%gs != 0) {
		return nil, fmt.Errorf("gptq: groups of %d do not align with blocks of %d columns", gs, bs)
	}
	w64 := make([]float64, len(w))
	for i, v := range w {
		w64[i] = float64(v)
	}
	dead := make([]bool, cols)
	var mean float64
	for i := range cols {
		if h[i*cols+i] == 0 {
			dead[i] = true
			h[i*cols+i] = 1
			for r := range rows {
				w64[r*cols+i] = 0
			}
		}
		mean += h[i*cols+i]
	}
	mean /= float64(cols)
	perm := make([]int, cols)
	for i := range perm {
		perm[i] = i
	}
	if opt.ActOrder {
		slices.SortStableFunc(perm, func(a, b int) int { return cmp.Compare(h[b*cols+b], h[a*cols+a]) })
	}
	hp := make([]float64, cols*cols)
	for i, pi := range perm {
		for j, pj := range perm {
			hp[i*cols+j] = h[pi*cols+pj]
		}
		hp[i*cols+i] += opt.Damp * mean
	}
	u, err := upperInverseFactor(hp, cols)
	if err != nil {
		if opt.Damp == 0 {
			return nil, fmt.Errorf("gptq: the Hessian is singular (%v); dampen it (--damp 0.01)", err)
		}
		return nil, fmt.Errorf("gptq: the dampened Hessian is not positive definite (%v); raise --damp", err)
	}
	res := &Result{Rows: rows, Cols: cols, Group: gs, Sub: ss, Perm: perm,
		Q: make([]int32, rows*cols), Deq: make([]float64, rows*cols), Corrected: make([]float64, rows*cols),
		Subs: make([]Sub, rows*(cols/ss)), Headers: make([][]byte, rows*(cols/gs))}
	const chunk = 16
	kernels.ParallelFor((rows+chunk-1)/chunk, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			r0, r1 := c*chunk, min(rows, (c+1)*chunk)
			res.rows(w64, r0, r1, u, g, bs, opt.ActOrder)
		}
	})
	return res, nil
}

// rows quantizes rows r0..r1 of w (rows are independent given U), block by
// block: within a block each column's error corrects the block's later
// columns at once; the block's errors then correct the later blocks in one
// pass per row.
func (res *Result) rows(w []float64, r0, r1 int, u []float64, g Grid, bs int, static bool) {
	cols, gs, ss := res.Cols, res.Group, res.Sub
	n := r1 - r0
	x32 := make([]float32, gs)
	if static {
		for r := r0; r < r1; r++ {
			for c0 := 0; c0 < cols; c0 += gs {
				for k := range gs {
					x32[k] = float32(w[r*cols+c0+k])
				}
				res.fit(g, r, c0, x32)
			}
		}
	}
	// the chunk's rows in processing order
	wp := make([]float64, n*cols)
	for r := range n {
		for i, c := range res.Perm {
			wp[r*cols+i] = w[(r0+r)*cols+c]
		}
	}
	errs := make([]float64, n*bs)
	for i1 := 0; i1 < cols; i1 += bs {
		i2 := min(i1+bs, cols)
		for r := range n {
			row, e := wp[r*cols:(r+1)*cols], errs[r*bs:(r+1)*bs]
			ri := r0 + r
			for i := i1; i < i2; i++ {
				c := res.Perm[i]
				if !static && c%gs == 0 {
					for k := range gs {
						x32[k] = float32(row[i+k])
					}
					res.fit(g, ri, c, x32)
				}
				sub := res.Subs[ri*(cols/ss)+c/ss]
				x := row[i]
				q := sub.Nearest(x)
				v := sub.Value(q)
				res.Q[ri*cols+c], res.Deq[ri*cols+c], res.Corrected[ri*cols+c] = q, v, x
				ei := (x - v) / u[i*cols+i]
				e[i-i1] = ei
				ui := u[i*cols : (i+1)*cols]
				for j := i + 1; j < i2; j++ {
					row[j] -= ei * ui[j]
				}
			}
		}
		if i2 == cols {
			break
		}
		// lazy update of the later columns: W[:, i2:] -= E·U[i1:i2, i2:]
		for i := i1; i < i2; i++ {
			ui := u[i*cols+i2 : (i+1)*cols]
			for r := range n {
				ei := errs[r*bs+i-i1]
				if ei == 0 {
					continue
				}
				row := wp[r*cols+i2 : (r+1)*cols]
				for j, uv := range ui {
					row[j] -= ei * uv
				}
			}
		}
	}
}

// fit sets the grids of row r's group starting at column c0 from x.
func (res *Result) fit(g Grid, r, c0 int, x []float32) {
	cols, ss := res.Cols, res.Sub
	s0 := r*(cols/ss) + c0/ss
	res.Headers[r*(cols/res.Group)+c0/res.Group] = g.Fit(x, res.Subs[s0:s0+res.Group/ss])
}
