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
