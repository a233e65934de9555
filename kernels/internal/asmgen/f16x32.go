package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The F16x32 kernels (tensor.F16x32: groups of 32 weight rows, column p of
// the group's rows at 64p, row j's half-float at 64p + 2j). Every element
// of the product is one chain of fused multiply-adds over the columns in
// order, acc = fma(w[r][p], x[p], acc) from acc = 0, one lane per weight
// row: the mat-vec (a whole group at a time, four YMM or two ZMM chains)
// and the tiles (six rows of X against sixteen weight rows on AVX2, 32 on
// AVX-512, the chunk of weights widened once for the six) run exactly these
// operations whatever their width, so the rows of a product do not depend
// on how many rows of X go through at once, and the AVX2 and AVX-512
// kernels agree bit for bit. No horizontal sums: a group's 32 results are
// stored as they lie in the accumulators.

const (
	f16x32Group = 32 // tensor.F16Group
	f16x32TX    = 6  // rows of X the AVX2 tile multiplies
	f16x32TX512 = 12 // and the AVX-512 one
	f16x32Unr   = 4  // columns a loop step
)

// f16x32Loop emits the column loop over n columns, f16x32Unr at a time
// and then one by one; step(u) emits column u of the step, advance(cols)
// moves the pointers on. Its labels start with label, unique in the
// function.
func f16x32Loop(label string, n Register, step func(u int), advance func(cols int)) {
	Label(label + "k4")
	CMPQ(n, U8(f16x32Unr))
	JL(LabelRef(label + "k1"))
	for u := range f16x32Unr {
		step(u)
	}
	advance(f16x32Unr)
	SUBQ(U8(f16x32Unr), n)
	JMP(LabelRef(label + "k4"))
	Label(label + "k1")
	TESTQ(n, n)
	JE(LabelRef(label + "kdone"))
	step(0)
	advance(1)
	DECQ(n)
	JMP(LabelRef(label + "k1"))
	Label(label + "kdone")
}

// f16x32Rows: y[32g+j] = Σ_p w(32g+j, p)·x[p] for g < groups, one group at
// a time, its weights read front to back as one stream. zmm picks AVX-512.
func f16x32Rows(zmm bool) {
	name, vw := "f16x32RowsAVX2", 8
	if zmm {
		name, vw = "f16x32RowsAVX512", 16
	}
	nv := f16x32Group / vw
	text(name, NOSPLIT, "func(y *float32, w *uint16, groups int, x *float32, cols int)")
	Doc(fmt.Sprintf("%s computes y[32g+j] = Σ_p w[32(g·cols+p)+j]·x[p] for g < groups, j < 32, p < cols,", name),
		"each a chain of fused multiply-adds over p in order (tensor.F16x32).")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	groups := Load(Param("groups"), GP64())
	xp, n := GP64(), GP64()
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	acc := make([]VecVirtual, nv)
	for i := range acc {
		if zmm {
			acc[i] = ZMM()
			VPXORD(acc[i], acc[i], acc[i])
		} else {
			acc[i] = YMM()
			VXORPS(acc[i], acc[i], acc[i])
		}
	}
	Load(Param("x"), xp)
	Load(Param("cols"), n)
	f16x32Loop("", n, func(u int) {
		var b VecVirtual
		if zmm {
			b = ZMM()
		} else {
			b = YMM()
		}
		VBROADCASTSS(Mem{Base: xp, Disp: 4 * u}, b)
		for v := range nv {
			var wv VecVirtual
			if zmm {
				wv = ZMM()
			} else {
				wv = YMM()
			}
			VCVTPH2PS(Mem{Base: w, Disp: 2*f16x32Group*u + 2*vw*v}, wv)
			VFMADD231PS(b, wv, acc[v])
		}
	}, func(cols int) {
		ADDQ(U8(4*cols), xp)
		ADDQ(U32(2*f16x32Group*cols), w)
	})
	for v := range nv {
		VMOVUPS(acc[v], Mem{Base: y, Disp: 4 * vw * v})
	}
	ADDQ(U32(4*f16x32Group), y)
	DECQ(groups)
	JMP(LabelRef("group"))
	Label("end")
	VZEROUPPER()
	RET()
}

// f16x32Tile: the same elements for f16x32TX rows of X (xstride floats
// apart) at a time, y[t·ystride+32g+j]: on AVX2 each group in two halves of
// sixteen rows (twelve YMM accumulators), on AVX-512 the whole group
// (twelve ZMM).
func f16x32Tile(zmm bool, tx int) {
	name, vw, half := "f16x32TileAVX2", 8, 16
	if zmm {
		name, vw, half = "f16x32TileAVX512", 16, 32
	}
	nv := half / vw // weight vectors a pass
	text(name, NOSPLIT, "func(y *float32, ystride int, w *uint16, groups int, x *float32, xstride int, cols int)")
	Doc(fmt.Sprintf("%s computes y[t·ystride+32g+j] = Σ_p w[32(g·cols+p)+j]·x[t·xstride+p] for t < %d,", name, tx),
		"g < groups, j < 32, p < cols, each element as f16x32Rows computes it.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	groups := Load(Param("groups"), GP64())
	xs := Load(Param("xstride"), GP64())
	SHLQ(U8(2), xs)
	ys := Load(Param("ystride"), GP64())
	SHLQ(U8(2), ys)
	xb := make([]GPVirtual, (tx+2)/3) // rows 3i, 3i+1, 3i+2 of X from xb[i]
	for i := range xb {
		xb[i] = GP64()
	}
	wp, n := GP64(), GP64()
	newVec := func() VecVirtual {
		if zmm {
			return ZMM()
		}
		return YMM()
	}
	// xm returns row t's column u of the step
	xm := func(t, u int) Mem {
		m := Mem{Base: xb[t/3], Disp: 4 * u}
		if t%3 > 0 {
			m.Index, m.Scale = xs, uint8(t%3)
		}
		return m
	}
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	for h := 0; h < f16x32Group/half; h++ {
		hl := fmt.Sprintf("h%d_", h)
		acc := make([]VecVirtual, tx*nv) // acc[t·nv+v]
		for i := range acc {
			acc[i] = newVec()
			if zmm {
				VPXORD(acc[i], acc[i], acc[i])
			} else {
				VXORPS(acc[i], acc[i], acc[i])
			}
		}
		Load(Param("x"), xb[0])
		for i := 1; i < len(xb); i++ {
			LEAQ(Mem{Base: xb[i-1], Index: xs, Scale: 2}, xb[i])
			ADDQ(xs, xb[i])
		}
		Load(Param("cols"), n)
		MOVQ(w, wp)
		step := func(u int) {
			wv := make([]VecVirtual, nv)
			for v := range nv {
				wv[v] = newVec()
				VCVTPH2PS(Mem{Base: wp, Disp: 2*f16x32Group*u + 2*half*h + 2*vw*v}, wv[v])
			}
			for t := range tx {
				b := newVec()
				VBROADCASTSS(xm(t, u), b)
				for v := range nv {
					VFMADD231PS(b, wv[v], acc[t*nv+v])
				}
			}
		}
		f16x32Loop(hl, n, step, func(cols int) {
			for _, b := range xb {
				ADDQ(U8(4*cols), b)
			}
			ADDQ(U32(2*f16x32Group*cols), wp)
		})
		// store row t's results at y + t·ystride + 4·half·h
		yr := GP64()
		MOVQ(y, yr)
		for t := range tx {
			for v := range nv {
				VMOVUPS(acc[t*nv+v], Mem{Base: yr, Disp: 4*half*h + 4*vw*v})
			}
			if t < tx-1 {
				ADDQ(ys, yr)
			}
		}
	}
	ADDQ(U32(4*f16x32Group), y)
	Load(Param("cols"), n)
	SHLQ(U8(6), n) // 2·32 bytes a column
	ADDQ(n, w)
	DECQ(groups)
	JMP(LabelRef("group"))
	Label("end")
	VZEROUPPER()
	RET()
}

func f16x32Kernels() {
	for _, z := range []bool{false, true} {
		f16x32Rows(z)
		f16x32Tile(z, map[bool]int{false: f16x32TX, true: f16x32TX512}[z])
	}
}
