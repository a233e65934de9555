package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refGemm returns C (+ c0 when accumulate) = op(A)·op(B) in float64, with
// the Σ|a·b| scale of each element. at(i,p) and bt(p,j) read the operands.
func refGemm(m, n, k int, at, bt func(i, j int) float32, c0 []float32, accumulate bool) (want, scale []float64) {
	want = make([]float64, m*n)
	scale = make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, a float64
			for p := range k {
				x := float64(at(i, p)) * float64(bt(p, j))
				s += x
				a += math.Abs(x)
			}
			if accumulate {
				s += float64(c0[i*n+j])
				a += math.Abs(float64(c0[i*n+j]))
			}
			want[i*n+j], scale[i*n+j] = s, a+1e-6
		}
	}
	return want, scale
}

var gemmSizes = [][3]int{
	{1, 1, 1}, {1, 7, 33}, {7, 1, 33}, {7, 33, 1}, {6, 16, 256}, {12, 32, 512},
	{7, 17, 257}, {13, 35, 300}, {33, 33, 33}, {150, 50, 70}, {300, 20, 9},
	{2, 4097, 3}, {5, 70, 600},
}

// TestGemm checks gemm against the float64 reference on every CPU path.
func TestGemm(t *testing.T) { forEachPath(t, gemmMatchesRef) }

func gemmMatchesRef(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	withThreads(t, func(t *testing.T) {
		for _, sz := range gemmSizes {
			m, n, k := sz[0], sz[1], sz[2]
			for _, variant := range []string{"NT", "NN", "TN"} {
				for _, acc := range []bool{false, true} {
					a, b := randVec(r, m*k), randVec(r, k*n)
					c := randVec(r, m*n)
					c0 := append([]float32(nil), c...)
					var at, bt func(i, j int) float32
					switch variant {
					case "NT":
						at = func(i, p int) float32 { return a[i*k+p] }
						bt = func(p, j int) float32 { return b[j*k+p] }
						GemmNT(m, n, k, a, b, c, acc)
					case "NN":
						at = func(i, p int) float32 { return a[i*k+p] }
						bt = func(p, j int) float32 { return b[p*n+j] }
						GemmNN(m, n, k, a, b, c, acc)
					case "TN":
						at = func(i, p int) float32 { return a[p*m+i] }
						bt = func(p, j int) float32 { return b[p*n+j] }
						GemmTN(m, n, k, a, b, c, acc)
					}
					want, scale := refGemm(m, n, k, at, bt, c0, acc)
					closeTo(t, fmt.Sprintf("threads=%d Gemm%s %dx%dx%d acc=%v", Threads(), variant, m, n, k, acc), c, want, scale, 1e-5)
				}
			}
		}
	})
}

func TestGemmZeroK(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	GemmNT(2, 2, 0, nil, nil, c, true)
	if c[3] != 4 {
		t.Fatalf("accumulate with k=0 changed C: %v", c)
	}
	GemmNN(2, 2, 0, nil, nil, c, false)
	for _, v := range c {
		if v != 0 {
			t.Fatalf("k=0 without accumulate left C = %v, want zeros", c)
		}
	}
}
