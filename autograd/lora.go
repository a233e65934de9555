package autograd

import (
	"math/rand/v2"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// LoRA is a low-rank adapter (Hu et al. 2021) on a weight W of Out×In:
// the layer computes W·x + Scale·B·(A·x) with A of Rank×In and B of
// Out×Rank, float32 row-major. GradA and GradB, when not nil, receive the
// adapter's gradients; W stays frozen. Dropout, during a taped pass with
// Rng set, zeroes each input element of the adapter branch with that
// probability (scaling the rest by 1/(1-Dropout)).
type LoRA struct {
	Rank, Out, In int
	A, B          []float32
	GradA, GradB  []float32
	Scale         float32
	Dropout       float32
	Rng           *rand.Rand
	// buffers of a taped pass, reused by the next one: a.B·(A·x) before
	// the scale, A·x, and their gradients
	z, h *Var
	// dropout's mask, the masked input and its gradient
	mask, xd, dxd []float32
}

// ApplyLoRA adds a's branch, Scale·B·(A·x), to y for nt rows (x nt×In, y
// nt×Out): run it after the base product into y. Backward adds to x's
// gradient and to the adapter's.
func ApplyLoRA(t *Tape, y, x *Var, a *LoRA, nt int) {
	in := x
	if t != nil && a.Dropout > 0 && a.Rng != nil {
		keep := 1 / (1 - a.Dropout)
		a.mask, a.xd = growF(a.mask, nt*a.In), growF(a.xd, nt*a.In)
		mask, xd := a.mask, a.xd
		for i := range mask {
			mask[i] = 0
			if a.Rng.Float32() >= a.Dropout {
				mask[i] = keep
			}
			xd[i] = x.Data[i] * mask[i]
		}
		in = &Var{Data: xd}
		if x.Grad != nil {
			a.dxd = growF(a.dxd, nt*a.In)
			in.Grad = a.dxd
			clear(in.Grad)
			gx, gin := x.Grad[:nt*a.In], in.Grad
			// runs after the branch's backward: dx += din ⊙ mask
			t.Record(func() {
				for i, m := range mask {
					gx[i] += gin[i] * m
				}
			})
		}
	}
	var h, z *Var
	if t == nil {
		h, z = NewVar(nt*a.Rank, false), NewVar(nt*a.Out, false)
	} else {
		// one adapter runs once per taped pass (twice, with the same
		// values, when recomputing), so its buffers can be the last pass's
		a.h, a.z = grow(a.h, nt*a.Rank), grow(a.z, nt*a.Out)
		h, z = a.h, a.z
		clear(h.Grad)
		clear(z.Grad)
	}
	Linear(t, h, in, Weight{Name: "lora_A", DType: tensor.F32, Data: tensor.BytesOfF32(a.A), Out: a.Rank, In: a.In, Grad: a.GradA}, nt)
	Linear(t, z, h, Weight{Name: "lora_B", DType: tensor.F32, Data: tensor.BytesOfF32(a.B), Out: a.Out, In: a.Rank, Grad: a.GradB}, nt)
	kernels.Axpy(a.Scale, z.Data, y.Data[:nt*a.Out])
	if t != nil {
		t.Record(func() { kernels.Axpy(a.Scale, y.Grad[:nt*a.Out], z.Grad) })
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

// grow returns a Var with gradient of n elements, reusing v's memory.
func grow(v *Var, n int) *Var {
	if v == nil || cap(v.Data) < n {
		return NewVar(n, true)
	}
	return &Var{Data: v.Data[:n], Grad: v.Grad[:n]}
}

// growF returns n elements of b's memory, or new memory when b is short.
func growF(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}
