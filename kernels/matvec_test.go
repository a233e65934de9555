package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

var weightTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0}

// quantWeights packs a rows×cols float32 matrix into dtype dt and returns the
// bytes and the values they decode to.
func quantWeights(t *testing.T, dt tensor.DType, w []float32, rows, cols int) ([]byte, []float32) {
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

// refMatMul computes Y = X·Wᵀ in float64 from the decoded weights; for
// quantized weights X is decoded from its Q8_0 form, as the kernels use it.
func refMatMul(t *testing.T, dt tensor.DType, deq []float32, rows, cols int, x []float32, nt int) (want, scale []float64) {
	xs := x
	if dt == tensor.Q8_0 || dt == tensor.Q4_0 {
		xs = make([]float32, len(x))
		q := make([]byte, cols/32*34)
		for i := range nt {
			tensor.QuantizeRowQ8_0(q, x[i*cols:(i+1)*cols])
			tensor.DequantizeRowQ8_0(xs[i*cols:(i+1)*cols], q)
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

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	withThreads(t, func(t *testing.T) {
		for _, dt := range weightTypes {
			for _, sz := range [][2]int{{1, 32}, {7, 64}, {33, 96}, {17, 4128}, {300, 160}} {
				rows, cols := sz[0], sz[1]
				if dt.BlockSize() == 1 && cols == 96 {
					cols = 97 // odd width for the plain types
				}
				w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
				for _, nt := range []int{1, 2, 7, 20} {
					x := randVec(r, nt*cols)
					y := randVec(r, nt*rows)
					MatMul(dt, w, rows, cols, x, nt, y)
					want, scale := refMatMul(t, dt, deq, rows, cols, x, nt)
					closeTo(t, fmt.Sprintf("threads=%d MatMul %s %dx%d nt=%d", Threads(), dt, rows, cols, nt), y, want, scale, 1e-5)
				}
			}
		}
	})
}

func TestMatVec(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, dt := range weightTypes {
		rows, cols := 33, 4096
		if dt.BlockSize() == 1 {
			cols = 4097
		}
		w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
		x := randVec(r, cols)
		want, scale := refMatMul(t, dt, deq, rows, cols, x, 1)
		y := make([]float32, rows)
		switch dt {
		case tensor.F32:
			MatVecF32(y, tensor.F32s(w), x, rows, cols)
		case tensor.F16:
			MatVecF16(y, tensor.U16s(w), x, rows, cols)
		case tensor.BF16:
			MatVecBF16(y, tensor.U16s(w), x, rows, cols)
		case tensor.Q8_0, tensor.Q4_0:
			xq := make([]byte, cols/32*34)
			QuantizeQ8_0(xq, x)
			if dt == tensor.Q8_0 {
				MatVecQ8_0(y, w, xq, rows, cols)
			} else {
				MatVecQ4_0(y, w, xq, rows, cols)
			}
		}
		closeTo(t, "MatVec"+dt.String(), y, want, scale, 1e-5)
	}
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
	if Supports(tensor.Q4_K) {
		t.Errorf("Supports(Q4_K) = true")
	}
}
