package gptq

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// refGPTQ is a float64 transcription of the paper's Algorithm 1, written
// independently of Quantize: H⁻¹ by Gauss-Jordan elimination, its Cholesky
// factor by the Cholesky-Crout recurrence, and every column's error
// applied to all later columns at once (no lazy blocks).
func refGPTQ(w0 []float32, rows, cols int, h0 []float64, g Grid, damp float64, actOrder bool) (q []int32, corr, deq []float64) {
	W := make([][]float64, rows)
	for r := range W {
		W[r] = make([]float64, cols)
		for c := range cols {
			W[r][c] = float64(w0[r*cols+c])
		}
	}
	H := make([][]float64, cols)
	for i := range H {
		H[i] = append([]float64(nil), h0[i*cols:(i+1)*cols]...)
	}
	for i := range cols {
		if H[i][i] == 0 {
			H[i][i] = 1
			for r := range rows {
				W[r][i] = 0
			}
		}
	}
	perm := make([]int, cols)
	for i := range perm {
		perm[i] = i
	}
	if actOrder { // insertion sort, stable, by decreasing diagonal
		for i := 1; i < cols; i++ {
			for j := i; j > 0 && H[perm[j]][perm[j]] > H[perm[j-1]][perm[j-1]]; j-- {
				perm[j], perm[j-1] = perm[j-1], perm[j]
			}
		}
	}
	var mean float64
	for i := range cols {
		mean += H[i][i]
	}
	mean /= float64(cols)
	A := make([][]float64, cols) // permuted, dampened, augmented with I
	for i := range A {
		A[i] = make([]float64, 2*cols)
		for j := range cols {
			A[i][j] = H[perm[i]][perm[j]]
		}
		A[i][i] += damp * mean
		A[i][cols+i] = 1
	}
	for p := range cols { // Gauss-Jordan, no pivoting (A is SPD)
		d := A[p][p]
		for j := range A[p] {
			A[p][j] /= d
		}
		for i := range cols {
			if i != p {
				f := A[i][p]
				for j := range A[i] {
					A[i][j] -= f * A[p][j]
				}
			}
		}
	}
	U := make([][]float64, cols) // Hinv = Uᵀ·U, U upper (Crout on the upper side)
	for i := range U {
		U[i] = make([]float64, cols)
	}
	for i := range cols {
		s := A[i][cols+i]
		for k := range i {
			s -= U[k][i] * U[k][i]
		}
		U[i][i] = math.Sqrt(s)
		for j := i + 1; j < cols; j++ {
			t := A[i][cols+j]
			for k := range i {
				t -= U[k][i] * U[k][j]
			}
			U[i][j] = t / U[i][i]
		}
	}
	gs, ss := g.GroupSize(cols), g.SubSize(cols)
	subs := make([][]Sub, rows)
	fit := func(r, c0 int, vals func(k int) float64) {
		x := make([]float32, gs)
		for k := range x {
			x[k] = float32(vals(k))
		}
		g.Fit(x, subs[r][c0/ss:c0/ss+gs/ss])
	}
	for r := range rows {
		subs[r] = make([]Sub, cols/ss)
		if actOrder {
			for c0 := 0; c0 < cols; c0 += gs {
				fit(r, c0, func(k int) float64 { return W[r][c0+k] })
			}
		}
	}
	Wp := make([][]float64, rows)
	for r := range rows {
		Wp[r] = make([]float64, cols)
		for i, c := range perm {
			Wp[r][i] = W[r][c]
		}
	}
	q, corr, deq = make([]int32, rows*cols), make([]float64, rows*cols), make([]float64, rows*cols)
	for i := range cols {
		c := perm[i]
		for r := range rows {
			if !actOrder && c%gs == 0 {
				fit(r, c, func(k int) float64 { return Wp[r][i+k] })
			}
			s := subs[r][c/ss]
			x := Wp[r][i]
			qi := s.Nearest(x)
			v := s.Value(qi)
			q[r*cols+c], corr[r*cols+c], deq[r*cols+c] = qi, x, v
			e := (x - v) / U[i][i]
			for j := i; j < cols; j++ {
				Wp[r][j] -= e * U[i][j]
			}
		}
	}
	return q, corr, deq
}

// testProblem is a random weight matrix and the Hessian of correlated
// random inputs (n samples), with column dead made unreachable.
func testProblem(rng *rand.Rand, rows, cols, n int, dead []int) (w []float32, h []float64, x []float64) {
	w = make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.1)
	}
	x = make([]float64, n*cols) // n samples of cols features
	for t := range n {
		base := rng.NormFloat64()
		for c := range cols {
			x[t*cols+c] = rng.NormFloat64()*(0.2+float64(c%7)) + 0.5*base
		}
		for _, c := range dead {
			x[t*cols+c] = 0
		}
	}
	h = hessianOf(x, n, cols)
	return w, h, x
}

func hessianOf(x []float64, n, cols int) []float64 {
	h := make([]float64, cols*cols)
	for t := range n {
		xt := x[t*cols : (t+1)*cols]
		for i, a := range xt {
			for j, b := range xt {
				h[i*cols+j] += 2 * a * b / float64(n)
			}
		}
	}
	return h
}

// reconError is ‖(W − Ŵ)·X‖² over the samples.
func reconError(w []float32, deq []float64, x []float64, rows, cols, n int) float64 {
	var s float64
	for r := range rows {
		for t := range n {
			var d float64
			for c := range cols {
				d += (float64(w[r*cols+c]) - deq[r*cols+c]) * x[t*cols+c]
			}
			s += d * d
		}
	}
	return s
}

var testGrids = []struct {
	name string
	grid Grid
	cols int
}{
	{"uniform4-sym-g32", Uniform{Bits: 4, Group: 32, Sym: true}, 384},
	{"uniform3-asym-g64", Uniform{Bits: 3, Group: 64}, 256},
	{"uniform2-asym-g128", Uniform{Bits: 2, Group: 128}, 256},
	{"uniform8-sym-row", Uniform{Bits: 8, Group: -1, Sym: true}, 192},
	{"Q4_0", Block{tensor.Q4_0}, 320},
	{"Q4_1", Block{tensor.Q4_1}, 192},
	{"Q5_0", Block{tensor.Q5_0}, 128},
	{"Q5_1", Block{tensor.Q5_1}, 128},
	{"Q8_0", Block{tensor.Q8_0}, 160},
	{"Q4_K", Block{tensor.Q4_K}, 512},
	{"Q5_K", Block{tensor.Q5_K}, 256},
	{"Q6_K", Block{tensor.Q6_K}, 256},
	{"Q3_K", Block{tensor.Q3_K}, 256},
	{"Q2_K", Block{tensor.Q2_K}, 256},
}

func TestQuantizeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range testGrids {
		for _, act := range []bool{false, true} {
			rows := 6
			w, h, _ := testProblem(rng, rows, tc.cols, 2*tc.cols, []int{3, tc.cols - 5})
			wantQ, wantCorr, wantDeq := refGPTQ(w, rows, tc.cols, h, tc.grid, 0.01, act)
			res, err := Quantize(w, rows, tc.cols, append([]float64(nil), h...), tc.grid, Options{Damp: 0.01, ActOrder: act})
			if err != nil {
				t.Fatalf("%s act=%v: %v", tc.name, act, err)
			}
			for i := range wantQ {
				if res.Q[i] != wantQ[i] || res.Deq[i] != wantDeq[i] {
					t.Fatalf("%s act=%v: weight %d: q %d Ŵ %g, reference %d %g", tc.name, act, i, res.Q[i], res.Deq[i], wantQ[i], wantDeq[i])
				}
				if d := math.Abs(res.Corrected[i] - wantCorr[i]); d > 1e-9 {
					t.Fatalf("%s act=%v: corrected weight %d: %.17g, reference %.17g", tc.name, act, i, res.Corrected[i], wantCorr[i])
				}
			}
		}
	}
}

// rtn rounds every weight to nearest on the grid fitted to the original
// weights (the same grid GPTQ starts from).
func rtn(w []float32, rows, cols int, g Grid) []float64 {
	gs, ss := g.GroupSize(cols), g.SubSize(cols)
	deq := make([]float64, len(w))
	subs := make([]Sub, gs/ss)
	for r := range rows {
		for c0 := 0; c0 < cols; c0 += gs {
			g.Fit(w[r*cols+c0:r*cols+c0+gs], subs)
			for k := range gs {
				s := subs[k/ss]
				deq[r*cols+c0+k] = s.Value(s.Nearest(float64(w[r*cols+c0+k])))
			}
		}
	}
	return deq
}

func TestBeatsRoundToNearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range testGrids {
		for _, act := range []bool{false, true} {
			rows, n := 16, 3*tc.cols
			w, h, x := testProblem(rng, rows, tc.cols, n, nil)
			res, err := Quantize(w, rows, tc.cols, h, tc.grid, Options{Damp: 0.01, ActOrder: act})
			if err != nil {
				t.Fatal(err)
			}
			eg := reconError(w, res.Deq, x, rows, tc.cols, n)
			er := reconError(w, rtn(w, rows, tc.cols, tc.grid), x, rows, tc.cols, n)
			if !(eg < er) {
				t.Errorf("%s act=%v: GPTQ error %g not below round-to-nearest's %g", tc.name, act, eg, er)
			}
			t.Logf("%s act=%v: ‖(W−Ŵ)X‖² GPTQ %.4g, RTN %.4g (%.2f×)", tc.name, act, eg, er, eg/er)
		}
	}
}

// TestBlockBytes checks that the encoded blocks dequantize (with the
// tensor package's ggml ports) to exactly GPTQ's Ŵ.
func TestBlockBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range testGrids {
		b, ok := tc.grid.(Block)
		if !ok {
			continue
		}
		rows := 5
		w, h, _ := testProblem(rng, rows, tc.cols, 2*tc.cols, nil)
		res, err := Quantize(w, rows, tc.cols, h, b, Options{Damp: 0.01, ActOrder: true})
		if err != nil {
			t.Fatal(err)
		}
		data, err := b.Bytes(res)
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := b.Type.RowBytes(tc.cols)
		got := make([]float32, tc.cols)
		for r := range rows {
			if err := tensor.Dequantize(b.Type, got, data[r*rb:(r+1)*rb]); err != nil {
				t.Fatal(err)
			}
			for c, v := range got {
				if float64(v) != res.Deq[r*tc.cols+c] {
					t.Fatalf("%s: row %d col %d dequantizes to %g, GPTQ chose %g", tc.name, r, c, v, res.Deq[r*tc.cols+c])
				}
			}
		}
	}
}

func TestSingularHessian(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cols := 64
	// columns 1 and 2 are always equal: H is singular though no column is dead
	w, _, x := testProblem(rng, 4, cols, 200, nil)
	for i := range 200 {
		x[i*cols+2] = x[i*cols+1]
	}
	h := hessianOf(x, 200, cols)
	_, err := Quantize(w, 4, cols, append([]float64(nil), h...), Uniform{Bits: 4, Group: 32, Sym: true}, Options{})
	if err == nil || !strings.Contains(err.Error(), "singular") || !strings.Contains(err.Error(), "--damp") {
		t.Fatalf("undampened singular H: got %v, want an error naming singular and --damp", err)
	}
	if _, err := Quantize(w, 4, cols, h, Uniform{Bits: 4, Group: 32, Sym: true}, Options{Damp: 0.01}); err != nil {
		t.Fatalf("dampened: %v", err)
	}
}

func TestBadShapes(t *testing.T) {
	h := make([]float64, 48*48)
	for i := range 48 {
		h[i*48+i] = 1
	}
	if _, err := Quantize(make([]float32, 2*48), 2, 48, h, Block{tensor.Q4_0}, Options{Damp: 0.01}); err == nil ||
		!strings.Contains(err.Error(), "groups of 32") {
		t.Errorf("48 columns in Q4_0: got %v", err)
	}
	if _, err := NewBlock(tensor.IQ4_NL); err == nil {
		t.Errorf("IQ4_NL grid: no error")
	}
}
