//go:build amd64 && !purego

package kernels

import (
	"unsafe"

	"github.com/herd-llm/herd/tensor"
	"golang.org/x/sys/cpu"
)

//go:generate go run -C internal/asmgen . -out ../../kernels_amd64.s -stubs ../../kernels_amd64.go -pkg kernels

// hasAVX2 and hasAVX512 report whether the CPU (and the OS, for the
// registers' state) runs the avx2 and the avx512 paths.
var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL &&
		cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VNNI
)

// asmPaths are the assembly paths, in the order they install their kernels.
func asmPaths() []cpuPath {
	return []cpuPath{
		{name: PathAVX2, ok: hasAVX2, use: useAVX2},
		{name: PathAVX512, ok: hasAVX512, use: useAVX512},
	}
}

// useAVX2 installs the AVX2+FMA+F16C kernels.
func useAVX2() {
	microKernel = microKernelAVX2
	dotImpl = dotAVX2
	axpyImpl = axpyAVX2
	sumSqImpl = sumSqAVX2
	scaleMulImpl = scaleMulAVX2
	scaleImpl = scaleAVX2
	addImpl = addAVX2
	maxImpl = maxAVX2
	expSubSumImpl = expSubSumAsm
	siluMulImpl = siluMulAsm
	convF16 = convF16AVX2
	convBF16 = convBF16AVX2
	toF16Impl = f32ToF16AVX2
	packNT16 = packNT16Asm
	floatDots = floatDotsAVX2
	f16x32K = &f16x32Kernels{rows: f16x32RowsAVX2, tile: f16x32TileAVX2, tx: 6}
	scoresImpl = scoresAsm
	accumVImpl = accumVAsm
	scoresF16Impl = scoresF16Asm
	accumVF16Impl = accumVF16Asm
	quantQ8_0Impl = quantQ8_0Asm
	quantQ8_KImpl = quantQ8_KAsm
	set32(tensor.Q5_0, [4]asm32{q5_0x1AVX2, q5_0x2AVX2, q5_0x3AVX2, q5_0x4AVX2})
	set32(tensor.Q4_1, [4]asm32{q4_1x1AVX2, q4_1x2AVX2, q4_1x3AVX2, q4_1x4AVX2})
	set32(tensor.Q5_1, [4]asm32{q5_1x1AVX2, q5_1x2AVX2, q5_1x3AVX2, q5_1x4AVX2})
	set32(tensor.IQ4_NL, [4]asm32{iq4nlx1AVX2, iq4nlx2AVX2, iq4nlx3AVX2, iq4nlx4AVX2})
	setK(tensor.Q2_K, [4]asmK{q2_Kx1AVX2, q2_Kx2AVX2, q2_Kx3AVX2, q2_Kx4AVX2})
	setK(tensor.Q3_K, [4]asmK{q3_Kx1AVX2, q3_Kx2AVX2, q3_Kx3AVX2, q3_Kx4AVX2})
	setK(tensor.Q4_K, [4]asmK{q4_Kx1AVX2, q4_Kx2AVX2, q4_Kx3AVX2, q4_Kx4AVX2})
	setK(tensor.Q5_K, [4]asmK{q5_Kx1AVX2, q5_Kx2AVX2, q5_Kx3AVX2, q5_Kx4AVX2})
	setK(tensor.Q6_K, [4]asmK{q6_Kx1AVX2, q6_Kx2AVX2, q6_Kx3AVX2, q6_Kx4AVX2})
	setBlockwise(tensor.Q4_0, q4_0Rows8AVX2, q4_0Row1AVX2, q4_0TileG1AVX2, q4_0TileG2AVX2)
	setBlockwise(tensor.Q8_0, q8_0Rows8AVX2, q8_0Row1AVX2, q8_0TileG1AVX2, q8_0TileG2AVX2)
	setPacked(tensor.Q4_0x8, q4_0x8Rows8AVX2, q4_0Row1AVX2, q4_0x8TileG1AVX2, q4_0x8TileG2AVX2)
	setPacked(tensor.Q8_0x8, q8_0x8Rows8AVX2, q8_0Row1AVX2, q8_0x8TileG1AVX2, q8_0x8TileG2AVX2)
	setPackedK(tensor.Q4_Kx8, q4_Kx8Rows8AVX2)
	setPackedK(tensor.Q6_Kx8, q6_Kx8Rows8AVX2)
}

// setPackedK installs the kernel of a packed k-quant format (Q4_Kx8, Q6_Kx8:
// whole groups only, one activation row at a time; no tile kernel).
func setPackedK(dt tensor.DType, rows8 asmRows8) {
	f := formats[dt]
	f.asmPacked = true
	f.kern = func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
		checkKernel(f, y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
		if rows == 0 || nb == 0 || rows%tensor.PackGroup != 0 {
			f.gen(y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
			return
		}
		for t := range nt {
			rows8(&y[t*ystride], &w[0], nb*f.wbytes, rows/tensor.PackGroup, &x[t*xstride], &x[t*xstride], nb)
		}
	}
}

// rowsKernel is the quantKernel of the block-by-block formats (plain or
// packed): rows8 over the rows in whole groups of eight, row1 over the rest
// (the plain rows at the end), for each activation row.
func rowsKernel(f *qformat, rows8, row1 asmRows8) quantKernel {
	return func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
		checkKernel(f, y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
		if rows == 0 || nb == 0 {
			f.gen(y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
			return
		}
		wrow := nb * f.wbytes
		r8 := rows &^ 7
		for t := range nt {
			xp, ap := &x[t*xstride], &x[0] // ap: unused without aux records
			if len(aux) > 0 {
				ap = &aux[t*auxstride]
			}
			if r8 > 0 {
				rows8(&y[t*ystride], &w[0], wrow, r8/8, xp, ap, nb)
			}
			if r8 < rows {
				row1(&y[t*ystride+r8], &w[r8*wrow], wrow, rows-r8, xp, ap, nb)
			}
		}
	}
}

// tilePasses runs ng activation tiles over rows weight rows, two tiles a
// pass, the odd one last.
func tilePasses(tile1, tile2 asmTileK, y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int) {
	g := 0
	for ; g+2 <= ng; g += 2 {
		tile2(&y[g*tileRows*ystride], ystride, &w[0], rows, &xt[g*nb*tileBlock], nb)
	}
	if g < ng {
		tile1(&y[g*tileRows*ystride], ystride, &w[0], rows, &xt[g*nb*tileBlock], nb)
	}
}

// setPacked installs the kernels of a packed format (tensor.Q4_0x8,
// Q8_0x8): rows8 and the tile kernels over the whole groups of eight rows,
// and for the rows after them, which keep the plain layout, the plain
// format's row1 kernel and its tile kernels. Every pair is summed as the
// plain format's AVX2 kernels sum it, bit for bit.
func setPacked(dt tensor.DType, rows8, row1 asmRows8, tile1, tile2 asmTileK) {
	f := formats[dt]
	// the plain format's AVX2 tile kernels, installed before this (the
	// AVX-512 path later drops Q8_0's, not these rows' need of them)
	plainTile := formats[f.plain].tile
	f.asmPacked = true
	f.kern = rowsKernel(f, rows8, row1)
	f.tile = func(y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int) {
		checkTile(f, y, ystride, w, rows, xt, nb, ng)
		if rows == 0 || nb == 0 {
			f.tileGen(y, ystride, w, rows, xt, nb, ng)
			return
		}
		r8 := rows &^ 7
		if r8 > 0 {
			tilePasses(tile1, tile2, y, ystride, w, r8, xt, nb, ng)
		}
		if r8 < rows {
			plainTile(y[r8:], ystride, w[r8*nb*f.wbytes:], rows-r8, xt, nb, ng)
		}
	}
}

type (
	asmRows8 func(y *float32, w *byte, ld int, n int, x *byte, aux *byte, nb int)
	asmTileK func(y *float32, ystride int, w *byte, rows int, xt *byte, nb int)
)

// setBlockwise installs format dt's kernels that sum block by block
// (internal/asmgen/q4rows.go, Q4_0 and Q8_0): rows8 eight weight rows at a
// time for each activation row and row1 the rows left over; tile1 and
// tile2 one and two activation tiles at a time for prompts.
func setBlockwise(dt tensor.DType, rows8, row1 asmRows8, tile1, tile2 asmTileK) {
	f := formats[dt]
	f.kern = rowsKernel(f, rows8, row1)
	f.tile = func(y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int) {
		checkTile(f, y, ystride, w, rows, xt, nb, ng)
		if rows == 0 || nb == 0 {
			f.tileGen(y, ystride, w, rows, xt, nb, ng)
			return
		}
		tilePasses(tile1, tile2, y, ystride, w, rows, xt, nb, ng)
	}
}

// useAVX512 installs the AVX-512 kernels (F, BW, VL, DQ and VNNI) over the
// AVX2 ones: the decoding kernels of Q4_0x8, Q8_0x8 and Q4_Kx8 and the
// prompt tiles of Q4_0x8 and Q8_0x8, the Q8_0 product, the float MatMul
// kernels and, except on AMD family 19h, the GEMM micro-kernel (all but the
// Q8_0 product bit-identical to the AVX2 ones, see internal/asmgen/dot512.go
// and q4rows512.go).
func useAVX512() {
	// the packed formats' kernels sum as the AVX2 ones, bit for bit
	// (internal/asmgen/q4rows512.go), so the plain rows after the whole
	// groups keep the AVX2 row and tile kernels
	setPacked(tensor.Q4_0x8, q4_0x8Rows8AVX512, q4_0Row1AVX2, q4_0x8TileG1AVX512, q4_0x8TileG2AVX512)
	setPacked(tensor.Q8_0x8, q8_0x8Rows8AVX512, q8_0Row1AVX2, q8_0x8TileG1AVX512, q8_0x8TileG2AVX512)
	setPackedK(tensor.Q4_Kx8, q4_Kx8Rows8AVX512)
	set32(tensor.Q8_0, [4]asm32{q8_0x1AVX512, q8_0x2AVX512, q8_0x3AVX512, q8_0x4AVX512})
	formats[tensor.Q8_0].tile = nil // the AVX2 tile kernel sums as the AVX2 kernels do, not these
	// Q8_0x8's products therefore differ from plain Q8_0's here in the
	// last bits
	floatDots = floatDotsAVX512
	f16x32K = &f16x32Kernels{rows: f16x32RowsAVX512, tile: f16x32TileAVX512, tx: 12}
	if halfWidth512 {
		// the six-row YMM tile ran 4096×4096 F16x32 prompts faster than the
		// twelve-row ZMM one on a Zen 4 (BENCHMARKS.md); the same bits
		f16x32K.tile, f16x32K.tx = f16x32TileAVX2, 6
	} else {
		microKernel = microKernelAVX512
	}
}

// halfWidth512 reports a CPU that runs 512-bit operations as two 256-bit
// halves, AMD's family 19h (Zen 4, the one AVX-512 design of the family).
// There the six-accumulator ZMM GEMM micro-kernel ran the stories15M
// training GEMMs at 0.73× the twelve-accumulator AVX2 one (106–145 against
// 169–194 GFLOP/s, 2026-12-04), where on a Sapphire Rapids it was 1.24×
// faster; the two give the same bits, so only the speed differs. The
// same holds for the F16x32 prompt tiles (the YMM one runs there).
var halfWidth512 = func() bool {
	_, b, c, d := cpuidAsm(0)
	if b != 0x68747541 || d != 0x69746e65 || c != 0x444d4163 { // AuthenticAMD
		return false
	}
	a, _, _, _ := cpuidAsm(1)
	family := a >> 8 & 0xf
	if family == 0xf {
		family += a >> 20 & 0xff
	}
	return family == 0x19
}()

func microKernelAVX512(k int, a, b, c []float32, ldc int, accumulate bool) {
	_ = a[k*mr-1]
	_ = b[k*nr-1]
	_ = c[(mr-1)*ldc+nr-1]
	gemmKernelAVX512(k, &a[0], &b[0], &c[0], ldc, accumulate)
}

func quantQ8_KAsm(dst []byte, x []float32) {
	nb := len(x) / qkk
	if nb == 0 {
		return
	}
	_ = dst[nb*q8kBytes-1]
	quantQ8_KAVX2(&dst[0], &x[0], nb)
}

func microKernelAVX2(k int, a, b, c []float32, ldc int, accumulate bool) {
	_ = a[k*mr-1]
	_ = b[k*nr-1]
	_ = c[(mr-1)*ldc+nr-1]
	gemmKernelAVX2(k, &a[0], &b[0], &c[0], ldc, accumulate)
}

type (
	asmRows func(y *float32, w unsafe.Pointer, ld int, rows int, x *float32, k8 int)
	asmTile func(y *float32, ystride int, w unsafe.Pointer, ld int, rows int, x *float32, xstride int, k8 int)
)

// floatDotsOf makes the float MatMul kernels (see matmul_float.go) of the
// assembly mat-vec and tile kernels of each weight kind.
func floatDotsOf(rowsK [3]asmRows, tileK [3]asmTile, tx, tw int) *dotKernels {
	// wptr checks that the weights of rows rows from off exist, and
	// returns a pointer to the first.
	wptr := func(kind int, w operand, off, rows, k8 int) unsafe.Pointer {
		last := off + (rows-1)*w.cs + max(k8, 1) - 1
		if kind == kindF32 {
			_ = w.f32[last]
			return unsafe.Pointer(&w.f32[off])
		}
		_ = w.u16[last]
		return unsafe.Pointer(&w.u16[off])
	}
	return &dotKernels{
		tx: tx, tw: tw,
		rows: func(kind int, y []float32, w operand, off, rows int, x []float32, k8 int) {
			if rows == 0 {
				return
			}
			_, _ = y[rows-1], x[max(k8, 1)-1]
			rowsK[kind](&y[0], wptr(kind, w, off, rows, k8), w.cs, rows, &x[0], k8)
		},
		tile: func(kind int, y []float32, ystride int, w operand, off, rows int, x []float32, xstride, k8 int) {
			if rows == 0 {
				return
			}
			_, _ = y[(tx-1)*ystride+rows-1], x[(tx-1)*xstride+max(k8, 1)-1]
			tileK[kind](&y[0], ystride, wptr(kind, w, off, rows, k8), w.cs, rows, &x[0], xstride, k8)
		},
	}
}

// The assembly float MatMul kernels, by weight kind (kindF32, kindF16,
// kindBF16), with the weights' pointer type erased.
var (
	floatDotsAVX2 = floatDotsOf(
		[3]asmRows{
			func(y *float32, w unsafe.Pointer, ld, rows int, x *float32, k8 int) {
				dotRowsF32AVX2(y, (*float32)(w), ld, rows, x, k8)
			},
			func(y *float32, w unsafe.Pointer, ld, rows int, x *float32, k8 int) {
				dotRowsF16AVX2(y, (*uint16)(w), ld, rows, x, k8)
			},
			func(y *float32, w unsafe.Pointer, ld, rows int, x *float32, k8 int) {
				dotRowsBF16AVX2(y, (*uint16)(w), ld, rows, x, k8)
			},
		},
		[3]asmTile{
			func(y *float32, ys int, w unsafe.Pointer, ld, rows int, x *float32, xs, k8 int) {
				dotTileF32AVX2(y, ys, (*float32)(w), ld, rows, x, xs, k8)
			},
			func(y *float32, ys int, w unsafe.Pointer, ld, rows int, x *float32, xs, k8 int) {
				dotTileF16AVX2(y, ys, (*uint16)(w), ld, rows, x, xs, k8)
			},
			func(y *float32, ys int, w unsafe.Pointer, ld, rows int, x *float32, xs, k8 int) {
				dotTileBF16AVX2(y, ys, (*uint16)(w), ld, rows, x, xs, k8)
			},
		}, 3, 2)
	floatDotsAVX512 = floatDotsOf(
		[3]asmRows{
			func(y *float32, w unsafe.Pointer, ld, rows int, x *float32, k8 int) {
				dotRowsF32AVX512(y, (*float32)(w), ld, rows, x, k8)
			},
			func(y *float32, w unsafe.Pointer, ld, rows int, x *float32, k8 int) {
				dotRowsF16AVX512(y, (*uint16)(w), ld, rows, x, k8)
			},
			func(y *float32, w unsafe.Pointer, ld, rows int, x *float32, k8 int) {
				dotRowsBF16AVX512(y, (*uint16)(w), ld, rows, x, k8)
			},
		},
		[3]asmTile{
			func(y *float32, ys int, w unsafe.Pointer, ld, rows int, x *float32, xs, k8 int) {
				dotTileF32AVX512(y, ys, (*float32)(w), ld, rows, x, xs, k8)
			},
			func(y *float32, ys int, w unsafe.Pointer, ld, rows int, x *float32, xs, k8 int) {
				dotTileF16AVX512(y, ys, (*uint16)(w), ld, rows, x, xs, k8)
			},
			func(y *float32, ys int, w unsafe.Pointer, ld, rows int, x *float32, xs, k8 int) {
				dotTileBF16AVX512(y, ys, (*uint16)(w), ld, rows, x, xs, k8)
			},
		}, 6, 4)
)

// asm32 is an assembly kernel for 32-element block weights and a fixed
// number of activation rows.
type asm32 func(y *float32, ystride int, w *byte, rows int, x *byte, xstride int, aux *byte, auxstride int, nb int)

// set32 makes the assembly kernels k (for 1..4 activation rows) format
// dt's kernel.
func set32(dt tensor.DType, k [4]asm32) {
	f := formats[dt]
	f.kern = func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
		checkKernel(f, y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
		if rows == 0 || nb == 0 {
			f.gen(y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
			return
		}
		ap := &x[0]
		if len(aux) > 0 {
			ap = &aux[0]
		}
		k[nt-1](&y[0], ystride, &w[0], rows, &x[0], xstride, ap, auxstride, nb)
	}
}

// asmK is an assembly k-quant kernel for a fixed number of activation rows.
type asmK func(y *float32, ystride int, w *byte, rows int, x *byte, xstride int, nb int)

// setK makes the assembly kernels k (for 1..4 activation rows) format dt's
// kernel (a k-quant).
func setK(dt tensor.DType, k [4]asmK) {
	f := formats[dt]
	f.kern = func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
		checkKernel(f, y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
		if rows == 0 || nb == 0 {
			f.gen(y, ystride, w, rows, x, xstride, aux, auxstride, nb, nt)
			return
		}
		k[nt-1](&y[0], ystride, &w[0], rows, &x[0], xstride, nb)
	}
}

func packNT16Asm(dst []float32, B operand, off, kk int) {
	k8 := kk &^ 7
	if k8 > 0 {
		_ = dst[kk*nr-1]
		last := off + (nr-1)*B.cs + k8 - 1 // last element read
		switch B.kind {
		case kindF32:
			_ = B.f32[last]
			packNTF32AVX2(&dst[0], &B.f32[off], B.cs, k8)
		case kindF16:
			_ = B.u16[last]
			packNTF16AVX2(&dst[0], &B.u16[off], B.cs, k8)
		case kindBF16:
			_ = B.u16[last]
			packNTBF16AVX2(&dst[0], &B.u16[off], B.cs, k8)
		}
	}
	if k8 < kk {
		packNTGeneric(dst, B, off, k8, kk, nr)
	}
}

func expSubSumAsm(x []float32, m float32) float32 {
	n8 := len(x) &^ 7
	var s float32
	if n8 > 0 {
		s = expSubSumAVX2(x[:n8], m)
	}
	return s + expSubSumGeneric(x[n8:], m)
}

func siluMulAsm(out, gate, up []float32) {
	n8 := len(out) &^ 7
	if n8 > 0 {
		_, _ = gate[n8-1], up[n8-1]
		siluMulAVX2(out[:n8], gate, up)
	}
	if r := len(out) - n8; r > 0 {
		// the tail through the same vector code, padded to 8: an element's
		// value never depends on where it sits in the slice, so a row of a
		// batch gets the same activations alone or beside others
		var g, u, o [8]float32
		copy(g[:], gate[n8:len(out)])
		copy(u[:], up[n8:len(out)])
		siluMulAVX2(o[:], g[:], u[:])
		copy(out[n8:], o[:r])
	}
}

func scoresAsm(s, q, k []float32, kstride int, scale float32) {
	d := len(q)
	if d%8 != 0 || len(s) == 0 || d == 0 {
		scoresGeneric(s, q, k, kstride, scale)
		return
	}
	_ = k[(len(s)-1)*kstride+d-1]
	attnScoresAVX2(&s[0], &q[0], &k[0], kstride, len(s), d, scale)
}

func accumVAsm(acc, v []float32, vstride int, p []float32) {
	d := len(acc)
	if d%8 != 0 || len(p) == 0 || d == 0 {
		accumVGeneric(acc, v, vstride, p)
		return
	}
	_ = v[(len(p)-1)*vstride+d-1]
	attnAccumAVX2(&acc[0], &v[0], vstride, &p[0], len(p), d)
}

func scoresF16Asm(s, q []float32, k []uint16, kstride int, scale float32, w []float32) {
	d := len(q)
	if d%8 != 0 || len(s) == 0 || d == 0 {
		scoresF16Generic(s, q, k, kstride, scale, w)
		return
	}
	_ = k[(len(s)-1)*kstride+d-1]
	attnScoresF16AVX2(&s[0], &q[0], &k[0], kstride, len(s), d, scale)
}

func accumVF16Asm(acc []float32, v []uint16, vstride int, p []float32, w []float32) {
	d := len(acc)
	if d%8 != 0 || len(p) == 0 || d == 0 {
		accumVF16Generic(acc, v, vstride, p, w)
		return
	}
	_ = v[(len(p)-1)*vstride+d-1]
	attnAccumF16AVX2(&acc[0], &v[0], vstride, &p[0], len(p), d)
}

func quantQ8_0Asm(dst []byte, x []float32) {
	nb := len(x) / qk
	if nb == 0 {
		return
	}
	_ = dst[nb*q8Bytes-1]
	quantQ8_0AVX2(&dst[0], &x[0], nb)
}
