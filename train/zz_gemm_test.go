package train

import (
	"testing"

	"github.com/herd-llm/herd/kernels"
)

func BenchmarkZZGemm(b *testing.B) {
	for _, c := range []struct {
		name    string
		m, n, k int
		f       func(m, n, k int, a, b, c []float32, acc bool)
	}{
		{"fwdNT-cls", 2048, 32000, 288, kernels.GemmNT},
		{"dxNN-cls", 2048, 288, 32000, kernels.GemmNN},
		{"dwTN-cls", 32000, 288, 2048, kernels.GemmTN},
		{"fwdNT-ffn", 2048, 768, 288, kernels.GemmNT},
		{"dxNN-ffn", 2048, 288, 768, kernels.GemmNN},
		{"dwTN-ffn", 768, 288, 2048, kernels.GemmTN},
		{"fwdNT-qkv", 2048, 288, 288, kernels.GemmNT},
		{"dxNN-qkv", 2048, 288, 288, kernels.GemmNN},
		{"dwTN-qkv", 288, 288, 2048, kernels.GemmTN},
	} {
		b.Run(c.name, func(b *testing.B) {
			x := make([]float32, c.m*c.k)
			y := make([]float32, c.n*c.k)
			z := make([]float32, c.m*c.n)
			for i := range x { x[i] = float32(i%7) }
			for i := range y { y[i] = float32(i%5) }
			for range b.N {
				c.f(c.m, c.n, c.k, x, y, z, true)
			}
			b.ReportMetric(2*float64(c.m*c.n*c.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
