package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// TestTileKernels: for the formats with a tile kernel, on every CPU path:
// the pure-Go twin reads the tile back into the pure-Go block kernels'
// sums (bit for bit) and agrees with the float64 reference; the dispatched
// tile kernel, where the path has one, gives each pair bit for bit what
// the path's one-row kernel gives (the batch invariance the tiles rest
// on) and agrees with its twin.
func TestTileKernels(t *testing.T) {
	forEachPath(t, tileKernels)
}

func tileKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, dt := range []tensor.DType{tensor.Q8_0, tensor.Q4_0} {
		f := formats[dt]
		if f.tileGen == nil {
			t.Fatalf("%s: no pure-Go tile kernel", dt)
		}
		for _, nb := range []int{1, 3, 16, 70} {
			rows, cols := 19, nb*qk // two groups of eight rows and three more
			w, deq := quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
			const ng = 2
			xs := randVec(r, ng*tileRows*cols)
			for i := range xs[:cols] { // an all-zero block in row 0, a large one in row 5
				xs[i] = 0
			}
			for i := 5*cols + 32; i < 5*cols+64 && i < len(xs); i++ {
				xs[i] *= 1e4
			}
			a, release := quantizeActs(f, xs, cols, ng*tileRows)
			tile := make([]byte, ng*nb*tileBlock)
			for g := range ng {
				packTile(tile[g*nb*tileBlock:], a, g*tileRows, nb, f.act)
			}
			want, scale := refMatMul(t, dt, deq, rows, cols, xs, ng*tileRows)
			ystride := rows + 2
			yg := make([]float32, ng*tileRows*ystride)
			f.tileGen(yg, ystride, w, rows, tile, nb, ng)
			one := make([]float32, rows)
			for tr := range ng * tileRows {
				f.gen(one, 0, w, rows, a.xq[tr*a.xrow:], 0, auxRow(a, tr), 0, nb, 1)
				for i := range rows {
					got := yg[tr*ystride+i]
					if math.Float32bits(got) != math.Float32bits(one[i]) {
						t.Errorf("%s nb=%d: pure-Go tile y[%d][%d] = %g, pure-Go block kernel %g", dt, nb, tr, i, got, one[i])
					}
					k := tr*rows + i
					if d := math.Abs(float64(got) - want[k]); d > 1e-5*scale[k] {
						t.Errorf("%s nb=%d: pure-Go tile y[%d][%d] = %g, float64 %g", dt, nb, tr, i, got, want[k])
					}
				}
			}
			if f.tile != nil {
				for _, n := range []int{1, ng} { // one tile, and two at once
					y := make([]float32, n*tileRows*ystride)
					f.tile(y, ystride, w, rows, tile, nb, n)
					for tr := range n * tileRows {
						f.kern(one, 0, w, rows, a.xq[tr*a.xrow:], 0, auxRow(a, tr), 0, nb, 1)
						for i := range rows {
							got := y[tr*ystride+i]
							if math.Float32bits(got) != math.Float32bits(one[i]) {
								t.Errorf("%s nb=%d: tile y[%d][%d] = %g, one-row kernel %g", dt, nb, tr, i, got, one[i])
							}
							k := tr*rows + i
							if d := math.Abs(float64(got - yg[tr*ystride+i])); d > 1e-5*scale[k] {
								t.Errorf("%s nb=%d: tile y[%d][%d] = %g, pure Go %g", dt, nb, tr, i, got, yg[tr*ystride+i])
							}
						}
					}
				}
			}
			release()
		}
	}
}

// auxRow returns activation row t's aux records (nil where the layout has none).
func auxRow(a actBuf, t int) []byte {
	if a.arow == 0 {
		return nil
	}
	return a.aux[t*a.arow:]
}
