package tensor

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkQuantize reports the reference quantizers' speed in input
// MB/s (float32 weights), per format, on one 4096-wide row.
func BenchmarkQuantize(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for _, d := range blockTypes {
		b.Run(d.String(), func(b *testing.B) {
			rb, _ := d.RowBytes(len(x))
			q := make([]byte, rb)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				_ = Quantize(d, q, x)
			}
		})
	}
}

// BenchmarkDequantize reports the dequantizers' speed in output MB/s.
func BenchmarkDequantize(b *testing.B) {
	x := ramp(1, 4096)
	y := make([]float32, len(x))
	for _, d := range blockTypes {
		b.Run(d.String(), func(b *testing.B) {
			rb, _ := d.RowBytes(len(x))
			q := make([]byte, rb)
			_ = Quantize(d, q, x)
			b.SetBytes(int64(4 * len(x)))
			for b.Loop() {
				_ = Dequantize(d, y, q)
			}
		})
	}
}
