package gptq

import (
	"fmt"
	"math"
)

// cholesky factors the symmetric positive definite n×n matrix a (row-major,
// lower triangle read) in place into L with a = L·Lᵀ, L in the lower
// triangle and zeros above. It fails at the first pivot that is not
// positive (or not finite), naming its column; a pivot below 1e-12 of its
// diagonal entry counts as zero (the matrix is singular up to rounding).
func cholesky(a []float64, n int) error {
	for j := 0; j < n; j++ {
		rj := a[j*n : j*n+n]
		s := rj[j]
		diag := s
		for k := 0; k < j; k++ {
			s -= rj[k] * rj[k]
		}
		if !(s > 1e-12*diag) || math.IsInf(s, 0) {
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
// (also lower triangular), row by row: row i of the inverse is
// (e_i − Σ_{k<i} l_ik·row k)/l_ii, each term a contiguous row update.
func invertLower(l []float64, n int) {
	row := make([]float64, n)
	for i := 0; i < n; i++ {
		li := l[i*n : i*n+n]
		clear(row)
		for k := 0; k < i; k++ {
			f := li[k]
			if f == 0 {
				continue
			}
			xk := l[k*n : k*n+k+1]
			for j, v := range xk {
				row[j] -= f * v
			}
		}
		d := 1 / li[i]
		for j := 0; j < i; j++ {
			li[j] = row[j] * d
		}
		li[i] = d
	}
}

// upperInverseFactor returns U, upper triangular with H⁻¹ = Uᵀ·U, for the
// symmetric positive definite n×n matrix h (left unchanged): the Cholesky
// factor of the inverse GPTQ's updates read rows of (the paper's
// "Cholesky(H⁻¹)ᵀ"). With P the order-reversing permutation,
// P·H·P = L·Lᵀ gives H = V·Vᵀ for the upper triangular V = P·L·P, so
// H⁻¹ = V⁻ᵀ·V⁻¹ and U = V⁻¹ = P·L⁻¹·P: one Cholesky factorisation and
// one triangular inversion.
func upperInverseFactor(h []float64, n int) ([]float64, error) {
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			a[i*n+j] = h[(n-1-i)*n+(n-1-j)]
		}
	}
	if err := cholesky(a, n); err != nil {
		return nil, err
	}
	invertLower(a, n)
	u := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			u[i*n+j] = a[(n-1-i)*n+(n-1-j)]
		}
	}
	return u, nil
}
