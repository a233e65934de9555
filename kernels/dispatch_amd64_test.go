//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"reflect"
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
			for _, nt := range []int{1, 2, 3, 4, 6, 7, 12, 13} {
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

// TestGemmKernelAVX512BitIdentical: the ZMM micro-kernel runs each
// element's chain of multiply-adds as the YMM one does, so both must give
// the same bits, overwriting and accumulating.
func TestGemmKernelAVX512BitIdentical(t *testing.T) {
	if !hasAVX512 {
		t.Skip("this CPU does not run the avx512 path")
	}
	r := rand.New(rand.NewPCG(33, 34))
	for _, k := range []int{1, 3, 4, 5, 13, 256} {
		for _, accumulate := range []bool{false, true} {
			a, b := randVec(r, k*mr), randVec(r, k*nr)
			ldc := nr + 5
			c1 := randVec(r, mr*ldc)
			c2 := append([]float32(nil), c1...)
			microKernelAVX2(k, a, b, c1, ldc, accumulate)
			microKernelAVX512(k, a, b, c2, ldc, accumulate)
			for i := range c1 {
				if math.Float32bits(c1[i]) != math.Float32bits(c2[i]) {
					t.Fatalf("k=%d accumulate=%v: c[%d] = %g on avx512, %g on avx2", k, accumulate, i, c2[i], c1[i])
				}
			}
		}
	}
}

// TestPackedAVX512BitIdentical: the AVX-512 decoding kernels of Q4_0x8,
// Q8_0x8 and Q4_Kx8 compute the AVX2 kernels' exact block sums and scale them by the
// same instructions, so every product must come out bit for bit the same
// on both paths: whole group pairs, an odd group, plain rows after them,
// one block and many, one activation row and prompts (tiles).
func TestPackedAVX512BitIdentical(t *testing.T) {
	if !slices.Contains(CPUPaths(), PathAVX512) {
		t.Skip("this CPU does not run the avx512 path")
	}
	was := CPUPath()
	defer setPath(was)
	r := rand.New(rand.NewPCG(37, 38))
	for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q8_0, tensor.Q4_K} {
		for _, sz := range [][2]int{{8, 32}, {16, 64}, {24, 96}, {40, 2048}, {13, 256}, {67, 512}} {
			rows, cols := sz[0], sz[1]
			if dt == tensor.Q4_K {
				rows, cols = rows&^7, cols*256/32
				if rows == 0 {
					continue
				}
			}
			_, packed, pdt := packedOf(t, r, dt, rows, cols)
			for _, nt := range []int{1, 2, 8, 9, 16, 17, 24, 33} {
				x := randVec(r, nt*cols)
				y := map[string][]float32{}
				for _, p := range []string{PathAVX2, PathAVX512} {
					setPath(p)
					y[p] = make([]float32, nt*rows)
					MatMul(pdt, packed, rows, cols, x, nt, y[p])
				}
				for i, v := range y[PathAVX512] {
					if math.Float32bits(v) != math.Float32bits(y[PathAVX2][i]) {
						t.Fatalf("%s %dx%d nt=%d: y[%d] = %g on avx512, %g on avx2", pdt, rows, cols, nt, i, v, y[PathAVX2][i])
					}
				}
			}
		}
	}
}

// TestHalfWidth512: the CPUID reading behind the GEMM micro-kernel choice
// agrees with the kernel's own view of the CPU: an AMD family 19h part
// (Zen 3 or Zen 4) is reported, nothing else is, and on this CPU the
// avx512 path installs the micro-kernel the choice names.
func TestHalfWidth512(t *testing.T) {
	_, b, c, d := cpuidAsm(0)
	amd := b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163
	if halfWidth512 && !amd {
		t.Fatalf("halfWidth512 on a CPU whose vendor is not AuthenticAMD")
	}
	if !slices.Contains(CPUPaths(), PathAVX512) {
		t.Skip("this CPU does not run the avx512 path")
	}
	was := CPUPath()
	defer setPath(was)
	setPath(PathAVX512)
	want := microKernelAVX512
	if halfWidth512 {
		want = microKernelAVX2
	}
	fn := func(f any) uintptr { return reflect.ValueOf(f).Pointer() }
	if fn(microKernel) != fn(want) {
		t.Fatalf("avx512 path installed the wrong GEMM micro-kernel (halfWidth512 %v)", halfWidth512)
	}
}

// TestF16x32KernelsAVX512BitIdentical calls the AVX-512 F16x32 kernels
// directly (on a Zen 4 the avx512 path runs the AVX2 tile, so MatMul alone
// would leave the twelve-row ZMM tile untested): the ZMM mat-vec and tile
// must give the AVX2 kernels' bits, whatever the column count's residue of
// the four-column steps.
func TestF16x32KernelsAVX512BitIdentical(t *testing.T) {
	if !hasAVX512 {
		t.Skip("this CPU does not run the avx512 path")
	}
	r := rand.New(rand.NewPCG(47, 48))
	for _, sz := range [][2]int{{1, 1}, {1, 6}, {2, 13}, {3, 64}, {2, 257}} {
		groups, cols := sz[0], sz[1]
		rows := groups * tensor.F16Group
		_, packed, _ := f16x32Of(t, r, rows, cols)
		w := &tensor.U16s(packed)[0]
		const nt = 12
		x := randVec(r, nt*cols)
		ref, got := make([]float32, nt*rows), make([]float32, nt*rows)
		for tt := 0; tt < nt; tt += 6 {
			f16x32TileAVX2(&ref[tt*rows], rows, w, groups, &x[tt*cols], cols, cols)
		}
		f16x32TileAVX512(&got[0], rows, w, groups, &x[0], cols, cols)
		for tt := range nt {
			one := make([]float32, rows)
			f16x32RowsAVX512(&one[0], w, groups, &x[tt*cols], cols)
			for i, v := range one {
				if math.Float32bits(v) != math.Float32bits(ref[tt*rows+i]) {
					t.Fatalf("%dx%d: ZMM mat-vec y[%d][%d] = %g, AVX2 tile %g", rows, cols, tt, i, v, ref[tt*rows+i])
				}
			}
		}
		for i, v := range got {
			if math.Float32bits(v) != math.Float32bits(ref[i]) {
				t.Fatalf("%dx%d: ZMM tile y[%d][%d] = %g, AVX2 tile %g", rows, cols, i/rows, i%rows, v, ref[i])
			}
		}
	}
}
