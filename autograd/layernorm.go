package autograd

import "github.com/herd-llm/herd/kernels"

// LayerNorm normalises rows rows of dim of x into y (kernels.LayerNorm)
// with gain w and bias b (nil: none). Backward adds to x's gradient and to
// gw and gb when they are not nil.
func LayerNorm(t *Tape, y, x *Var, w, gw, b, gb []float32, rows, dim int, eps float32) {
	for i := range rows {
		kernels.LayerNorm(y.Data[i*dim:(i+1)*dim], x.Data[i*dim:(i+1)*dim], w, b, eps)
	}
	if t == nil || (x.Grad == nil && gw == nil && gb == nil) {
		return
	}
	t.Record(func() {
		dx := x.Grad
		if dx == nil {
			dx = make([]float32, rows*dim)
		}
		if b == nil {
			gb = nil
		}
		kernels.LayerNormBackward(dx, gw, gb, y.Grad, x.Data, w, rows, dim, eps)
	})
}

// GELU computes out = gelu(in) (the exact erf form) over len(out.Data)
// elements. Backward adds to in's gradient.
func GELU(t *Tape, out, in *Var) {
	n := len(out.Data)
	kernels.GELU(out.Data, in.Data[:n])
	if t == nil || in.Grad == nil {
		return
	}
	t.Record(func() { kernels.GELUBackward(in.Grad[:n], out.Grad[:n], in.Data[:n]) })
}
