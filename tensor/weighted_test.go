package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestWeightedLowersWeightedError checks, for every weighted type, that
// with strongly uneven importance weights the weighted quantizer's
// importance-weighted squared error is below the unweighted reference's,
// and that the blocks decode.
func TestWeightedLowersWeightedError(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	n := 1024
	for _, d := range []DType{Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K} {
		var errW, errR float64
		for range 8 {
			x := make([]float32, n)
			qw := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
				qw[i] = float32(math.Exp(3 * rng.NormFloat64()))
			}
			rb, _ := d.RowBytes(n)
			a, b := make([]byte, rb), make([]byte, rb)
			if err := QuantizeRowWeighted(d, a, x, qw); err != nil {
				t.Fatal(err)
			}
			if err := Quantize(d, b, x); err != nil {
				t.Fatal(err)
			}
			if err := ValidateBlocks(d, a); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			ya, yb := make([]float32, n), make([]float32, n)
			_ = Dequantize(d, ya, a)
			_ = Dequantize(d, yb, b)
			for i := range x {
				errW += float64(qw[i]) * math.Pow(float64(ya[i]-x[i]), 2)
				errR += float64(qw[i]) * math.Pow(float64(yb[i]-x[i]), 2)
			}
		}
		if !(errW < errR) {
			t.Errorf("%s: weighted error %.4g not below the reference's %.4g", d, errW, errR)
		}
		t.Logf("%s: importance-weighted error %.4g vs %.4g unweighted (%.2f×)", d, errW, errR, errW/errR)
	}
	if err := QuantizeRowWeighted(Q4_0, make([]byte, 18), make([]float32, 32), make([]float32, 31)); err == nil {
		t.Error("31 weights for 32 values: no error")
	}
}
