// Package nn holds the layers the LLaMA block is built from: a Linear whose
// weight may be any dtype the kernels multiply, and an Embedding table that
// looks rows up in any dtype.
package nn

import (
	"fmt"
	"sync"

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

// Forward computes y[t] = W·x[t] for nt rows: x is nt×In, y is nt×Out.
// Weights the kernels multiply directly go to kernels.MatMul; the others
// (k-quants, Q4_1, Q5_x, IQ4_NL until their kernels exist) are expanded to
// float32 a tile of rows at a time and multiplied as F32: the same result
// as multiplying the dequantized matrix, without holding it whole.
func (l *Linear) Forward(y, x []float32, nt int) {
	if kernels.Supports(l.DType) {
		kernels.MatMul(l.DType, l.Data, l.Out, l.In, x[:nt*l.In], nt, y[:nt*l.Out])
		return
	}
	l.forwardDequant(y[:nt*l.Out], x[:nt*l.In], nt)
}

// fallbackTile is the number of weight elements the dequantizing fallback
// expands per tile (1 MiB of float32).
const fallbackTile = 1 << 18

// scratch pools the fallback's per-call tiles.
var scratch = sync.Pool{New: func() any { return new([]float32) }}

func getScratch(n int) *[]float32 {
	p := scratch.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// forwardDequant is Forward's path for weights without a kernel.
func (l *Linear) forwardDequant(y, x []float32, nt int) {
	rb, _ := l.DType.RowBytes(l.In)
	tile := max(1, min(l.Out, fallbackTile/l.In))
	wp := getScratch(tile * l.In)
	defer scratch.Put(wp)
	w := *wp
	var yt []float32
	if nt > 1 {
		yp := getScratch(nt * tile)
		defer scratch.Put(yp)
		yt = *yp
	}
	for r0 := 0; r0 < l.Out; r0 += tile {
		n := min(tile, l.Out-r0)
		kernels.ParallelFor(n, max(1, 4096/l.In), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				src := l.Data[(r0+r)*rb : (r0+r+1)*rb]
				if err := tensor.Dequantize(l.DType, w[r*l.In:(r+1)*l.In], src); err != nil {
					panic(err) // unreachable: NewLinear checked the dtype and sizes
				}
			}
		})
		wb := tensor.BytesOfF32(w[:n*l.In])
		if nt == 1 {
			kernels.MatMul(tensor.F32, wb, n, l.In, x, 1, y[r0:r0+n])
			continue
		}
		kernels.MatMul(tensor.F32, wb, n, l.In, x, nt, yt[:nt*n])
		for t := 0; t < nt; t++ {
			copy(y[t*l.Out+r0:t*l.Out+r0+n], yt[t*n:(t+1)*n])
		}
	}
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
