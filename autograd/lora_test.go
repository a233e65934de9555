package autograd

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// TestMatMulBackwardDequant: a frozen weight without a kernel (NF4) passes
// the same input gradient as its float32 expansion does.
func TestMatMulBackwardDequant(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rows, nt := 40, 3
	for _, dt := range []tensor.DType{tensor.NF4, tensor.NF4DQ} {
		cols := 256
		w := make([]float32, rows*cols)
		for i := range w {
			w[i] = float32(r.NormFloat64())
		}
		rb, _ := dt.RowBytes(cols)
		q := make([]byte, rb*rows)
		for i := range rows {
			tensor.Quantize(dt, q[i*rb:(i+1)*rb], w[i*cols:(i+1)*cols])
		}
		deq := make([]float32, rows*cols)
		tensor.Dequantize(dt, deq, q)
		dy := make([]float32, nt*rows)
		for i := range dy {
			dy[i] = float32(r.NormFloat64())
		}
		got, want := make([]float32, nt*cols), make([]float32, nt*cols)
		matMulBackward(dt, q, rows, cols, dy, nt, got)
		kernels.MatMulBackward(tensor.F32, tensor.BytesOfF32(deq), rows, cols, dy, nt, want)
		for i := range got {
			if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("%s: dx[%d] = %g, want %g", dt, i, got[i], want[i])
			}
		}
	}
}

// TestLoRAInferenceRowInvariant: at inference an adapter's contribution to
// a row does not depend on the other rows of the batch (continuous batching
// with an adapter answers as a request alone does), and it is B·(Scale·A·x).
func TestLoRAInferenceRowInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a := &LoRA{Rank: 8, Out: 37, In: 64, Scale: 0.5}
	a.A, a.B = make([]float32, a.Rank*a.In), make([]float32, a.Out*a.Rank)
	for i := range a.A {
		a.A[i] = float32(r.NormFloat64())
	}
	for i := range a.B {
		a.B[i] = float32(r.NormFloat64())
	}
	const nt = 7
	x := make([]float32, nt*a.In)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	batch := &Var{Data: make([]float32, nt*a.Out)}
	ApplyLoRA(nil, batch, &Var{Data: x}, a, nt)
	for row := range nt {
		one := &Var{Data: make([]float32, a.Out)}
		ApplyLoRA(nil, one, &Var{Data: x[row*a.In : (row+1)*a.In]}, a, 1)
		for o := range a.Out {
			if math.Float32bits(one.Data[o]) != math.Float32bits(batch.Data[row*a.Out+o]) {
				t.Fatalf("row %d output %d: %g alone, %g in a batch of %d", row, o, one.Data[o], batch.Data[row*a.Out+o], nt)
			}
			var want float64
			for k := range a.Rank {
				var h float64
				for i := range a.In {
					h += float64(a.A[k*a.In+i]) * float64(x[row*a.In+i])
				}
				want += float64(a.B[o*a.Rank+k]) * float64(a.Scale) * h
			}
			if math.Abs(float64(one.Data[o])-want) > 1e-4*(1+math.Abs(want)) {
				t.Fatalf("row %d output %d: %g, float64 reference %g", row, o, one.Data[o], want)
			}
		}
	}
}
