// Package nn holds the layers the LLaMA block is built from: a Linear whose
// weight may be any dtype the kernels multiply, and an Embedding table that
// looks rows up in any dtype.
package nn

import (
	"fmt"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// Linear is y = W·x for a weight W of Out rows by In columns stored in DType
// exactly as GGUF stores it (row-major, each row In elements). Data usually
// aliases a memory-mapped file.
type Linear struct {
	Name  string
	DType tensor.DType
	Out   int // rows of W: output features
	In    int // columns of W: input features
	Data  []byte
	// LoRA lists low-rank adapters the layer carries: each adds its branch
	// to W·x in every forward pass (inference and training alike) without
	// changing W.
	LoRA []*autograd.LoRA
	// Observe, when set, is called by Apply (the forward pass) with the
	// input of every product through the layer (nt rows of In) before it
	// is multiplied: how GPTQ gathers its Hessians and imatrix its
	// activation statistics. It must not keep or change x.
	Observe func(x []float32, nt int)
}

// NewLinear checks that data holds exactly out rows of in elements of dt
// and, for block formats, that every block scale is finite, so a corrupt
// file fails here rather than producing NaNs at run time. Weights of a
// dtype the kernels cannot multiply yet but tensor can expand are accepted
// and run through a dequantizing fallback (see Forward).
func NewLinear(name string, dt tensor.DType, out, in int, data []byte) (*Linear, error) {
	if !kernels.Supports(dt) && !tensor.CanDequantize(dt) {
		return nil, fmt.Errorf("tensor %s: no kernel for weight type %s", name, dt)
	}
	rb, err := dt.RowBytes(in)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", name, err)
	}
	if out <= 0 || in <= 0 || len(data) != rb*out {
		return nil, fmt.Errorf("tensor %s: %d bytes, want %d rows × %d %s elements (%d bytes)", name, len(data), out, in, dt, rb*out)
	}
	if dt.IsQuantized() {
		if err := validateRows(dt, data, rb, out); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
	}
	return &Linear{Name: name, DType: dt, Out: out, In: in, Data: data}, nil
}

// validateRows runs tensor.ValidateBlocks over the rows of a weight, spread
// over the kernel threads, and reports the first bad row.
func validateRows(dt tensor.DType, data []byte, rb, rows int) error {
	errs := make([]error, rows)
	kernels.ParallelFor(rows, max(1, (1<<20)/rb), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			if err := tensor.ValidateBlocks(dt, data[r*rb:(r+1)*rb]); err != nil {
				errs[r] = err
				return
			}
		}
	})
	for r, err := range errs {
		if err != nil {
			return fmt.Errorf("row %d: %w", r, err)
		}
	}
	return nil
}

// Apply is the one weight product of the model, at inference and in
// training alike: y = W·x for the nt rows of x (nt×In into nt×Out), plus
// the branches of the adapters the layer carries, through
// autograd.Linear (kernels.MatMul, or its dequantizing fallback for a
// dtype the kernels cannot multiply yet). With a tape it records the
// backward pass, accumulating W's gradient into grad when grad is not nil.
func (l *Linear) Apply(tp *autograd.Tape, y, x *autograd.Var, grad []float32, nt int) {
	l.ApplyBatch(tp, y, x, grad, nt, false)
}

// ApplyBatch is Apply; batch multiplies by kernels.MatMulBatch (see
// autograd.Weight.Batch).
func (l *Linear) ApplyBatch(tp *autograd.Tape, y, x *autograd.Var, grad []float32, nt int, batch bool) {
	if l.Observe != nil {
		l.Observe(x.Data[:nt*l.In], nt)
	}
	w := l.Weight(grad)
	w.Batch = batch
	autograd.Linear(tp, y, x, w, nt)
	for _, a := range l.LoRA {
		autograd.ApplyLoRA(tp, y, x, a, nt)
	}
}

// Weight is the autograd view of the matrix, with grad as its gradient
// (nil: none).
func (l *Linear) Weight(grad []float32) autograd.Weight {
	return autograd.Weight{Name: l.Name, DType: l.DType, Data: l.Data, Out: l.Out, In: l.In, Grad: grad}
}

// Forward computes y[t] = W·x[t] (plus the adapters' branches) for nt
// rows without a tape: Apply on plain slices.
func (l *Linear) Forward(y, x []float32, nt int) {
	l.Apply(nil, &autograd.Var{Data: y[:nt*l.Out]}, &autograd.Var{Data: x[:nt*l.In]}, nil, nt)
}

// Row expands row r of W into dst (len In): an embedding lookup.
func (l *Linear) Row(dst []float32, r int) {
	rb, _ := l.DType.RowBytes(l.In)
	if err := tensor.Dequantize(l.DType, dst[:l.In], l.Data[r*rb:(r+1)*rb]); err != nil {
		panic(err) // unreachable: NewLinear checked the dtype and sizes
	}
}

// Params returns the number of weights.
func (l *Linear) Params() int64 { return int64(l.Out) * int64(l.In) }
