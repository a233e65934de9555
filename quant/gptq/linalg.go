package gptq

import (
	"fmt"
	"math"
)

// cholesky factors the symmetric positive definite n×n matrix a (row-major,
// lower triangle read) in place into L with a = L·Lᵀ, L in the lower
// triangle and zeros above. It fails at the first pivot that is not
// positive (or not finite), naming its column.
func cholesky(a []float64, n int) error {
	for j := 0; j < n; j++ {
		rj := a[j*n : j*n+n]
		s := rj[j]
		for k := 0; k < j; k++ {
			s -= rj[k] * rj[k]
		}
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("pivot %d is %g: the matrix is not positive definite", j, s)
		}
		d := math.Sqrt(s)
		rj[j] = d
		for i := j + 1; i < n; i++ {
			ri := a[i*n : i*n+n]
			t := ri[j]
			for k := 0; k < j; k++ {
				t -= ri[k] * rj[k]
			}
			ri[j] = t / d
		}
		clear(rj[j+1:])
	}
	return nil
}

// invertLower replaces the lower triangular n×n matrix l by its inverse
// (also lower triangular).
func invertLower(l []float64, n int) {
	for j := 0; j < n; j++ {
		l[j*n+j] = 1 / l[j*n+j]
		for i := j + 1; i < n; i++ {
			var s float64
			for k := j; k < i; k++ {
				s += l[i*n+k] * l[k*n+j]
			}
			l[i*n+j] = -s / l[i*n+i]
		}
	}
}

// upperInverseFactor returns U, upper triangular with H⁻¹ = Uᵀ·U, for the
// symmetric positive definite n×n matrix h (left unchanged): the Cholesky
// factor of the inverse GPTQ's updates read rows of (the paper's
// "Cholesky(H⁻¹)ᵀ"). It is computed as H = L·Lᵀ, H⁻¹ = L⁻ᵀ·L⁻¹, then
// H⁻¹ = C·Cᵀ and U = Cᵀ.
func upperInverseFactor(h []float64, n int) ([]float64, error) {
	l := append([]float64(nil), h...)
	if err := cholesky(l, n); err != nil {
		return nil, err
	}
	invertLower(l, n)
	// hinv = L⁻ᵀ·L⁻¹: hinv[i][j] = Σ_k≥max(i,j) Li[k][i]·Li[k][j]
	hinv := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			for k := i; k < n; k++ {
				s += l[k*n+i] * l[k*n+j]
			}
			hinv[i*n+j], hinv[j*n+i] = s, s
		}
	}
	if err := cholesky(hinv, n); err != nil {
		return nil, fmt.Errorf("inverse: %w", err)
	}
	u := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			u[j*n+i] = hinv[i*n+j]
		}
	}
	return u, nil
}
