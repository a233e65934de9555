package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// packedOf quantizes a rows×cols matrix to plain dtype dt and returns its
// plain bytes, its packed bytes (tensor.PackRows8) and the packed dtype.
func packedOf(t *testing.T, r *rand.Rand, dt tensor.DType, rows, cols int) (plain, packed []byte, pdt tensor.DType) {
	t.Helper()
	plain, _ = quantWeights(t, dt, randVec(r, rows*cols), rows, cols)
	pdt, ok := tensor.Packed(dt)
	if !ok {
		t.Fatalf("%s has no packed layout", dt)
	}
	prb, _ := pdt.RowBytes(cols)
	packed = make([]byte, rows*prb)
	if err := tensor.PackRows8(dt, packed, plain, rows, cols); err != nil {
		t.Fatal(err)
	}
	return plain, packed, pdt
}

// TestPackedMatchesPlain: MatMul over the eight-row layouts gives the plain
// format's products, for every CPU path, thread count, activation-row count
// (one row, the four-row kernels' tails, one to three activation tiles) and
// row count (whole groups, a group and a tail, fewer rows than a group).
// Where the plain format is summed by the same kernels (every path but
// Q8_0 on avx512, whose plain product has AVX-512 kernels of its own) the
// two agree bit for bit; there, within float32 rounding of the reference.
func TestPackedMatchesPlain(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(31, 32))
		withThreads(t, func(t *testing.T) {
			for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q8_0, tensor.Q4_K, tensor.Q6_K} {
				// Q4_Kx8 adds a row's sums in another order than Q4_K's kernels
				kq := dt == tensor.Q4_K || dt == tensor.Q6_K
				exact := !(dt == tensor.Q8_0 && CPUPath() == PathAVX512) && !kq
				shapes := [][2]int{{8, 32}, {5, 96}, {16, 512}, {13, 64}, {67, 256}, {40, 2048}}
				if kq {
					shapes = [][2]int{{8, 256}, {16, 512}, {40, 2048}, {64, 768}}
				}
				for _, sz := range shapes {
					rows, cols := sz[0], sz[1]
					plain, packed, pdt := packedOf(t, r, dt, rows, cols)
					for _, nt := range []int{1, 2, 3, 5, 8, 9, 16, 17, 24, 33} {
						x := randVec(r, nt*cols)
						want, got := make([]float32, nt*rows), make([]float32, nt*rows)
						MatMul(dt, plain, rows, cols, x, nt, want)
						MatMul(pdt, packed, rows, cols, x, nt, got)
						var scale []float64
						if !exact {
							deq := make([]float32, rows*cols)
							rb, _ := dt.RowBytes(cols)
							for i := range rows {
								if err := tensor.Dequantize(dt, deq[i*cols:(i+1)*cols], plain[i*rb:(i+1)*rb]); err != nil {
									t.Fatal(err)
								}
							}
							_, scale = refMatMul(t, dt, deq, rows, cols, x, nt)
						}
						for i := range got {
							g, w := got[i], want[i]
							if exact && math.Float32bits(g) != math.Float32bits(w) ||
								!exact && math.Abs(float64(g-w)) > 1e-5*scale[i] {
								t.Fatalf("threads=%d %s %dx%d nt=%d: y[%d][%d] = %g, %s gives %g", Threads(), pdt, rows, cols, nt, i/rows, i%rows, g, dt, w)
							}
						}
					}
				}
			}
		})
	})
}

// TestPackedKernelsMatchGeneric: the dispatched kernels of the packed
// formats (assembly where the CPU has it) against their pure-Go twins,
// the one-to-four-row kernels and the tile kernels.
func TestPackedKernelsMatchGeneric(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(33, 34))
		for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q8_0, tensor.Q4_K, tensor.Q6_K} {
			for _, rows := range []int{8, 15, 24, 3} {
				for _, nb := range []int{1, 3, 16} {
					if (dt == tensor.Q4_K || dt == tensor.Q6_K) && rows%8 != 0 {
						continue
					}
					cols := nb * dt.BlockSize()
					plain, packed, pdt := packedOf(t, r, dt, rows, cols)
					f := formats[pdt]
					xs := randVec(r, 16*cols)
					a, release := quantizeActs(f, xs, cols, 16)
					deq := make([]float32, rows*cols)
					rb, _ := dt.RowBytes(cols)
					for i := range rows {
						if err := tensor.Dequantize(dt, deq[i*cols:(i+1)*cols], plain[i*rb:(i+1)*rb]); err != nil {
							t.Fatal(err)
						}
					}
					// |W|·|X| of each pair: the size of the rounding a sum may carry
					_, scale := refMatMul(t, dt, deq, rows, cols, xs, 16)
					name := fmt.Sprintf("%s %dx%d", pdt, rows, cols)
					for nt := 1; nt <= 4; nt++ {
						ystride := rows + 3
						y1, y2 := make([]float32, nt*ystride), make([]float32, nt*ystride)
						f.kern(y1, ystride, packed, rows, a.xq, a.xrow, a.aux, a.arow, nb, nt)
						f.gen(y2, ystride, packed, rows, a.xq, a.xrow, a.aux, a.arow, nb, nt)
						packedNear(t, fmt.Sprintf("%s nt=%d", name, nt), y1, y2, scale, nt, rows, ystride)
					}
					if f.tile != nil {
						tp := make([]byte, 2*nb*tileBlock)
						packTile(tp, a, 0, nb, f.act)
						packTile(tp[nb*tileBlock:], a, tileRows, nb, f.act)
						for ng := 1; ng <= 2; ng++ {
							y1, y2 := make([]float32, ng*tileRows*rows), make([]float32, ng*tileRows*rows)
							f.tile(y1, rows, packed, rows, tp, nb, ng)
							f.tileGen(y2, rows, packed, rows, tp, nb, ng)
							packedNear(t, fmt.Sprintf("%s tiles=%d", name, ng), y1, y2, scale, ng*tileRows, rows, rows)
						}
					}
					release()
				}
			}
		}
	})
}

func packedNear(t *testing.T, what string, got, want []float32, scale []float64, nt, rows, ystride int) {
	t.Helper()
	for i := range nt * rows {
		k := i/rows*ystride + i%rows
		if d := math.Abs(float64(got[k] - want[k])); d > 1e-5*scale[i] {
			t.Errorf("%s: y[%d][%d] = %g, pure Go %g", what, i/rows, i%rows, got[k], want[k])
			return
		}
	}
}

func TestPackedLayout(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q8_0, tensor.Q4_K, tensor.Q6_K, tensor.F16} {
			p, ok := PackedLayout(dt)
			want := CPUPath() != PathPurego
			if ok != want || ok && !tensor.IsPacked(p) {
				t.Errorf("PackedLayout(%s) = %s, %v on %s", dt, p, ok, CPUPath())
			}
			if pd, _ := tensor.Packed(dt); !Supports(pd) {
				t.Errorf("Supports(%s) = false", pd)
			}
		}
		for _, dt := range []tensor.DType{tensor.F32, tensor.BF16, tensor.Q5_K, tensor.Q4_1} {
			if _, ok := PackedLayout(dt); ok {
				t.Errorf("PackedLayout(%s) reports a layout", dt)
			}
		}
	})
}

// TestPackedBatchInvariant: each row of a packed product is the same, bit
// for bit, alone or in a batch of any size, on every path and thread count.
func TestPackedBatchInvariant(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(35, 36))
		withThreads(t, func(t *testing.T) {
			for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q8_0, tensor.Q4_K, tensor.Q6_K} {
				rows, cols := 37, 512
				if dt == tensor.Q4_K || dt == tensor.Q6_K {
					rows = 40
				}
				_, packed, pdt := packedOf(t, r, dt, rows, cols)
				const nmax = 24
				x := randVec(r, nmax*cols)
				solo := make([]float32, nmax*rows)
				for i := range nmax {
					MatMul(pdt, packed, rows, cols, x[i*cols:(i+1)*cols], 1, solo[i*rows:(i+1)*rows])
				}
				for _, nt := range []int{2, 3, 5, 8, 9, 16, 17, 24} {
					y := make([]float32, nt*rows)
					MatMul(pdt, packed, rows, cols, x, nt, y)
					for i, v := range y {
						if math.Float32bits(v) != math.Float32bits(solo[i]) {
							t.Fatalf("threads=%d %s nt=%d: row %d col %d = %g, alone %g", Threads(), pdt, nt, i/rows, i%rows, v, solo[i])
						}
					}
				}
			}
		})
	})
}
