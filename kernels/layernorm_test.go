package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLayerNormRef checks LayerNorm and GELU against float64 references
// written from their definitions.
func TestLayerNormRef(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 37
	x, w, b, y := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range x {
		x[i], w[i], b[i] = float32(r.NormFloat64()*3+1), float32(r.NormFloat64()), float32(r.NormFloat64())
	}
	LayerNorm(y, x, w, b, 1e-5)
	var mu, v float64
	for _, e := range x {
		mu += float64(e) / n
	}
	for _, e := range x {
		v += (float64(e) - mu) * (float64(e) - mu) / n
	}
	for i := range x {
		want := (float64(x[i])-mu)/math.Sqrt(v+1e-5)*float64(w[i]) + float64(b[i])
		if math.Abs(float64(y[i])-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Fatalf("LayerNorm[%d] = %g, want %g", i, y[i], want)
		}
	}
	GELU(y, x)
	for i := range x {
		want := float64(x[i]) * 0.5 * math.Erfc(-float64(x[i])/math.Sqrt2)
		if math.Abs(float64(y[i])-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Fatalf("GELU(%g) = %g, want %g", x[i], y[i], want)
		}
	}
}
