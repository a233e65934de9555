package autograd

import (
	"math/rand/v2"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// LoRA is a low-rank adapter (Hu et al. 2021) on a weight W of Out×In:
// the layer computes W·x + Scale·B·(A·x) with A of Rank×In and B of
// Out×Rank, float32 row-major. GradA and GradB, when not nil, receive the
// adapter's gradients; W stays frozen.
//
// Dropout, while Train is set, zeroes each input element of the adapter
// branch with that probability (scaling the rest by 1/(1-Dropout)). It
// applies to every pass while Train is set, taped or not, and the mask is
// a function of Seed alone: every pass with the same Seed drops the same
// elements. So a recomputed block (whose first pass runs without a tape)
// computes the branch its recomputation differentiates, and a trainer
// draws a new Seed for each step. Inference leaves Train unset.
type LoRA struct {
	Rank, Out, In int
	A, B          []float32
	GradA, GradB  []float32
	Scale         float32
	Dropout       float32
	Train         bool
	Seed          uint64
	h             []float32 // Scale·A·x of the last taped pass, reused by the next
	mask          []bool    // dropout's choice of the inputs kept, likewise
}

// dropoutStream tells the dropout masks' random stream from others drawn
// from the same seed.
const dropoutStream = 0x64726f706f7574

// infer adds the branch for inference: the products are kernels.MatMul's,
// the ones the base weights use, so each row's result is the same whatever
// the batch (continuous batching with an adapter attached answers as a
// request alone does) and small products pay no packing. The scratch is the
// call's own: passes may run concurrently on one model.
func (a *LoRA) infer(y *Var, xs []float32, nt int) {
	h := make([]float32, nt*a.Rank+nt*a.Out)
	h, o := h[:nt*a.Rank], h[nt*a.Rank:]
	kernels.MatMul(tensor.F32, tensor.BytesOfF32(a.A), a.Rank, a.In, xs, nt, h)
	for i := range h {
		h[i] *= a.Scale
	}
	kernels.MatMul(tensor.F32, tensor.BytesOfF32(a.B), a.Out, a.Rank, h, nt, o)
	yd := y.Data[:nt*a.Out]
	kernels.Add(yd, yd, o)
}

// ApplyLoRA adds a's branch, Scale·B·(A·x), to y for nt rows (x nt×In, y
// nt×Out): run it after the base product into y. Backward adds to x's
// gradient and to the adapter's. A taped pass keeps only A·x (nt×Rank) and,
// with dropout, one mask byte per input element: the dropped input is
// rebuilt from x, a tile of rows at a time, when a product needs it. With dropout, run the
// adapter once per pass (the mask lives in a until the next pass).
func ApplyLoRA(t *Tape, y, x *Var, a *LoRA, nt int) {
	n := nt * a.In
	xs := x.Data[:n]
	drop := a.Train && a.Dropout > 0
	keep := 1 / (1 - a.Dropout)
	if drop {
		if cap(a.mask) < n {
			a.mask = make([]bool, n)
		}
		mask := a.mask[:n]
		rng := rand.New(rand.NewPCG(a.Seed, dropoutStream))
		for i := range mask {
			mask[i] = rng.Float32() >= a.Dropout
		}
	}
	if t == nil && !a.Train {
		a.infer(y, xs, nt)
		return
	}
	// h = Scale·(x·Aᵀ), then y += h·Bᵀ. One adapter runs once per taped
	// pass (twice, with the same values, when recomputing), so h can be the
	// last pass's memory.
	a.h = growF(a.h, nt*a.Rank)
	h := a.h
	if drop {
		a.dropped(xs, nt, keep, func(r0, r1 int, xd []float32) {
			kernels.GemmNT(r1-r0, a.Rank, a.In, xd, a.A, h[r0*a.Rank:r1*a.Rank], false)
		})
	} else {
		kernels.GemmNT(nt, a.Rank, a.In, xs, a.A, h, false)
	}
	for i := range h {
		h[i] *= a.Scale
	}
	kernels.GemmNT(nt, a.Out, a.Rank, h, a.B, y.Data[:nt*a.Out], true)
	if t == nil {
		return
	}
	t.Record(func() {
		dy := y.Grad[:nt*a.Out]
		if a.GradB != nil {
			kernels.GemmTN(a.Out, a.Rank, nt, dy, h, a.GradB, true) // dB += dyᵀ·h
		}
		if a.GradA == nil && x.Grad == nil {
			return
		}
		dp := getScratch(nt * a.Rank)
		defer dequantScratch.Put(dp)
		dh := *dp
		kernels.GemmNN(nt, a.Rank, a.Out, dy, a.B, dh, false) // dh = Scale·dy·B
		for i := range dh {
			dh[i] *= a.Scale
		}
		if a.GradA != nil { // dA += dhᵀ·x
			if drop {
				a.dropped(xs, nt, keep, func(r0, r1 int, xd []float32) {
					kernels.GemmTN(a.Rank, a.In, r1-r0, dh[r0*a.Rank:r1*a.Rank], xd, a.GradA, true)
				})
			} else {
				kernels.GemmTN(a.Rank, a.In, nt, dh, xs, a.GradA, true)
			}
		}
		if x.Grad == nil {
			return
		}
		if !drop {
			kernels.GemmNN(nt, a.In, a.Rank, dh, a.A, x.Grad[:n], true) // dx += dh·A
			return
		}
		// dx += mask∘(dh·A)·keep, a tile of rows at a time
		gp := getScratch(min(nt, dropTile) * a.In)
		defer dequantScratch.Put(gp)
		for r0 := 0; r0 < nt; r0 += dropTile {
			r1 := min(nt, r0+dropTile)
			g := (*gp)[:(r1-r0)*a.In]
			kernels.GemmNN(r1-r0, a.In, a.Rank, dh[r0*a.Rank:r1*a.Rank], a.A, g, false)
			dx := x.Grad[r0*a.In : r1*a.In]
			for i, k := range a.mask[r0*a.In : r1*a.In] {
				if k {
					dx[i] += g[i] * keep
				}
			}
		}
	})
}

// dropTile is the rows of dropped-out input built at a time: the scratch
// of dropout is dropTile·In floats, however long the batch.
const dropTile = 64

// dropped calls f for each tile of rows [r0, r1) of the nt rows of xs with
// xd their dropped-out input (a's mask applied, the kept elements scaled
// by keep), built in pooled scratch valid during the call.
func (a *LoRA) dropped(xs []float32, nt int, keep float32, f func(r0, r1 int, xd []float32)) {
	p := getScratch(min(nt, dropTile) * a.In)
	defer dequantScratch.Put(p)
	for r0 := 0; r0 < nt; r0 += dropTile {
		r1 := min(nt, r0+dropTile)
		xd := (*p)[:(r1-r0)*a.In]
		for i, k := range a.mask[r0*a.In : r1*a.In] {
			xd[i] = 0
			if k {
				xd[i] = xs[r0*a.In+i] * keep
			}
		}
		f(r0, r1, xd)
	}
}

// Delta returns Scale·B·A, the adapter's change to W (Out×In), computed in
// float64 and rounded once.
func (a *LoRA) Delta() []float32 {
	d := make([]float32, a.Out*a.In)
	row := make([]float64, a.In)
	for o := range a.Out {
		clear(row)
		for r := range a.Rank {
			b := float64(a.B[o*a.Rank+r])
			if b == 0 {
				continue
			}
			for i, v := range a.A[r*a.In : (r+1)*a.In] {
				row[i] += b * float64(v)
			}
		}
		for i, v := range row {
			d[o*a.In+i] = float32(float64(a.Scale) * v)
		}
	}
	return d
}

// growF returns n elements of b's memory, or new memory when b is short.
func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}
