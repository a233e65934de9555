//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// TestFloatDotsAVX512BitIdentical: the AVX-512 float MatMul kernels keep
// the AVX2 kernels' two eight-lane sums in the halves of one ZMM register,
// so every element must come out bit for bit the same on both paths, for
// column counts with and without a last chunk of eight and a tail.
func TestFloatDotsAVX512BitIdentical(t *testing.T) {
	if !slices.Contains(CPUPaths(), PathAVX512) {
		t.Skip("this CPU does not run the avx512 path")
	}
	was := CPUPath()
	defer setPath(was)
	r := rand.New(rand.NewPCG(31, 32))
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		for _, sz := range [][2]int{{1, 8}, {3, 16}, {4, 24}, {5, 40}, {9, 64}, {6, 97}, {17, 296}, {8, 1031}} {
			rows, cols := sz[0], sz[1]
			w, _ := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
			for _, nt := range []int{1, 2, 3, 4, 7} {
				x := randVec(r, nt*cols)
				y := map[string][]float32{}
				for _, p := range []string{PathAVX2, PathAVX512} {
					setPath(p)
					y[p] = make([]float32, nt*rows)
					MatMul(dt, w, rows, cols, x, nt, y[p])
				}
				for i, v := range y[PathAVX512] {
					if math.Float32bits(v) != math.Float32bits(y[PathAVX2][i]) {
						t.Fatalf("%s %dx%d nt=%d: y[%d] = %g on avx512, %g on avx2", dt, rows, cols, nt, i, v, y[PathAVX2][i])
					}
				}
			}
		}
	}
}
