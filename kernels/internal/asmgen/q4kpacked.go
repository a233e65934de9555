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
	// the header first (the mins term, dmin), then the quants in the
	// order they are stored: the block is read front to back
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
	dx, dm := YMM(), YMM()
	VBROADCASTSS(Mem{Base: xp}, dx)
	VCVTPH2PS(Mem{Base: wb, Disp: 16}, dm)
	VMULPS(dx, dm, dm)
	VCVTDQ2PS(msum, msum)
	VFMADD231PS(msum, dm, acc2)
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
	d, dx2 := YMM(), YMM()
	VCVTPH2PS(Mem{Base: wb}, d)
	VBROADCASTSS(Mem{Base: xp}, dx2)
	VMULPS(dx2, d, d)
	VCVTDQ2PS(isum, isum)
	VFMADD231PS(isum, d, acc)
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

// q6KRows8Packed: Q6_K weights in the eight-row layout (tensor.Q6_Kx8)
// against one Q8_K activation row, eight weight rows a vector. Per
// super-block the six-bit levels of four quants of the eight rows are put
// together from a ql and a qh piece, multiplied by the broadcast
// activations (VPMADDUBSW, pairs at most 2·63·128) and by the rows'
// sub-block scales in one VPMADDWD (the scale in both words of each lane,
// by VPSHUFB from the scale pairs), all into one int32 sum per row, less
// 32·Σ scale·bsum (the levels' offset); then acc += float(isum)·(d·dx).
// As q4_Kx8Rows8AVX2, batch invariant, not bit for bit the plain kernels'.
func q6KRows8Packed() {
	name := "q6_Kx8Rows8AVX2"
	lo := make([]byte, 32)
	hi := make([]byte, 32)
	for i := range 32 {
		dw := i / 4 % 4 // dword within the 128-bit lane
		lo[i] = byte(4*dw + i%2)
		hi[i] = byte(4*dw + 2 + i%2)
	}
	dupLo := constBytes("q6DupLo", lo)
	dupHi := constBytes("q6DupHi", hi)
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name+" computes y[r] for r < 8n: the dot product of row r of the Q6_Kx8 matrix",
		"at w (ld bytes a row, nb super-blocks) with the Q8_K activation row at x (aux unused).")
	y := Load(Param("y"), GP64())
	wg := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	groups := Load(Param("n"), GP64())
	SHLQ(U8(3), ld)
	m0f := nibbleMask()
	m30 := YMM()
	{
		g := GP32()
		MOVL(U32(0x30303030), g)
		VMOVD(g, m30.AsX())
		VPBROADCASTD(m30.AsX(), m30)
	}
	wb, xp, n := GP64(), GP64(), GP64()
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	MOVQ(wg, wb)
	Load(Param("x"), xp)
	Load(Param("nb"), n)
	acc := YMM()
	VXORPS(acc, acc, acc)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	// isum starts at −32·Σ_s scale_s·bsum_s (pairs of sub-blocks)
	var msum VecVirtual
	for u := 0; u < 8; u++ {
		a, b := YMM(), YMM()
		VPMOVSXBW(Mem{Base: wb, Disp: 16 + 16*u}, a)
		VPBROADCASTD(Mem{Base: xp, Disp: 260 + 4*u}, b)
		VPMADDWD(b, a, a)
		if msum == nil {
			msum = a
		} else {
			VPADDD(a, msum, msum)
		}
	}
	isum := YMM()
	VPSLLD(U8(5), msum, msum)
	VPXOR(isum, isum, isum)
	VPSUBD(msum, isum, isum)
	for h := 0; h < 2; h++ {
		for quad := 0; quad < 2; quad++ {
			sp := make([]VecVirtual, 4)
			for u := range sp {
				sp[u] = YMM()
				VPMOVSXBW(Mem{Base: wb, Disp: 16 + 16*(4*h+u)}, sp[u])
				if quad == 0 {
					VPSHUFB(dupLo, sp[u], sp[u])
				} else {
					VPSHUFB(dupHi, sp[u], sp[u])
				}
			}
			for t := 4 * quad; t < 4*quad+4; t++ {
				a, b, c := YMM(), YMM(), YMM()
				chunk := 144 + 96*(8*h+t) // ql pieces 16h+t, 16h+8+t, qh piece 8h+t
				VMOVDQU(Mem{Base: wb, Disp: chunk}, a)
				VMOVDQU(Mem{Base: wb, Disp: chunk + 32}, b)
				VMOVDQU(Mem{Base: wb, Disp: chunk + 64}, c)
				for k := 0; k < 4; k++ {
					q, hb := YMM(), YMM()
					src := a
					if k%2 == 1 {
						src = b
					}
					if k < 2 {
						VPAND(m0f, src, q)
					} else {
						VPSRLW(U8(4), src, q)
						VPAND(m0f, q, q)
					}
					switch k { // qh bits 2k, 2k+1 to bits 4, 5
					case 0:
						VPSLLW(U8(4), c, hb)
						VPAND(m30, hb, hb)
					case 1:
						VPSLLW(U8(2), c, hb)
						VPAND(m30, hb, hb)
					case 2:
						VPAND(m30, c, hb)
					case 3:
						VPSRLW(U8(2), c, hb)
						VPAND(m30, hb, hb)
					}
					VPOR(hb, q, q)
					xb := YMM()
					VPBROADCASTD(Mem{Base: xp, Disp: 4 + 128*h + 32*k + 4*t}, xb)
					VPMADDUBSW(xb, q, q)
					VPMADDWD(sp[k], q, q)
					VPADDD(q, isum, isum)
				}
			}
		}
	}
	d, dx := YMM(), YMM()
	VBROADCASTSS(Mem{Base: xp}, dx)
	VCVTPH2PS(Mem{Base: wb}, d)
	VMULPS(dx, d, d)
	VCVTDQ2PS(isum, isum)
	VFMADD231PS(isum, d, acc)
	ADDQ(U32(1680), wb)
	ADDQ(U32(292), xp)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	VMOVUPS(acc, Mem{Base: y})
	ADDQ(U8(32), y)
	ADDQ(ld, wg)
	DECQ(groups)
	JMP(LabelRef("group"))
	Label("end")
	VZEROUPPER()
	RET()
}
