package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Helpers shared by the tests: random inputs and float64 comparisons.

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// closeTo checks got against want element by element with tolerance
// tol·scale[i] (+ a tiny absolute slack), where scale is a per-element
// magnitude such as Σ|a·b| of the dot product that made it.
func closeTo(t *testing.T, what string, got []float32, want, scale []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range want {
		s := 1.0
		if scale != nil {
			s = scale[i]
		}
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*s+1e-30) {
			if bad < 5 {
				t.Errorf("%s[%d] = %g, want %g (diff %g, allowed %g)", what, i, got[i], want[i], d, tol*s)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d values out of tolerance", what, bad, len(want))
	}
}

// withThreads runs f once for each thread count, restoring the default.
func withThreads(t *testing.T, f func(t *testing.T)) {
	for _, n := range []int{1, 2, 3} {
		SetThreads(n)
		f(t)
	}
	SetThreads(0)
}
