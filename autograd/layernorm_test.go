package autograd

import (
	"math/rand/v2"
	"testing"
)

// TestLayerNormOp checks LayerNorm's backward (input, gain, bias) against
// central finite differences.
func TestLayerNormOp(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	rows, dim := 3, 10
	x, gx := randVec(r, rows*dim, 2), make([]float32, rows*dim)
	w, gw := randVec(r, dim, 1), make([]float32, dim)
	b, gb := randVec(r, dim, 1), make([]float32, dim)
	build := func(tp *Tape) *Var {
		y := NewVar(rows*dim, true)
		LayerNorm(tp, y, &Var{Data: x, Grad: gx}, w, gw, b, gb, rows, dim, 1e-5)
		return y
	}
	checkGrads(t, "LayerNorm", build, []leaf{{"x", x, gx}, {"gain", w, gw}, {"bias", b, gb}}, 2e-3)
}

// TestGELUOp checks GELU's backward against central finite differences,
// with the input also read by an Add (its gradient must accumulate).
func TestGELUOp(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	n := 24
	u, gu := randVec(r, n, 2), make([]float32, n)
	build := func(tp *Tape) *Var {
		uv := &Var{Data: u, Grad: gu}
		h := NewVar(n, true)
		GELU(tp, h, uv)
		out := NewVar(n, true)
		Add(tp, out, h, uv)
		return out
	}
	checkGrads(t, "GELU+Add", build, []leaf{{"up", u, gu}}, 2e-3)
}
