package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Mat-vec kernels: the loop over weight rows is in the assembly, so a row
// costs no Go call, and the weight pointer simply runs on from one row into
// the next (rows are contiguous).

// rowLoop emits, for each of rows rows, row() (which returns the row's dot
// product in the low lane of an XMM register and leaves the weight pointer
// at the next row) and stores the result to y, advancing y.
func rowLoop(y, rows Register, row func() Register) {
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	r := row()
	VMOVSS(r, Mem{Base: y})
	ADDQ(U8(4), y)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

// sumAcc adds the four vector accumulators and the scalar one (acc[4]) and
// reduces them to a scalar.
func sumAcc(acc []VecVirtual) Register {
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	VADDPS(acc[4], acc[0], acc[0])
	return hsum(acc[0])
}

// halfRows is the F32 and F16 mat-vec: y[r] = Σ_c w[r·cols+c]·x[c].
func halfRows(name, sig, doc string, f16 bool) {
	TEXT(name, NOSPLIT, sig)
	Doc(doc)
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64()).(GPVirtual)
	x0 := Load(Param("x"), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	x, n := GP64(), GP64()
	stride := 4
	if f16 {
		stride = 2
	}
	rowLoop(y, rows, func() Register {
		MOVQ(x0, x)
		MOVQ(cols, n)
		// acc[4] takes the scalar tail: a VEX scalar op clears the upper
		// lanes of its destination, so it must not be a vector accumulator.
		acc := []VecVirtual{YMM(), YMM(), YMM(), YMM(), YMM()}
		for _, r := range acc {
			VXORPS(r, r, r)
		}
		ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
		floatLoop(n, []GPVirtual{w, x}, []int{stride, 4}, func(off int, scalar bool) {
			t := ts[off/32]
			if f16 {
				loadHalf(Mem{Base: w, Disp: off / 2}, t, true, scalar)
			} else if scalar {
				VMOVSS(Mem{Base: w}, t.AsX())
			} else {
				VMOVUPS(Mem{Base: w, Disp: off}, t)
			}
			if scalar {
				VFMADD231SS(Mem{Base: x}, t.AsX(), acc[4].AsX())
				return
			}
			VFMADD231PS(Mem{Base: x, Disp: off}, t, acc[off/32])
		})
		return sumAcc(acc)
	})
}

func matVecF32() {
	halfRows("matVecF32AVX2", "func(y, w, x *float32, rows, cols int)",
		"matVecF32AVX2 computes y[r] = Σ_c w[r·cols+c]·x[c] for r < rows.", false)
}

func matVecF16() {
	halfRows("matVecF16AVX2", "func(y *float32, w *uint16, x *float32, rows, cols int)",
		"matVecF16AVX2 computes y[r] = Σ_c w[r·cols+c]·x[c] for r < rows, w IEEE half.", true)
}

// matVecBF16: bfloat16 rows against an x whose every group of 16 is stored
// evens first, then odds. One 32-byte load holds 16 weights; a shift turns
// the even ones (low halves) into float32 and a mask the odd ones, so no
// widening shuffle is needed.
func matVecBF16() {
	TEXT("matVecBF16AVX2", NOSPLIT, "func(y *float32, w *uint16, xp *float32, rows, groups int)")
	Doc("matVecBF16AVX2 computes y[r] = Σ_c w[r·cols+c]·x[c] for r < rows, w bfloat16 and",
		"cols = 16·groups, with x stored as xp: per group of 16, x[0], x[2], …, x[14], then x[1], …, x[15].")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	xp0 := Load(Param("xp"), GP64())
	rows := Load(Param("rows"), GP64())
	groups := Load(Param("groups"), GP64())
	mask := YMM()
	g := GP32()
	MOVL(U32(0xffff0000), g)
	MOVD(g, mask.AsX())
	VPBROADCASTD(mask.AsX(), mask)
	xp, n := GP64(), GP64()
	rowLoop(y, rows, func() Register {
		MOVQ(xp0, xp)
		MOVQ(groups, n)
		acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
		for _, r := range acc {
			VXORPS(r, r, r)
		}
		group := func(u int) {
			t, e := YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 32 * u}, t)
			VPSLLD(U8(16), t, e)
			VPAND(mask, t, t)
			VFMADD231PS(Mem{Base: xp, Disp: 64 * u}, e, acc[2*u])
			VFMADD231PS(Mem{Base: xp, Disp: 64*u + 32}, t, acc[2*u+1])
		}
		Label("loop2")
		CMPQ(n, U8(2))
		JL(LabelRef("tail"))
		group(0)
		group(1)
		ADDQ(U8(64), w)
		ADDQ(U8(128), xp)
		SUBQ(U8(2), n)
		JMP(LabelRef("loop2"))
		Label("tail")
		TESTQ(n, n)
		JE(LabelRef("done"))
		group(0)
		ADDQ(U8(32), w)
		Label("done")
		VADDPS(acc[1], acc[0], acc[0])
		VADDPS(acc[3], acc[2], acc[2])
		VADDPS(acc[2], acc[0], acc[0])
		return hsum(acc[0])
	})
}

func matVecQ8_0() {
	TEXT("matVecQ8_0AVX2", NOSPLIT, "func(y *float32, w, x *byte, rows, nb int)")
	Doc("matVecQ8_0AVX2 computes y[r] for r < rows: the dot product of the r-th row of nb",
		"Q8_0 weight blocks at w with the nb Q8_0 activation blocks at x.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	x0 := Load(Param("x"), GP64())
	rows := Load(Param("rows"), GP64())
	nb := Load(Param("nb"), GP64())
	ones := onesWords()
	x, n := GP64(), GP64()
	rowLoop(y, rows, func() Register {
		MOVQ(x0, x)
		MOVQ(nb, n)
		acc := []VecVirtual{YMM(), YMM()}
		for _, r := range acc {
			VXORPS(r, r, r)
		}
		block := func(u int) {
			d := blockScale(Mem{Base: w, Disp: 34 * u}, Mem{Base: x, Disp: 34 * u})
			wq := YMM()
			VMOVDQU(Mem{Base: w, Disp: 34*u + 2}, wq)
			blockDot(wq, Mem{Base: x, Disp: 34*u + 2}, d, ones, acc[u])
		}
		Label("loop2")
		CMPQ(n, U8(2))
		JL(LabelRef("tail"))
		block(0)
		block(1)
		ADDQ(U8(68), w)
		ADDQ(U8(68), x)
		SUBQ(U8(2), n)
		JMP(LabelRef("loop2"))
		Label("tail")
		TESTQ(n, n)
		JE(LabelRef("done"))
		block(0)
		ADDQ(U8(34), w)
		Label("done")
		VADDPS(acc[1], acc[0], acc[0])
		return hsum(acc[0])
	})
}

func matVecQ4_0() {
	TEXT("matVecQ4_0AVX2", NOSPLIT, "func(y *float32, w, x *byte, aux *int32, rows, nb int)")
	Doc("matVecQ4_0AVX2 computes y[r] for r < rows: the dot product of the r-th row of nb",
		"Q4_0 weight blocks at w with the nb Q8_0 activation blocks at x, whose aux records",
		"(8·Σx, scale) are at aux.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	x0 := Load(Param("x"), GP64())
	aux0 := Load(Param("aux"), GP64())
	rows := Load(Param("rows"), GP64())
	nb := Load(Param("nb"), GP64())
	ones := onesWords()
	low := nibbleMask()
	x, aux, n := GP64(), GP64(), GP64()
	rowLoop(y, rows, func() Register {
		MOVQ(x0, x)
		MOVQ(aux0, aux)
		MOVQ(nb, n)
		acc := []VecVirtual{YMM(), YMM()}
		for _, r := range acc {
			VXORPS(r, r, r)
		}
		block := func(u int) {
			q := unpackQ4(Mem{Base: w, Disp: 18*u + 2}, low)
			dw := weightScale(Mem{Base: w, Disp: 18 * u})
			q4Block(q, dw, Mem{Base: x, Disp: 34*u + 2}, Mem{Base: aux, Disp: 36 * u}, ones, acc[u])
		}
		Label("loop2")
		CMPQ(n, U8(2))
		JL(LabelRef("tail"))
		block(0)
		block(1)
		ADDQ(U8(36), w)
		ADDQ(U8(68), x)
		ADDQ(U8(72), aux)
		SUBQ(U8(2), n)
		JMP(LabelRef("loop2"))
		Label("tail")
		TESTQ(n, n)
		JE(LabelRef("done"))
		block(0)
		ADDQ(U8(18), w)
		Label("done")
		VADDPS(acc[1], acc[0], acc[0])
		return hsum(acc[0])
	})
}
