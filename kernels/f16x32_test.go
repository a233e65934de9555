package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// f16x32Of rounds a random rows×cols matrix to F16 and returns its plain
// bytes, its F16x32 bytes and the widened values.
func f16x32Of(t *testing.T, r *rand.Rand, rows, cols int) (plain, packed []byte, deq []float32) {
	t.Helper()
	plain, deq = quantWeights(t, tensor.F16, randVec(r, rows*cols), rows, cols)
	packed = make([]byte, len(plain))
	if err := tensor.PackRows8(tensor.F16, packed, plain, rows, cols); err != nil {
		t.Fatal(err)
	}
	return plain, packed, deq
}

var f16x32Shapes = [][2]int{{32, 1}, {32, 3}, {64, 8}, {32, 13}, {96, 64}, {64, 101}, {160, 296}, {64, 2048}}

// TestF16x32MatMul: MatMul over F16x32 against the float64 reference of
// the same half-floats and against the pure-Go chain of multiply-adds, on
// every CPU path and thread count, for column counts of every residue of
// the kernels' four-column steps and activation-row counts below, at and
// past the six-row tiles.
func TestF16x32MatMul(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(41, 42))
		withThreads(t, func(t *testing.T) {
			for _, sz := range f16x32Shapes {
				rows, cols := sz[0], sz[1]
				_, packed, deq := f16x32Of(t, r, rows, cols)
				for _, nt := range []int{1, 2, 5, 6, 7, 12, 13, 19} {
					x := randVec(r, nt*cols)
					got, gen := make([]float32, nt*rows), make([]float32, nt*rows)
					MatMul(tensor.F16x32, packed, rows, cols, x, nt, got)
					f16x32Generic(tensor.U16s(packed), rows, cols, x, nt, gen, 0, rows/tensor.F16Group)
					want, scale := refMatMul(t, tensor.F16, deq, rows, cols, x, nt)
					for i := range got {
						if d := math.Abs(float64(got[i]) - want[i]); d > 1e-5*scale[i] {
							t.Fatalf("threads=%d %dx%d nt=%d: y[%d][%d] = %g, float64 reference %g", Threads(), rows, cols, nt, i/rows, i%rows, got[i], want[i])
						}
						// the same chain of fused multiply-adds: equal but
						// where math.FMA's float64 result rounds twice
						if d := math.Abs(float64(got[i] - gen[i])); d > 1e-6*scale[i] {
							t.Fatalf("threads=%d %dx%d nt=%d: y[%d][%d] = %g, pure Go %g", Threads(), rows, cols, nt, i/rows, i%rows, got[i], gen[i])
						}
					}
				}
			}
		})
	})
}

// TestF16x32BatchInvariant: each row of an F16x32 product is the same, bit
// for bit, computed alone or in a batch of any size, on every path and
// thread count.
func TestF16x32BatchInvariant(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(43, 44))
		withThreads(t, func(t *testing.T) {
			for _, sz := range [][2]int{{64, 7}, {96, 130}, {128, 1024}} {
				rows, cols := sz[0], sz[1]
				_, packed, _ := f16x32Of(t, r, rows, cols)
				const nt = 14
				x := randVec(r, nt*cols)
				batch := make([]float32, nt*rows)
				MatMul(tensor.F16x32, packed, rows, cols, x, nt, batch)
				one := make([]float32, rows)
				for tt := range nt {
					MatMul(tensor.F16x32, packed, rows, cols, x[tt*cols:(tt+1)*cols], 1, one)
					for i, v := range one {
						if math.Float32bits(v) != math.Float32bits(batch[tt*rows+i]) {
							t.Fatalf("threads=%d %dx%d: row %d alone y[%d] = %g, in the batch %g", Threads(), rows, cols, tt, i, v, batch[tt*rows+i])
						}
					}
				}
			}
		})
	})
}

// TestF16x32AVX2AVX512BitIdentical: the AVX2 and AVX-512 kernels run the
// same chain of multiply-adds a lane, so their products agree bit for bit.
func TestF16x32AVX2AVX512BitIdentical(t *testing.T) {
	paths := CPUPaths()
	if !slices.Contains(paths, PathAVX512) || !slices.Contains(paths, PathAVX2) {
		t.Skip("this CPU does not run both the avx2 and the avx512 path")
	}
	was := CPUPath()
	defer setPath(was)
	r := rand.New(rand.NewPCG(45, 46))
	for _, sz := range f16x32Shapes {
		rows, cols := sz[0], sz[1]
		_, packed, _ := f16x32Of(t, r, rows, cols)
		for _, nt := range []int{1, 6, 13} {
			x := randVec(r, nt*cols)
			y := map[string][]float32{}
			for _, p := range []string{PathAVX2, PathAVX512} {
				setPath(p)
				y[p] = make([]float32, nt*rows)
				MatMul(tensor.F16x32, packed, rows, cols, x, nt, y[p])
			}
			for i, v := range y[PathAVX512] {
				if math.Float32bits(v) != math.Float32bits(y[PathAVX2][i]) {
					t.Fatalf("%dx%d nt=%d: y[%d] = %g on avx512, %g on avx2", rows, cols, nt, i, v, y[PathAVX2][i])
				}
			}
		}
	}
}

func TestF16x32Refusals(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MatMul(F16x32) of 40 rows did not panic")
		}
	}()
	MatMul(tensor.F16x32, make([]byte, 2*40*8), 40, 8, make([]float32, 8), 1, make([]float32, 40))
}
