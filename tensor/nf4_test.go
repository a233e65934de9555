package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestNF4 checks the round trip against a float64 reference of the
// nearest-level rule, and the error budget on normal weights.
func TestNF4(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 4 * NF4Block
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * 0.02
	}
	x[5] = 0
	rb, err := NF4.RowBytes(n)
	if err != nil || rb != 4*34 {
		t.Fatalf("RowBytes = %d, %v", rb, err)
	}
	q := make([]byte, rb)
	if err := Quantize(NF4, q, x); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, n)
	if err := Dequantize(NF4, y, q); err != nil {
		t.Fatal(err)
	}
	var se, sx float64
	for b := range n / NF4Block {
		var amax float64
		for _, v := range x[b*NF4Block : (b+1)*NF4Block] {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		d := float64(F16ToF32(F32ToF16(float32(amax))))
		for i := b * NF4Block; i < (b+1)*NF4Block; i++ {
			// the reference: the level nearest x/d, in float64
			best, bd := 0.0, math.Inf(1)
			for _, l := range nf4Levels {
				if e := math.Abs(float64(x[i])/d - float64(l)); e < bd {
					best, bd = float64(l), e
				}
			}
			if want := float32(best * d); math.Abs(float64(y[i]-want)) > 1e-9 {
				t.Fatalf("element %d: %g, want %g (x %g)", i, y[i], want, x[i])
			}
			se += (float64(y[i]) - float64(x[i])) * (float64(y[i]) - float64(x[i]))
			sx += float64(x[i]) * float64(x[i])
		}
	}
	if y[5] != 0 {
		t.Errorf("zero became %g", y[5])
	}
	if rel := math.Sqrt(se / sx); rel > 0.12 {
		t.Errorf("relative RMS error %.3f over the budget 0.12", rel)
	}
	if err := ValidateBlocks(NF4, q); err != nil {
		t.Error(err)
	}
	if _, err := NF4.RowBytes(100); err == nil {
		t.Error("accepted a row of 100")
	}
}

// TestNF4DQ: the double-quantized scales cost little accuracy against
// NF4's float16 ones, at 134 bytes per 256 weights.
func TestNF4DQ(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 8 * NF4DQBlock
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * 0.02
	}
	rms := func(dt DType) float64 {
		rb, err := dt.RowBytes(n)
		if err != nil {
			t.Fatal(err)
		}
		q := make([]byte, rb)
		y := make([]float32, n)
		if err := Quantize(dt, q, x); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(dt, y, q); err != nil {
			t.Fatal(err)
		}
		var se, sx float64
		for i := range x {
			se += float64(y[i]-x[i]) * float64(y[i]-x[i])
			sx += float64(x[i]) * float64(x[i])
		}
		return math.Sqrt(se / sx)
	}
	if rb, _ := NF4DQ.RowBytes(256); rb != 134 {
		t.Errorf("RowBytes(256) = %d, want 134", rb)
	}
	a, b := rms(NF4), rms(NF4DQ)
	if b > a*1.05 || b > 0.12 {
		t.Errorf("relative RMS error: NF4 %.4f, NF4_DQ %.4f (budget: NF4 + 5%%)", a, b)
	}
	t.Logf("relative RMS error: NF4 %.4f, NF4_DQ %.4f", a, b)
}
