package kernels

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// Run with e.g.
//
//	go test -run '^$' -bench . -benchtime 3x -count 5 ./kernels/
//
// The kernels use as many threads as GOMAXPROCS, so -cpu 1,2 compares one
// thread with two.

// benchThreads sets the pool to GOMAXPROCS threads for one benchmark.
func benchThreads(b *testing.B) {
	SetThreads(runtime.GOMAXPROCS(0))
	b.Cleanup(func() { SetThreads(0) })
}

func benchGemm(b *testing.B, f func(m, n, k int, a, b, c []float32, acc bool)) {
	benchThreads(b)
	const m, n, k = 1024, 4096, 4096
	r := rand.New(rand.NewPCG(1, 1))
	a, w, c := randVec(r, m*k), randVec(r, n*k), make([]float32, m*n)
	f(m, n, k, a, w, c, false) // warm up: page in, pool buffers
	b.ResetTimer()
	for b.Loop() {
		f(m, n, k, a, w, c, false)
	}
	b.ReportMetric(2*m*n*k*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkGemmNT(b *testing.B) { benchGemm(b, GemmNT) }
func BenchmarkGemmNN(b *testing.B) { benchGemm(b, GemmNN) }
func BenchmarkGemmTN(b *testing.B) { benchGemm(b, GemmTN) }

// coldWeights returns enough copies of a rows×cols matrix of dtype dt that
// cycling through them reads more than 64 MiB, larger than the L3 cache.
// A packed dtype (tensor.Q4_0x8) is its plain format's matrix repacked.
func coldWeights(b testing.TB, dt tensor.DType, rows, cols int) [][]byte {
	qt, packed := tensor.Plain(dt)
	if !packed {
		qt = dt
	}
	rb, err := dt.RowBytes(cols)
	if err != nil {
		b.Fatal(err)
	}
	size := rows * rb
	r := rand.New(rand.NewPCG(2, 2))
	first := make([]byte, size)
	for i := range rows {
		if err := tensor.Quantize(qt, first[i*rb:(i+1)*rb], randVec(r, cols)); err != nil {
			b.Fatal(err)
		}
	}
	if packed {
		p := make([]byte, size)
		if err := tensor.PackRows8(qt, p, first, rows, cols); err != nil {
			b.Fatal(err)
		}
		first = p
	}
	set := [][]byte{first}
	for total := size; total <= 64<<20 || len(set) < 2; total += size {
		set = append(set, append([]byte(nil), first...))
	}
	return set
}

// benchTypes are the weight dtypes the MatMul benchmarks measure: every
// file dtype and the packed layouts.
var benchTypes = append(weightTypes[:len(weightTypes):len(weightTypes)], tensor.Q4_0x8, tensor.Q8_0x8, tensor.Q4_Kx8, tensor.Q6_Kx8, tensor.F16x32)

// BenchmarkMatVec is decoding: one row of X through a 4096×4096 weight
// matrix read from memory (MatMul with nt = 1, including the quantization
// of X), in GB/s of weight bytes.
func BenchmarkMatVec(b *testing.B) {
	benchThreads(b)
	const rows, cols = 4096, 4096
	for _, dt := range benchTypes {
		b.Run(dt.String(), func(b *testing.B) {
			set := coldWeights(b, dt, rows, cols)
			r := rand.New(rand.NewPCG(3, 3))
			x, y := randVec(r, cols), make([]float32, rows)
			i := 0
			b.ResetTimer()
			for b.Loop() {
				MatMul(dt, set[i%len(set)], rows, cols, x, 1, y)
				i++
			}
			b.ReportMetric(float64(len(set[0]))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkMatMulBatch is prompt processing: 64 rows of X through one
// 4096×4096 weight matrix.
func BenchmarkMatMulBatch(b *testing.B) {
	benchThreads(b)
	const rows, cols, nt = 4096, 4096, 64
	for _, dt := range benchTypes {
		b.Run(dt.String(), func(b *testing.B) {
			w := coldWeights(b, dt, rows, cols)[0]
			r := rand.New(rand.NewPCG(4, 4))
			x, y := randVec(r, nt*cols), make([]float32, nt*rows)
			b.ResetTimer()
			for b.Loop() {
				MatMul(dt, w, rows, cols, x, nt, y)
			}
			b.ReportMetric(2*rows*cols*nt*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func BenchmarkRMSNorm(b *testing.B) {
	benchThreads(b)
	const n = 4096
	r := rand.New(rand.NewPCG(5, 5))
	x, w := randVec(r, n), randVec(r, n)
	for b.Loop() {
		RMSNorm(x, x, w, 1e-5)
	}
	b.ReportMetric(3*4*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// BenchmarkAttention: TinyLlama's shape (32 heads, 4 KV heads, head 64),
// decoding one token at position 1023 and processing a 512-token prompt.
func BenchmarkAttention(b *testing.B) {
	benchThreads(b)
	const heads, kv, dim = 32, 4, 64
	for _, c := range []struct{ nq, pos0 int }{{1, 1023}, {512, 0}} {
		b.Run(fmt.Sprintf("nq=%d/pos0=%d", c.nq, c.pos0), func(b *testing.B) {
			r := rand.New(rand.NewPCG(6, 6))
			n := c.pos0 + c.nq
			q, k, v := randVec(r, c.nq*heads*dim), randVec(r, n*kv*dim), randVec(r, n*kv*dim)
			out := make([]float32, len(q))
			var flop float64
			for i := range c.nq {
				flop += 4 * float64(c.pos0+i+1) * dim * heads
			}
			k16, v16 := make([]uint16, len(k)), make([]uint16, len(v))
			for i := range k {
				k16[i], v16[i] = tensor.F32ToF16(k[i]), tensor.F32ToF16(v[i])
			}
			for _, f16 := range []bool{false, true} {
				b.Run(map[bool]string{false: "kv=f32", true: "kv=f16"}[f16], func(b *testing.B) {
					for b.Loop() {
						if f16 {
							AttentionF16(out, q, k16, v16, c.nq, c.pos0, heads, kv, dim)
						} else {
							Attention(out, q, k, v, c.nq, c.pos0, heads, kv, dim)
						}
					}
					b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		})
	}
}

// BenchmarkMatVecHot is BenchmarkMatVec with weights that stay in cache
// (256×2048): the kernels' arithmetic speed, without the memory limit.
func BenchmarkMatVecHot(b *testing.B) {
	benchThreads(b)
	const rows, cols = 256, 2048
	for _, dt := range benchTypes {
		b.Run(dt.String(), func(b *testing.B) {
			w := coldWeights(b, dt, rows, cols)[0]
			r := rand.New(rand.NewPCG(3, 3))
			x, y := randVec(r, cols), make([]float32, rows)
			for b.Loop() {
				MatMul(dt, w, rows, cols, x, 1, y)
			}
			b.ReportMetric(float64(len(w))*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkGemmStories15M is the GEMMs of one stories15M training step
// (batch 8 × 256 tokens): the output head's forward (NT), input gradient
// (NN) and weight gradient (TN), and a feed-forward layer's forward.
func BenchmarkGemmStories15M(b *testing.B) {
	benchThreads(b)
	const t, d, v, f = 2048, 288, 32000, 768
	for _, s := range []struct {
		name    string
		m, n, k int
		fn      func(m, n, k int, a, b, c []float32, acc bool)
	}{
		{"headNT", t, v, d, GemmNT}, {"headNN", t, d, v, GemmNN}, {"headTN", v, d, t, GemmTN},
		{"ffnNT", t, f, d, GemmNT}, {"ffnDownNT", t, d, f, GemmNT}, {"ffnTN", f, d, t, GemmTN},
	} {
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 1))
			a, w, c := randVec(r, s.m*s.k), randVec(r, s.n*s.k), make([]float32, s.m*s.n)
			s.fn(s.m, s.n, s.k, a, w, c, false)
			b.ResetTimer()
			for b.Loop() {
				s.fn(s.m, s.n, s.k, a, w, c, false)
			}
			b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
