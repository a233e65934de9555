package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

var weightTypes = []tensor.DType{
	tensor.F32, tensor.F16, tensor.BF16,
	tensor.Q8_0, tensor.Q4_0, tensor.Q5_0, tensor.Q4_1, tensor.Q5_1, tensor.IQ4_NL,
	tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K,
}

// quantWeights packs a rows×cols float32 matrix into dtype dt and returns the
// bytes and the values they decode to.
func quantWeights(t testing.TB, dt tensor.DType, w []float32, rows, cols int) ([]byte, []float32) {
	t.Helper()
	rb, err := dt.RowBytes(cols)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, rows*rb)
	deq := make([]float32, rows*cols)
	for r := range rows {
		if err := tensor.Quantize(dt, b[r*rb:(r+1)*rb], w[r*cols:(r+1)*cols]); err != nil {
			t.Fatal(err)
		}
		if err := tensor.Dequantize(dt, deq[r*cols:(r+1)*cols], b[r*rb:(r+1)*rb]); err != nil {
			t.Fatal(err)
		}
	}
	return b, deq
}

// actType is the activation format the kernels quantize X to for weights
// of dtype dt (F32 for the float types, which use X as it is).
func actType(dt tensor.DType) tensor.DType {
	switch dt {
	case tensor.F32, tensor.F16, tensor.BF16:
		return tensor.F32
	case tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K:
		return tensor.Q8_K
	}
	return tensor.Q8_0
}

// refMatMul computes Y = X·Wᵀ in float64 from the decoded weights; for
// quantized weights X is decoded from its quantized form, as the kernels
// use it.
func refMatMul(t testing.TB, dt tensor.DType, deq []float32, rows, cols int, x []float32, nt int) (want, scale []float64) {
	xs := x
	if at := actType(dt); at != tensor.F32 {
		xs = make([]float32, len(x))
		rb, err := at.RowBytes(cols)
		if err != nil {
			t.Fatal(err)
		}
		q := make([]byte, rb)
		for i := range nt {
			if at == tensor.Q8_K {
				tensor.QuantizeRowQ8_K(q, x[i*cols:(i+1)*cols])
				tensor.DequantizeRowQ8_K(xs[i*cols:(i+1)*cols], q)
			} else {
				// rounding halves to even as ggml's SIMD quantizer (and
				// the kernels) do; TestQuantizeQ8_0MatchesTensor compares
				// it with tensor's reference
				quantQ8_0Generic(q, x[i*cols:(i+1)*cols])
				tensor.DequantizeRowQ8_0(xs[i*cols:(i+1)*cols], q)
			}
		}
	}
	want = make([]float64, nt*rows)
	scale = make([]float64, nt*rows)
	for i := range nt {
		for r := range rows {
			var s, a float64
			for c := range cols {
				p := float64(deq[r*cols+c]) * float64(xs[i*cols+c])
				s += p
				a += math.Abs(p)
			}
			want[i*rows+r], scale[i*rows+r] = s, a+1e-6
		}
	}
	return want, scale
}

// tolerance is the allowed error of MatMul relative to Σ|w·x|: Q4_1 and
// Q5_1 multiply their minima by activation sums rounded to float16, as
// ggml's Q8_1 does.
func tolerance(dt tensor.DType) float64 {
	if dt == tensor.Q4_1 || dt == tensor.Q5_1 {
		return 2e-3
	}
	return 1e-5
}

// testShapes returns (rows, cols) pairs for dtype dt: column counts in
// whole blocks, and odd widths for the plain types.
func testShapes(dt tensor.DType) [][2]int {
	bs := dt.BlockSize()
	if bs == 1 {
		return [][2]int{{1, 32}, {7, 64}, {33, 97}, {17, 4128}, {300, 160}, {5, 1}, {16, 261}}
	}
	if bs == qkk {
		return [][2]int{{1, 256}, {7, 512}, {33, 768}, {17, 2560}, {70, 256}}
	}
	return [][2]int{{1, 32}, {7, 64}, {33, 96}, {17, 4128}, {300, 160}}
}

// TestMatMul checks MatMul against the float64 reference for every dtype,
// thread count and CPU path.
func TestMatMul(t *testing.T) {
	forEachPath(t, matMul)
}

func matMul(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	withThreads(t, func(t *testing.T) {
		for _, dt := range weightTypes {
			for _, sz := range testShapes(dt) {
				rows, cols := sz[0], sz[1]
				w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
				for _, nt := range []int{1, 2, 7, 20} {
					if testing.Short() && nt == 20 && rows*cols > 1<<14 {
						continue
					}
					x := randVec(r, nt*cols)
					y := randVec(r, nt*rows)
					MatMul(dt, w, rows, cols, x, nt, y)
					want, scale := refMatMul(t, dt, deq, rows, cols, x, nt)
					closeTo(t, fmt.Sprintf("threads=%d MatMul %s %dx%d nt=%d", Threads(), dt, rows, cols, nt), y, want, scale, tolerance(dt))
				}
			}
		}
	})
}

// TestMatMulBatchInvariant checks that each row of MatMul's result is the
// same, bit for bit, whether it is computed alone or in a batch of any
// size, for every dtype, thread count and CPU path.
func TestMatMulBatchInvariant(t *testing.T) {
	forEachPath(t, matMulBatchInvariant)
}

func matMulBatchInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const nmax = 24 // 1…13 and 16, 17, 24: one, two and three activation tiles and tails
	withThreads(t, func(t *testing.T) {
		for _, dt := range weightTypes {
			shapes := [][2]int{{37, 512}, {16, 4096}}
			if dt.BlockSize() == 1 {
				shapes = append(shapes, [2]int{19, 301})
			}
			for _, sz := range shapes {
				rows, cols := sz[0], sz[1]
				w, _ := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
				x := randVec(r, nmax*cols)
				solo := make([]float32, nmax*rows)
				for i := range nmax {
					MatMul(dt, w, rows, cols, x[i*cols:(i+1)*cols], 1, solo[i*rows:(i+1)*rows])
				}
				for _, nt := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 24} {
					y := make([]float32, nt*rows)
					MatMul(dt, w, rows, cols, x, nt, y)
					for i, v := range y {
						if math.Float32bits(v) != math.Float32bits(solo[i]) {
							t.Fatalf("threads=%d %s %dx%d nt=%d: row %d col %d = %g, alone %g", Threads(), dt, rows, cols, nt, i/rows, i%rows, v, solo[i])
						}
					}
				}
			}
		}
	})
}

func TestQuantizeQ8_0MatchesTensor(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	x := randVec(r, 32*37)
	x[5] = 0
	for i := range 32 { // an all-zero block
		x[64+i] = 0
	}
	got := make([]byte, 37*34)
	want := make([]byte, 37*34)
	QuantizeQ8_0(got, x)
	quantQ8_0Generic(want, x)
	if string(got) != string(want) {
		t.Fatal("QuantizeQ8_0 differs from the pure-Go rounding to nearest even")
	}
	tensor.QuantizeRowQ8_0(want, x)
	// Rounding of exact halves may differ by one step; scales must match.
	for b := range 37 {
		if got[b*34] != want[b*34] || got[b*34+1] != want[b*34+1] {
			t.Fatalf("block %d: scale %x%x, want %x%x", b, got[b*34+1], got[b*34], want[b*34+1], want[b*34])
		}
		for i := 2; i < 34; i++ {
			if d := int(int8(got[b*34+i])) - int(int8(want[b*34+i])); d < -1 || d > 1 {
				t.Fatalf("block %d element %d: %d, want %d", b, i-2, int8(got[b*34+i]), int8(want[b*34+i]))
			}
		}
	}
}

func TestSupports(t *testing.T) {
	for _, dt := range weightTypes {
		if !Supports(dt) {
			t.Errorf("Supports(%s) = false", dt)
		}
	}
	for _, dt := range []tensor.DType{tensor.Q8_K, tensor.I8, tensor.F64} {
		if Supports(dt) {
			t.Errorf("Supports(%s) = true", dt)
		}
	}
}

// TestMatMulBatchFn checks MatMulBatch against the float64 reference for
// the float dtypes (and a quantized one, which is MatMul's), and that a
// row's result does not depend on how many rows come with it.
func TestMatMulBatchFn(t *testing.T) { forEachPath(t, matMulBatchFn) }

func matMulBatchFn(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	withThreads(t, func(t *testing.T) {
		for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0} {
			for _, sz := range [][2]int{{1, 32}, {7, 64}, {33, 96}, {17, 608}, {300, 160}} {
				rows, cols := sz[0], sz[1]
				w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
				const nmax = 20
				x := randVec(r, nmax*cols)
				all := make([]float32, nmax*rows)
				MatMulBatch(dt, w, rows, cols, x, nmax, all)
				want, scale := refMatMul(t, dt, deq, rows, cols, x, nmax)
				what := fmt.Sprintf("threads=%d MatMulBatch %s %dx%d", Threads(), dt, rows, cols)
				closeTo(t, what, all, want, scale, tolerance(dt))
				for _, nt := range []int{2, 3, 7, 13} {
					y := make([]float32, nt*rows)
					MatMulBatch(dt, w, rows, cols, x[cols:], nt, y)
					for i, v := range y {
						if math.Float32bits(v) != math.Float32bits(all[rows+i]) {
							t.Fatalf("%s nt=%d: row %d col %d = %g, in a batch of %d %g", what, nt, i/rows, i%rows, v, nmax, all[rows+i])
						}
					}
				}
			}
		}
	})
}
