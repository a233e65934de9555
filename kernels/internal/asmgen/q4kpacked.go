package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// q4KRows8Packed: Q4_K weights in the eight-row layout (tensor.Q4_Kx8)
// against one Q8_K activation row, eight weight rows a vector, each int32
// lane one row's from the first multiply to the end:
//
//	per super-block, for each sub-block s: the 32 products of four-quant
//	pieces with the broadcast activations summed in int16 (at most
//	8·2·15·128 = 30720), widened (VPMADDWD by ones), times the eight
//	rows' scales (VPMULLD), added into isum; the mins term
//	msum = Σ_s m_s·(bsum_2s + bsum_2s+1) by pairs of sub-blocks (VPMADDWD);
//	then acc += float(isum)·(d·dx), acc2 += float(msum)·(dmin·dx)
//
// and y = acc − acc2 for the eight rows. Every (row, activation row) pair
// is summed by these same instructions whatever the batch, so the packed
// product is batch invariant; it is not bit for bit the plain Q4_K
// kernels' (they sum the lanes of one row in another order).
func q4KRows8Packed() {
	name := "q4_Kx8Rows8AVX2"
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name+" computes y[r] for r < 8n: the dot product of row r of the Q4_Kx8 matrix",
		"at w (ld bytes a row, nb super-blocks) with the Q8_K activation row at x (aux unused).")
	y := Load(Param("y"), GP64())
	wg := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	groups := Load(Param("n"), GP64())
	SHLQ(U8(3), ld)
	low := nibbleMask()
	ones := onesWords()
	wb, xp, n := GP64(), GP64(), GP64()
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	MOVQ(wg, wb)
	Load(Param("x"), xp)
	Load(Param("nb"), n)
	acc, acc2 := YMM(), YMM()
	VXORPS(acc, acc, acc)
	VXORPS(acc2, acc2, acc2)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	var isum VecVirtual
	for i := 0; i < 4; i++ { // sub-blocks 2i (low nibbles) and 2i+1 (high)
		var sl, sh VecVirtual
		for t := 0; t < 8; t++ {
			c, hi := YMM(), YMM()
			VMOVDQU(Mem{Base: wb, Disp: 160 + 32*(8*i+t)}, c)
			VPSRLW(U8(4), c, hi)
			VPAND(low, c, c)
			VPAND(low, hi, hi)
			xl, xh := YMM(), YMM()
			VPBROADCASTD(Mem{Base: xp, Disp: 4 + 64*i + 4*t}, xl)
			VPBROADCASTD(Mem{Base: xp, Disp: 4 + 64*i + 32 + 4*t}, xh)
			VPMADDUBSW(xl, c, c)
			VPMADDUBSW(xh, hi, hi)
			if t == 0 {
				sl, sh = c, hi
			} else {
				VPADDW(c, sl, sl)
				VPADDW(hi, sh, sh)
			}
		}
		for k, sum := range []VecVirtual{sl, sh} {
			s := 2*i + k
			sc := YMM()
			VPMOVZXBD(Mem{Base: wb, Disp: 32 + 8*s}, sc)
			VPMADDWD(ones, sum, sum)
			VPMULLD(sc, sum, sum)
			if isum == nil {
				isum = sum
			} else {
				VPADDD(sum, isum, isum)
			}
		}
	}
	var msum VecVirtual
	for u := 0; u < 4; u++ {
		m, b := YMM(), YMM()
		VPMOVZXBW(Mem{Base: wb, Disp: 96 + 16*u}, m)
		VPBROADCASTQ(Mem{Base: xp, Disp: 260 + 8*u}, b)
		VPHADDW(b, b, b) // (bsum 4u + 4u+1, bsum 4u+2 + 4u+3) in every int32 lane
		VPMADDWD(b, m, m)
		if msum == nil {
			msum = m
		} else {
			VPADDD(m, msum, msum)
		}
	}
	dx, d, dm := YMM(), YMM(), YMM()
	VBROADCASTSS(Mem{Base: xp}, dx)
	VCVTPH2PS(Mem{Base: wb}, d)
	VCVTPH2PS(Mem{Base: wb, Disp: 16}, dm)
	VMULPS(dx, d, d)
	VMULPS(dx, dm, dm)
	VCVTDQ2PS(isum, isum)
	VCVTDQ2PS(msum, msum)
	VFMADD231PS(isum, d, acc)
	VFMADD231PS(msum, dm, acc2)
	ADDQ(U32(1184), wb)
	ADDQ(U32(292), xp)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	VSUBPS(acc2, acc, acc)
	VMOVUPS(acc, Mem{Base: y})
	ADDQ(U8(32), y)
	ADDQ(ld, wg)
	DECQ(groups)
	JMP(LabelRef("group"))
	Label("end")
	VZEROUPPER()
	RET()
}
