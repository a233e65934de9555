package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 VNNI decoding kernels of the eight-row layouts (tensor.Q4_0x8,
// Q8_0x8). A ZMM register holds two of a block's pieces of four quant
// bytes for the group's eight rows (piece p in the low half, p+1 in the
// high half: 64 contiguous bytes of the packed block), and the activation
// quants of the same two pieces are spread by VPERMD to match, so one
// VPDPBUSD does what a VPMADDUBSW, a VPMADDWD and an add do twice over on
// AVX2. The halves' int32 sums are added at the end of the block: the
// exact integer block sums of q4_0x8Rows8AVX2 (Q8_0x8: q8_0x8Rows8AVX2),
// which are then scaled and accumulated by the same float32 instructions
// in the same order, so each row comes out bit for bit as on the avx2
// path, and the avx2 tile kernels (prompts) stay batch-invariant with it.
//
// Q4_0's nibbles are unsigned bytes against signed activations, the
// offset 8·Σq taken out through the aux records as on AVX2. Q8_0's signed
// quants become unsigned by adding 128 (XOR 0x80); the surplus 128·Σx of
// each half is computed once a block (VPDPBUSD of 0x80
// bytes with the same activation vectors) and subtracted.
//
// One group at a time: two groups sharing the activation vectors (two
// weight streams eight rows apart) decoded 12% slower on a Zen 4 core,
// TinyLlama Q4_0 tg128 39 against 45 t/s (2026-12-04): decoding is bound by
// memory there, and the second stream costs more than the shared
// activation work saves.

// perm512 holds the four VPERMD indices that spread activation dwords
// (2i, 2i+1) over the low and the high eight lanes of a ZMM register.
var perm512 Mem

func perm512Consts() Mem {
	if perm512.Symbol.Name == "" {
		perm512 = GLOBL("perm512", RODATA|NOPTR)
		for i := 0; i < 4; i++ {
			for l := 0; l < 16; l++ {
				DATA(64*i+4*l, U32(uint32(2*i+l/8)))
			}
		}
	}
	return perm512
}

// byteConst512 returns a ZMM register of 64 copies of the byte b.
func byteConst512(b uint8) VecVirtual {
	z := ZMM()
	g := GP32()
	MOVL(U32(uint32(b)*0x01010101), g)
	VPBROADCASTD(g, z)
	return z
}

// groupLoop emits the loop of a decoding kernel over its groups of eight
// rows: body for the group at wg, its eight results stored at y, then the
// next group ld bytes on; then the function's return.
func groupLoop(y, wg, ld, groups Register, body func()) {
	Label("single")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	body()
	DECQ(groups)
	ADDQ(U8(32), y)
	ADDQ(ld, wg)
	JMP(LabelRef("single"))
	Label("end")
	VZEROUPPER()
	RET()
}

func q4Rows8Packed512(f bfmt) {
	name := f.name + "x8Rows8AVX512"
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name+" computes y[r] for r < 8n as "+f.name+"x8Rows8AVX2 does, bit for bit,",
		"with AVX-512 VNNI.")
	y := Load(Param("y"), GP64())
	wg := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	groups := Load(Param("n"), GP64())
	SHLQ(U8(3), ld)
	pm := perm512Consts()
	idx := make([]VecVirtual, 4)
	for i := range idx {
		idx[i] = ZMM()
		VMOVDQU32(off(pm, 64*i), idx[i])
	}
	var low, bias VecVirtual
	if f.q8 {
		bias = byteConst512(0x80)
	} else {
		low = byteConst512(0x0f)
	}
	pieces := 4 // of four bytes, per row and block
	if f.q8 {
		pieces = 8
	}
	body := func(ng int, sfx string) {
		wb := []Register{GP64(), GP64()}
		MOVQ(wg, wb[0])
		if ng == 2 {
			LEAQ(Mem{Base: wg, Index: ld, Scale: 1}, wb[1])
		}
		xp, ap, n := GP64(), GP64(), GP64()
		Load(Param("x"), xp)
		if !f.q8 {
			Load(Param("aux"), ap)
		}
		Load(Param("nb"), n)
		acc := make([]VecVirtual, ng)
		for g := range acc {
			acc[g] = YMM()
			VXORPS(acc[g], acc[g], acc[g])
		}
		Label("blk" + sfx)
		TESTQ(n, n)
		JE(LabelRef("fin" + sfx))
		if pf := prefetchAhead; pf > 0 {
			for g := 0; g < ng; g++ {
				for o := 0; o < 8*f.wbytes; o += 64 {
					PREFETCHT0(Mem{Base: wb[g], Disp: pf + o})
				}
			}
		}
		xv := YMM()
		VMOVDQU32(Mem{Base: xp, Disp: 2}, xv)
		xs := make([]VecVirtual, 4)
		for i := range xs {
			xs[i] = ZMM()
			VPERMD(xv.AsZ(), idx[i], xs[i])
		}
		var corr, k VecVirtual
		dx := YMM()
		if f.q8 {
			c := ZMM()
			VXORPS(c, c, c)
			for i := range xs {
				VPDPBUSD(xs[i], bias, c)
			}
			corr = YMM()
			VEXTRACTI64X4(U8(1), c, corr)
			VPADDD(corr, c.AsY(), corr)
			VPBROADCASTW(Mem{Base: xp}, dx.AsX())
			VCVTPH2PS(dx.AsX(), dx)
		} else {
			k = YMM()
			VPBROADCASTD(Mem{Base: ap}, k)
			VBROADCASTSS(Mem{Base: ap, Disp: 32}, dx)
		}
		for g := 0; g < ng; g++ {
			s := ZMM()
			VXORPS(s, s, s)
			for m := 0; m < pieces/2; m++ {
				wv := ZMM()
				VMOVDQU32(Mem{Base: wb[g], Disp: 16 + 64*m}, wv)
				if f.q8 {
					VPXORD(bias, wv, wv)
					VPDPBUSD(xs[m], wv, s)
					continue
				}
				hi := ZMM()
				VPSRLW(U8(4), wv, hi)
				VPANDD(low, wv, wv)
				VPANDD(low, hi, hi)
				VPDPBUSD(xs[m], wv, s)
				VPDPBUSD(xs[2+m], hi, s)
			}
			sum := YMM()
			VEXTRACTI64X4(U8(1), s, sum)
			VPADDD(sum, s.AsY(), sum)
			if f.q8 {
				VPSUBD(corr, sum, sum)
			} else {
				VPSUBD(k, sum, sum)
			}
			dv := YMM()
			VCVTPH2PS(Mem{Base: wb[g]}, dv)
			VMULPS(dx, dv, dv)
			VCVTDQ2PS(sum, sum)
			VFMADD231PS(sum, dv, acc[g])
			ADDQ(U32(8*f.wbytes), wb[g])
		}
		ADDQ(U8(34), xp)
		if !f.q8 {
			ADDQ(U8(36), ap)
		}
		DECQ(n)
		JMP(LabelRef("blk" + sfx))
		Label("fin" + sfx)
		for g := range acc {
			VMOVUPS(acc[g], Mem{Base: y, Disp: 32 * g})
		}
	}
	groupLoop(y, wg, ld, groups, func() { body(1, "1") })
}

// q4KRows8Packed512 is q4_Kx8Rows8AVX2 (q4kpacked.go) with AVX-512 VNNI:
// a sub-block's eight pieces of four quant bytes are four ZMM registers of
// two pieces each, summed by VPDPBUSD against the activations spread by
// VPERMD, the halves added: the AVX2 kernel's exact int32 sub-block sums,
// then the same scale multiplies and float32 instructions, so the rows
// come out bit for bit as on the avx2 path. One group at a time, as the
// Q4_0 kernel.
func q4KRows8Packed512() {
	name := "q4_Kx8Rows8AVX512"
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name+" computes y[r] for r < 8n as q4_Kx8Rows8AVX2 does, bit for bit,",
		"with AVX-512 VNNI.")
	y := Load(Param("y"), GP64())
	wg := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	groups := Load(Param("n"), GP64())
	SHLQ(U8(3), ld)
	pm := perm512Consts()
	idx := make([]VecVirtual, 4)
	for i := range idx {
		idx[i] = ZMM()
		VMOVDQU32(off(pm, 64*i), idx[i])
	}
	low := byteConst512(0x0f)
	body := func(ng int, sfx string) {
		wb := []Register{GP64(), GP64()}
		MOVQ(wg, wb[0])
		if ng == 2 {
			LEAQ(Mem{Base: wg, Index: ld, Scale: 1}, wb[1])
		}
		xp, n := GP64(), GP64()
		Load(Param("x"), xp)
		Load(Param("nb"), n)
		acc, acc2 := make([]VecVirtual, ng), make([]VecVirtual, ng)
		for g := range acc {
			acc[g], acc2[g] = YMM(), YMM()
			VXORPS(acc[g], acc[g], acc[g])
			VXORPS(acc2[g], acc2[g], acc2[g])
		}
		Label("blk" + sfx)
		TESTQ(n, n)
		JE(LabelRef("fin" + sfx))
		dx := YMM()
		VBROADCASTSS(Mem{Base: xp}, dx)
		// the mins term, as the AVX2 kernel computes it
		bs := make([]VecVirtual, 4)
		for u := range bs {
			bs[u] = YMM()
			VPBROADCASTQ(Mem{Base: xp, Disp: 260 + 8*u}, bs[u])
			VPHADDW(bs[u], bs[u], bs[u])
		}
		for g := 0; g < ng; g++ {
			var msum VecVirtual
			for u := 0; u < 4; u++ {
				m := YMM()
				VPMOVZXBW(Mem{Base: wb[g], Disp: 96 + 16*u}, m)
				VPMADDWD(bs[u], m, m)
				if msum == nil {
					msum = m
				} else {
					VPADDD(m, msum, msum)
				}
			}
			dm := YMM()
			VCVTPH2PS(Mem{Base: wb[g], Disp: 16}, dm)
			VMULPS(dx, dm, dm)
			VCVTDQ2PS(msum, msum)
			VFMADD231PS(msum, dm, acc2[g])
		}
		isum := make([]VecVirtual, ng)
		for i := 0; i < 4; i++ { // sub-blocks 2i (low nibbles) and 2i+1 (high)
			xs := make([]VecVirtual, 8) // four pairs of pieces, low then high
			for h := 0; h < 2; h++ {
				xv := YMM()
				VMOVDQU32(Mem{Base: xp, Disp: 4 + 64*i + 32*h}, xv)
				for m := 0; m < 4; m++ {
					xs[4*h+m] = ZMM()
					VPERMD(xv.AsZ(), idx[m], xs[4*h+m])
				}
			}
			for g := 0; g < ng; g++ {
				sl, sh := ZMM(), ZMM()
				VXORPS(sl, sl, sl)
				VXORPS(sh, sh, sh)
				for m := 0; m < 4; m++ {
					wv, hi := ZMM(), ZMM()
					VMOVDQU32(Mem{Base: wb[g], Disp: 160 + 256*i + 64*m}, wv)
					VPSRLW(U8(4), wv, hi)
					VPANDD(low, wv, wv)
					VPANDD(low, hi, hi)
					VPDPBUSD(xs[m], wv, sl)
					VPDPBUSD(xs[4+m], hi, sh)
				}
				for k, z := range []VecVirtual{sl, sh} {
					sum := YMM()
					VEXTRACTI64X4(U8(1), z, sum)
					VPADDD(sum, z.AsY(), sum)
					sc := YMM()
					VPMOVZXBD(Mem{Base: wb[g], Disp: 32 + 8*(2*i+k)}, sc)
					VPMULLD(sc, sum, sum)
					if isum[g] == nil {
						isum[g] = sum
					} else {
						VPADDD(sum, isum[g], isum[g])
					}
				}
			}
		}
		for g := 0; g < ng; g++ {
			d := YMM()
			VCVTPH2PS(Mem{Base: wb[g]}, d)
			VMULPS(dx, d, d)
			VCVTDQ2PS(isum[g], isum[g])
			VFMADD231PS(isum[g], d, acc[g])
			ADDQ(U32(1184), wb[g])
		}
		ADDQ(U32(292), xp)
		DECQ(n)
		JMP(LabelRef("blk" + sfx))
		Label("fin" + sfx)
		for g := range acc {
			VSUBPS(acc2[g], acc[g], acc[g])
			VMOVUPS(acc[g], Mem{Base: y, Disp: 32 * g})
		}
	}
	groupLoop(y, wg, ld, groups, func() { body(1, "1") })
}

// q4Tile512 is the AVX-512 VNNI twin of the packed tile kernels
// (q4Tile with packed, q4rows.go) for prompts: the weights in the eight-row
// layout against g (1 or 2) activation tiles, a whole group of eight
// weight rows at a time. A ZMM register holds sixty-four bytes of a tile's
// piece l broadcast to both halves (eight activation rows twice), and
// VPERMD spreads the group's piece (four bytes of each of eight rows) so
// that the low half holds row 2p's and the high half row 2p+1's: four
// accumulators of sixteen lanes cover the 8×8 (weight row, activation row)
// pairs, and one VPDPBUSD does 64 multiplies where the AVX2 kernel's
// VPMADDUBSW does 32 and needs a VPMADDWD and an add besides. Each pair's
// block sum is the exact integer of the AVX2 kernel (Q8_0: the weights
// offset by 128, less 128·Σx, itself a VPDPBUSD of 0x80 bytes against the
// tile), scaled and accumulated by the same float32 instructions, so the
// products are bit for bit the avx2 path's, and batch invariance with the
// decoding kernels holds. The sums are turned from (row, activation row)
// to y's (activation row, row) order through the stack, at the end of a
// group's row.
func q4Tile512(f bfmt, g int) {
	name := fmt.Sprintf("%sx8TileG%dAVX512", f.name, g)
	text(name, NOSPLIT, sigTile)
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows (a multiple of 8), t < %d,", name, 8*g),
		fmt.Sprintf("as %sx8TileG%dAVX2 does, bit for bit, with AVX-512 VNNI.", f.name, g))
	y := Load(Param("y"), GP64())
	ys := Load(Param("ystride"), GP64())
	SHLQ(U8(2), ys)
	gb := Load(Param("w"), GP64())
	groups := Load(Param("rows"), GP64())
	SHRQ(U8(3), groups)
	gofs, gbytes := GP64(), GP64()
	Load(Param("nb"), gofs)
	MOVQ(gofs, gbytes)
	IMUL3Q(U32(tileBlock), gofs, gofs)
	IMUL3Q(U32(8*f.wbytes), gbytes, gbytes)
	buf := AllocLocal(256 * g)
	pm := perm512Consts()
	idx := make([]VecVirtual, 4)
	for i := range idx {
		idx[i] = ZMM()
		VMOVDQU32(off(pm, 64*i), idx[i])
	}
	var low, bias VecVirtual
	if f.q8 {
		bias = byteConst512(0x80)
	} else {
		low = byteConst512(0x0f)
	}
	wb, xp, n := GP64(), GP64(), GP64()
	tm := func(k, disp int) Mem {
		if k == 0 {
			return Mem{Base: xp, Disp: disp}
		}
		return Mem{Base: xp, Index: gofs, Scale: 1, Disp: disp}
	}
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	MOVQ(gb, wb)
	Load(Param("xt"), xp)
	Load(Param("nb"), n)
	acc := make([][]VecVirtual, g)
	for k := range acc {
		acc[k] = make([]VecVirtual, 4)
		for p := range acc[k] {
			acc[k][p] = ZMM()
			VXORPS(acc[k][p], acc[k][p], acc[k][p])
		}
	}
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	sums := make([][]VecVirtual, g)
	corr := make([]VecVirtual, g)
	for k := range sums {
		sums[k] = make([]VecVirtual, 4)
		for p := range sums[k] {
			sums[k][p] = ZMM()
			VXORPS(sums[k][p], sums[k][p], sums[k][p])
		}
		if f.q8 {
			corr[k] = ZMM()
			VXORPS(corr[k], corr[k], corr[k])
		}
	}
	// spread perms piece v (eight rows' four bytes) into four registers
	// and multiplies them with piece l of each tile
	spread := func(v VecVirtual, l int) {
		ws := make([]VecVirtual, 4)
		for p := range ws {
			ws[p] = ZMM()
			VPERMD(v.AsZ(), idx[p], ws[p])
		}
		for k := 0; k < g; k++ {
			xv := ZMM()
			VBROADCASTI64X4(tm(k, 32*l), xv)
			for p := range ws {
				VPDPBUSD(xv, ws[p], sums[k][p])
			}
			if f.q8 {
				VPDPBUSD(xv, bias, corr[k])
			}
		}
	}
	if f.q8 {
		for l := 0; l < 8; l++ {
			v := YMM()
			VMOVDQU32(Mem{Base: wb, Disp: 16 + 32*l}, v)
			VPXORD(bias.AsY(), v, v)
			spread(v, l)
		}
	} else {
		for m := 0; m < 4; m++ {
			v, hi := YMM(), YMM()
			VMOVDQU32(Mem{Base: wb, Disp: 16 + 32*m}, v)
			VPSRLW(U8(4), v, hi)
			VPANDD(low.AsY(), v, v)
			spread(v, m)
			VPANDD(low.AsY(), hi, hi)
			spread(hi, m+4)
		}
	}
	dwv := YMM()
	VCVTPH2PS(Mem{Base: wb}, dwv)
	dws := make([]VecVirtual, 4)
	for p := range dws {
		dws[p] = ZMM()
		VPERMD(dwv.AsZ(), idx[p], dws[p])
	}
	for k := 0; k < g; k++ {
		dx := ZMM()
		VBROADCASTF32X8(tm(k, 256), dx)
		kk := corr[k]
		if !f.q8 {
			kk = ZMM()
			VBROADCASTI32X8(tm(k, 288), kk)
		}
		for p := 0; p < 4; p++ {
			sc := ZMM()
			VMULPS(dx, dws[p], sc)
			VPSUBD(kk, sums[k][p], sums[k][p])
			VCVTDQ2PS(sums[k][p], sums[k][p])
			VFMADD231PS(sums[k][p], sc, acc[k][p])
		}
	}
	ADDQ(U32(8*f.wbytes), wb)
	ADDQ(U32(tileBlock), xp)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	// acc[k][p]'s lane 8h+t is (row 2p+h, activation row t): buf holds
	// tile k's sums as an 8×8 matrix, row r at 32r bytes
	for k := range acc {
		for p := range acc[k] {
			VMOVUPS(acc[k][p], off(buf, 256*k+64*p))
		}
	}
	yt, v := GP64(), GP32()
	MOVQ(y, yt)
	for k := 0; k < g; k++ {
		for t := 0; t < 8; t++ {
			for r := 0; r < 8; r++ {
				MOVL(off(buf, 256*k+32*r+4*t), v)
				MOVL(v, Mem{Base: yt, Disp: 4 * r})
			}
			if k < g-1 || t < 7 {
				ADDQ(ys, yt)
			}
		}
	}
	ADDQ(U8(32), y)
	ADDQ(gbytes, gb)
	DECQ(groups)
	JMP(LabelRef("group"))
	Label("end")
	VZEROUPPER()
	RET()
}

func q4Kernels512() {
	for _, f := range []bfmt{{"q4_0", 18, false}, {"q8_0", 34, true}} {
		q4Rows8Packed512(f)
		q4Tile512(f, 1)
		q4Tile512(f, 2)
	}
	q4KRows8Packed512()
}
