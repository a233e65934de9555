package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 float MatMul kernels. The two eight-lane accumulators of the
// AVX2 kernels (see dot.go: chunk c of eight columns into accumulator
// c mod 2) are the two halves of one ZMM register: sixteen columns from 16i
// are chunks 2i and 2i+1, so one 512-bit multiply-add does what two 256-bit
// ones do, lane by lane in the same order. A last chunk of eight (k8 not a
// multiple of 16) goes into the low half under a mask, and the result is
// hsum(low + high). Each element is thus computed by the same operations as
// on the avx2 path, bit for bit, in the mat-vec and in the tile alike.

// loadW16 loads 16 weights at m as float32 into v, or only the first eight
// (the rest zero) under the mask k when k is not nil.
func loadW16(kind int, m Mem, v VecVirtual, k Register) {
	switch {
	case kind == kindF32 && k == nil:
		VMOVUPS(m, v)
	case kind == kindF32:
		VMOVUPS_Z(m, k, v)
	case kind == kindF16 && k == nil:
		VCVTPH2PS(m, v)
	case kind == kindF16:
		VCVTPH2PS_Z(m, k, v)
	case k == nil: // bfloat16
		VPMOVZXWD(m, v)
		VPSLLD(U8(16), v, v)
	default:
		VPMOVZXWD_Z(m, k, v)
		VPSLLD(U8(16), v, v)
	}
}

// dotLoop512 emits the column loop over n (a multiple of 8) columns: steps
// of 32 (two ZMM chunks), then at most one of 16, then at most one masked
// chunk of 8 into the low half. chunk(col, k) emits the multiply-adds of
// the columns from col (k: the mask of the low half, or nil for all 16).
func dotLoop512(n Register, lo Register, chunk func(col int, k Register), advance func(cols int)) {
	Label("k32")
	CMPQ(n, U8(32))
	JL(LabelRef("k16"))
	chunk(0, nil)
	chunk(16, nil)
	advance(32)
	SUBQ(U8(32), n)
	JMP(LabelRef("k32"))
	Label("k16")
	CMPQ(n, U8(16))
	JL(LabelRef("k8"))
	chunk(0, nil)
	advance(16)
	SUBQ(U8(16), n)
	Label("k8")
	TESTQ(n, n)
	JE(LabelRef("kdone"))
	chunk(0, lo)
	Label("kdone")
}

// reduce512 returns hsum(low half + high half) of a in the low lane of an
// XMM register.
func reduce512(a VecVirtual) Register {
	hi := YMM()
	VEXTRACTF64X4(U8(1), a, hi)
	VADDPS(hi, a.AsY(), hi)
	return hsum512(hi)
}

// hsum512 is hsum with instructions that have EVEX forms, so that any of
// the 32 registers may hold the values: the same additions of the same
// pairs (VHADDPS adds lanes 0+1 and 2+3, then their sums).
func hsum512(acc VecVirtual) Register {
	lo, t := XMM(), XMM()
	VEXTRACTF32X4(U8(1), acc, lo)
	VADDPS(lo, acc.AsX(), lo)
	VPERMILPS(U8(0xb1), lo, t)
	VADDPS(t, lo, lo)
	VPERMILPS(U8(0x4e), lo, t)
	VADDPS(t, lo, lo)
	return lo
}

// lowMask returns an opmask of the low eight of sixteen lanes.
func lowMask() Register {
	k := K()
	g := GP32()
	MOVL(U32(0xff), g)
	KMOVW(g, k)
	return k
}

func dotRows512(kind int) {
	typ, esz := wType(kind)
	name := fmt.Sprintf("dotRows%sAVX512", kindNames[kind])
	text(name, NOSPLIT, fmt.Sprintf("func(y *float32, w *%s, ld int, rows int, x *float32, k8 int)", typ))
	Doc(fmt.Sprintf("%s computes y[r] = Σ_p w[r·ld+p]·x[p] for r < rows, p < k8 (a multiple of 8).", name))
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	rows := Load(Param("rows"), GP64())
	if esz == 4 {
		SHLQ(U8(2), ld)
	} else {
		SHLQ(U8(1), ld)
	}
	lo := lowMask()
	xp, wp, n := GP64(), GP64(), GP64()
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	acc := ZMM()
	VPXORD(acc, acc, acc)
	Load(Param("x"), xp)
	Load(Param("k8"), n)
	MOVQ(w, wp)
	dotLoop512(n, lo, func(col int, k Register) {
		wv := ZMM()
		loadW16(kind, Mem{Base: wp, Disp: col * esz}, wv, k)
		if k == nil {
			VFMADD231PS(Mem{Base: xp, Disp: 4 * col}, wv, acc)
		} else {
			VFMADD231PS(Mem{Base: xp, Disp: 4 * col}, wv, k, acc)
		}
	}, func(cols int) {
		ADDQ(U8(4*cols), xp)
		ADDQ(U8(cols*esz), wp)
	})
	VMOVSS(reduce512(acc), Mem{Base: y})
	ADDQ(U8(4), y)
	ADDQ(ld, w)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

// tile512X and tile512W are the AVX-512 tile's shape: rows of X and
// weight rows. Its 24 accumulators, four weight chunks and a chunk of X
// fill the 32 ZMM registers; the AVX2 tile is 3×2 in 16 YMM. Every element
// is the same chain of multiply-adds in either, so the shape is free.
const (
	tile512X = 6
	tile512W = 4
)

func dotTile512(kind int) {
	typ, esz := wType(kind)
	const tx, tw = tile512X, tile512W
	name := fmt.Sprintf("dotTile%sAVX512", kindNames[kind])
	text(name, NOSPLIT, fmt.Sprintf("func(y *float32, ystride int, w *%s, ld int, rows int, x *float32, xstride int, k8 int)", typ))
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] = Σ_p w[r·ld+p]·x[t·xstride+p] for t < %d,", name, tx),
		fmt.Sprintf("r < rows (a multiple of %d), p < k8 (a multiple of 8).", tw))
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	rows := Load(Param("rows"), GP64())
	xs := Load(Param("xstride"), GP64())
	SHLQ(U8(2), xs)
	if esz == 4 {
		SHLQ(U8(2), ld)
	} else {
		SHLQ(U8(1), ld)
	}
	ld3 := GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, ld3)
	lo := lowMask()
	xp, x3, wp, n := GP64(), GP64(), GP64(), GP64()
	Label("row")
	CMPQ(rows, U8(tw))
	JL(LabelRef("end"))
	acc := make([]VecVirtual, tx*tw) // acc[tw·t+r]
	for i := range acc {
		acc[i] = ZMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	Load(Param("x"), xp)
	LEAQ(Mem{Base: xp, Index: xs, Scale: 2}, x3)
	ADDQ(xs, x3)
	Load(Param("k8"), n)
	MOVQ(w, wp)
	xMem := func(t, disp int) Mem {
		base := xp
		if t >= 3 {
			base, t = x3, t-3
		}
		if t == 0 {
			return Mem{Base: base, Disp: disp}
		}
		return Mem{Base: base, Index: xs, Scale: uint8(t), Disp: disp}
	}
	wMem := func(r, disp int) Mem {
		switch r {
		case 0:
			return Mem{Base: wp, Disp: disp}
		case 3:
			return Mem{Base: wp, Index: ld3, Scale: 1, Disp: disp}
		}
		return Mem{Base: wp, Index: ld, Scale: uint8(r), Disp: disp}
	}
	dotLoop512(n, lo, func(col int, k Register) {
		wv := make([]VecVirtual, tw)
		for r := range wv {
			wv[r] = ZMM()
			loadW16(kind, wMem(r, col*esz), wv[r], k)
		}
		for t := 0; t < tx; t++ {
			xv := ZMM()
			if k == nil {
				VMOVUPS(xMem(t, 4*col), xv)
			} else {
				VMOVUPS_Z(xMem(t, 4*col), k, xv)
			}
			for r := 0; r < tw; r++ {
				if k == nil {
					VFMADD231PS(xv, wv[r], acc[tw*t+r])
				} else {
					VFMADD231PS(xv, wv[r], k, acc[tw*t+r])
				}
			}
		}
	}, func(cols int) {
		ADDQ(U8(4*cols), xp)
		ADDQ(U8(4*cols), x3)
		ADDQ(U8(cols*esz), wp)
	})
	ys := Load(Param("ystride"), GP64())
	SHLQ(U8(2), ys)
	yt := GP64()
	MOVQ(y, yt)
	for t := 0; t < tx; t++ {
		for r := 0; r < tw; r++ {
			VMOVSS(reduce512(acc[tw*t+r]), Mem{Base: yt, Disp: 4 * r})
		}
		if t < tx-1 {
			ADDQ(ys, yt)
		}
	}
	ADDQ(U8(4*tw), y)
	LEAQ(Mem{Base: w, Index: ld, Scale: 4}, w)
	SUBQ(U8(tw), rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

func floatKernels512() {
	for _, k := range []int{kindF32, kindF16, kindBF16} {
		dotRows512(k)
		dotTile512(k)
	}
}

// gemmKernel512: the 6×16 GEMM micro-kernel on ZMM. Six accumulators hold
// the tile, one row of sixteen each; each k step loads one ZMM of the B
// panel and broadcasts six A values. Every element is the same chain of
// fused multiply-adds over k as in gemmKernelAVX2, so the two agree bit for
// bit.
func gemmKernel512() {
	text("gemmKernelAVX512", NOSPLIT, "func(k int, a, b, c *float32, ldc int, accumulate bool)")
	Doc("gemmKernelAVX512 computes the 6×16 tile c (row stride ldc floats) = or += a·b",
		"from a packed A panel (k steps of 6 floats) and B panel (k steps of 16).")
	k := Load(Param("k"), GP64())
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	c := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(U8(2), ldc)
	row := GP64()
	MOVQ(c, row)
	for i := 0; i < 6; i++ {
		PREFETCHT0(Mem{Base: row})
		PREFETCHT0(Mem{Base: row, Disp: 60})
		if i < 5 {
			ADDQ(ldc, row)
		}
	}
	acc := make([]VecVirtual, 6)
	for i := range acc {
		acc[i] = ZMM()
		VPXORD(acc[i], acc[i], acc[i])
	}
	step := func(u int) {
		bv := ZMM()
		VMOVUPS(Mem{Base: b, Disp: 64 * u}, bv)
		for i := 0; i < 6; i++ {
			av := ZMM()
			VBROADCASTSS(Mem{Base: a, Disp: 24*u + 4*i}, av)
			VFMADD231PS(bv, av, acc[i])
		}
	}
	const unroll = 4
	Label("loop4")
	CMPQ(k, U8(unroll))
	JL(LabelRef("loop1"))
	for u := 0; u < unroll; u++ {
		step(u)
	}
	ADDQ(U32(24*unroll), a)
	ADDQ(U32(64*unroll), b)
	SUBQ(U8(unroll), k)
	JMP(LabelRef("loop4"))
	Label("loop1")
	TESTQ(k, k)
	JE(LabelRef("store"))
	step(0)
	ADDQ(U8(24), a)
	ADDQ(U8(64), b)
	DECQ(k)
	JMP(LabelRef("loop1"))
	Label("store")
	accum := Load(Param("accumulate"), GP8())
	TESTB(accum, accum)
	JE(LabelRef("overwrite"))
	for i := 0; i < 6; i++ {
		VADDPS(Mem{Base: c}, acc[i], acc[i])
		VMOVUPS(acc[i], Mem{Base: c})
		if i < 5 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
	Label("overwrite")
	for i := 0; i < 6; i++ {
		VMOVUPS(acc[i], Mem{Base: c})
		if i < 5 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}
