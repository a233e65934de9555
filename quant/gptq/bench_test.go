package gptq

import (
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// BenchmarkQuantize2048 times GPTQ on one TinyLlama-1.1B-sized square
// matrix (2048×2048, Q4_0 grid, act-order), the figure BENCHMARKS.md
// extrapolates from: go test ./quant/gptq -run - -bench Quantize2048 -benchtime 1x
func BenchmarkQuantize2048(b *testing.B) {
	const n = 2048
	rng := rand.New(rand.NewPCG(1, 1))
	w := make([]float32, n*n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	x := make([]float32, 4*n*n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	hs := NewHessian(n)
	hs.Add(x, 4*n)
	for b.Loop() {
		if _, err := Quantize(w, n, n, hs.Matrix(), Block{tensor.Q4_0}, Options{Damp: 0.01, ActOrder: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInverse2048 times the Cholesky factor of H⁻¹ alone for a
// 2048-column Hessian (part of BenchmarkQuantize2048).
func BenchmarkInverse2048(b *testing.B) {
	const n = 2048
	rng := rand.New(rand.NewPCG(2, 2))
	x := make([]float32, 4*n*n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	hs := NewHessian(n)
	hs.Add(x, 4*n)
	h := hs.Matrix()
	for b.Loop() {
		if _, err := upperInverseFactor(h, n); err != nil {
			b.Fatal(err)
		}
	}
}
