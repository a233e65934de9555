package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The float MatMul kernels (F32, F16, BF16 weights). Every element of the
// product is computed in two eight-lane accumulators: chunk c (the eight
// columns from 8c, for 8c < k8) goes into accumulator c mod 2 by a fused
// multiply-add, and the result is hsum(a0+a1). The mat-vec (dotRows: one
// weight row at a time, read as one stream, two chains of multiply-adds)
// and the tile (dotTile: three rows of X against two weight rows, twelve
// accumulators) compute each element by exactly these operations, so a row
// of the product does not depend on how many rows of X are multiplied at
// once.

var kindNames = map[int]string{kindF32: "F32", kindF16: "F16", kindBF16: "BF16"}

// loadW loads 8 weights at m as float32 into v.
func loadW(kind int, m Mem, v VecVirtual) {
	switch kind {
	case kindF32:
		VMOVUPS(m, v)
	case kindF16:
		VCVTPH2PS(m, v)
	case kindBF16:
		VPMOVZXWD(m, v)
		VPSLLD(U8(16), v, v)
	}
}

func wType(kind int) (string, int) {
	if kind == kindF32 {
		return "float32", 4
	}
	return "uint16", 2
}

// dotLoop emits the column loop over n (a multiple of 8) columns: in steps
// of 32 columns (chunks into accumulators 0, 1, 0, 1), then of 8 (0, 1, 0:
// chunk c always lands in accumulator c mod 2). chunk(j, col) emits the
// multiply-adds of the chunk at column offset col into accumulator j;
// advance(cols) moves the pointers on.
func dotLoop(label string, n Register, chunk func(j, col int), advance func(cols int)) {
	Label(label + "_k32")
	CMPQ(n, U8(32))
	JL(LabelRef(label + "_k8"))
	for c := 0; c < 4; c++ {
		chunk(c%2, 8*c)
	}
	advance(32)
	SUBQ(U8(32), n)
	JMP(LabelRef(label + "_k32"))
	Label(label + "_k8")
	for c := 0; c < 3; c++ {
		TESTQ(n, n)
		JE(LabelRef(label + "_done"))
		chunk(c%2, 8*c)
		SUBQ(U8(8), n)
	}
	Label(label + "_done")
}

// reduce2 returns hsum(a0+a1) in the low lane of an XMM register.
func reduce2(a []VecVirtual) Register {
	VADDPS(a[1], a[0], a[0])
	return hsum(a[0])
}

// dotRows: y[r] = Σ w[r·ld+p]·x[p] over p < k8 (a multiple of 8), one row
// at a time: each thread then reads one stream, which the hardware
// prefetcher follows best (two rows at once, as two streams, were half as
// fast on weights from memory).
func dotRows(kind int) {
	typ, esz := wType(kind)
	name := fmt.Sprintf("dotRows%sAVX2", kindNames[kind])
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
	xp, wp, n := GP64(), GP64(), GP64()
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	acc := []VecVirtual{YMM(), YMM()}
	for _, a := range acc {
		VXORPS(a, a, a)
	}
	Load(Param("x"), xp)
	Load(Param("k8"), n)
	MOVQ(w, wp)
	dotLoop("dot", n, func(j, col int) {
		wv := YMM()
		loadW(kind, Mem{Base: wp, Disp: col * esz}, wv)
		VFMADD231PS(Mem{Base: xp, Disp: 4 * col}, wv, acc[j])
	}, func(cols int) {
		ADDQ(U8(4*cols), xp)
		ADDQ(U8(cols*esz), wp)
	})
	VMOVSS(reduce2(acc), Mem{Base: y})
	ADDQ(U8(4), y)
	ADDQ(ld, w)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

// dotTile: y[t·ystride+r] = Σ w[r·ld+p]·x[t·xstride+p] over p < k8 for
// t < 3 and r < rows (even): three rows of X against two weight rows at a
// time, each chunk of X loaded once for both weight rows and each weight
// chunk once for the three rows of X.
func dotTile(kind int) {
	typ, esz := wType(kind)
	name := fmt.Sprintf("dotTile%sAVX2", kindNames[kind])
	text(name, NOSPLIT, fmt.Sprintf("func(y *float32, ystride int, w *%s, ld int, rows int, x *float32, xstride int, k8 int)", typ))
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] = Σ_p w[r·ld+p]·x[t·xstride+p] for t < 3,", name),
		"r < rows (even), p < k8 (a multiple of 8).")
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
	xp, wp, n := GP64(), GP64(), GP64()
	Label("row")
	CMPQ(rows, U8(2))
	JL(LabelRef("end"))
	acc := make([]VecVirtual, 12) // acc[4t+2r+j]
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	Load(Param("x"), xp)
	Load(Param("k8"), n)
	MOVQ(w, wp)
	dotLoop("dot", n, func(j, col int) {
		xv := []VecVirtual{YMM(), YMM(), YMM()}
		for t := range xv {
			xm := Mem{Base: xp, Disp: 4 * col}
			if t > 0 {
				xm = Mem{Base: xp, Index: xs, Scale: uint8(t), Disp: 4 * col}
			}
			VMOVUPS(xm, xv[t])
		}
		for r := 0; r < 2; r++ {
			wm := Mem{Base: wp, Disp: col * esz}
			if r == 1 {
				wm = Mem{Base: wp, Index: ld, Scale: 1, Disp: col * esz}
			}
			wv := YMM()
			loadW(kind, wm, wv)
			for t := 0; t < 3; t++ {
				VFMADD231PS(xv[t], wv, acc[4*t+2*r+j])
			}
		}
	}, func(cols int) {
		ADDQ(U8(4*cols), xp)
		ADDQ(U8(cols*esz), wp)
	})
	ys := Load(Param("ystride"), GP64())
	SHLQ(U8(2), ys)
	for t := 0; t < 3; t++ {
		for r := 0; r < 2; r++ {
			m := Mem{Base: y, Disp: 4 * r}
			if t > 0 {
				m = Mem{Base: y, Index: ys, Scale: uint8(t), Disp: 4 * r}
			}
			VMOVSS(reduce2(acc[4*t+2*r:4*t+2*r+2]), m)
		}
	}
	ADDQ(U8(8), y)
	LEAQ(Mem{Base: w, Index: ld, Scale: 2}, w)
	SUBQ(U8(2), rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}
