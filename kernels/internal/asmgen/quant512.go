package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 quantized kernels (F, BW, VL, DQ, VNNI): Q8_0 weights against
// Q8_0 activations, two 32-element blocks per ZMM register. Block
// 2i goes to the low 256 bits and 2i+1 to the high 256 bits; VPDPBUSD sums
// the weights' magnitudes (unsigned bytes) times the activations carrying
// the weights' signs (signed bytes) in groups of four into sixteen int32
// lanes, eight per block; each half is converted to float32 and scaled by
// its block's dw·dx. An odd last block runs through the same instructions
// with the activations' and the scales' high half zero. As in
// the AVX2 kernels, the instructions of a (weight row, activation row)
// pair do not depend on how many activation rows the call carries.
//
// Q4_0 went through the same scheme (levels unpacked into 128-bit lanes,
// the aux records' k·Σq subtracted) and measured 13% more CPU time than the
// AVX2 kernel on a one-row product in cache on a Sapphire Rapids core
// (2026-12-03): the shuffles that unpack and pair two 18-byte blocks cost
// more than VPDPBUSD saves. It stays on AVX2 until a repacked layout.

// q8Bytes512 is the size of a Q8_0 block: a half scale, 32 signed levels.
const q8Bytes512 = 34

// dec512 is a decoded pair of weight blocks: their levels' magnitudes u,
// the mask of negative levels neg, and the weight scales dw.
type dec512 struct {
	u, dw VecVirtual
	neg   Register
}

// masks512 are the constant opmasks of a kernel: hi and lo select the high
// and the low eight of the sixteen words of a YMM, q4 the low four qwords
// of a ZMM.
type masks512 struct{ hi, lo, q4 Register }

func newMasks512() masks512 {
	m := masks512{hi: K(), lo: K(), q4: K()}
	g := GP32()
	for _, c := range []struct {
		k Register
		v uint32
	}{{m.hi, 0xff00}, {m.lo, 0x00ff}, {m.q4, 0x0f}} {
		MOVL(U32(c.v), g)
		KMOVD(g, c.k)
	}
	return m
}

// scales2 returns the sixteen float32 lanes: the half at m0 in the low
// eight, the half at m1 in the high eight (zero when two is false).
func scales2(k masks512, m0, m1 Mem, two bool) VecVirtual {
	t := YMM()
	if two {
		VPBROADCASTW(m0, t)
		VPBROADCASTW(m1, k.hi, t)
	} else {
		VPBROADCASTW_Z(m0, k.lo, t)
	}
	z := ZMM()
	VCVTPH2PS(t, z)
	return z
}

// load2 loads the 32 bytes at m0 into the low half of a ZMM register and,
// when two, the 32 bytes at m1 into its high half (else zero).
func load2(k masks512, m0, m1 Mem, two bool) VecVirtual {
	z := ZMM()
	if two {
		VBROADCASTI64X4(m0, z)
		VINSERTI64X4(U8(1), m1, z, z)
	} else {
		VMOVDQU64_Z(m0, k.q4, z)
	}
	return z
}

// decode512 decodes the weight block(s) at w. The high half of a single
// block's levels is left as it falls: the activations' high half is zero.
func decode512(k masks512, w Mem, two bool) dec512 {
	d := dec512{dw: scales2(k, w, off(w, q8Bytes512), two)}
	var q VecVirtual
	if two {
		q = load2(k, off(w, 2), off(w, q8Bytes512+2), true)
	} else {
		q = ZMM()
		VBROADCASTI64X4(off(w, 2), q)
	}
	d.u = ZMM()
	VPABSB(q, d.u)
	d.neg = K()
	VPMOVB2M(q, d.neg)
	return d
}

// pair512 accumulates into acc the product of the decoded weight blocks d
// with the activation blocks at x.
func pair512(k masks512, d dec512, x Mem, zero, acc VecVirtual, two bool) {
	xq := load2(k, off(x, 2), off(x, q8Bytes512+2), two)
	VPSUBB(xq, zero, d.neg, xq) // the weight's sign onto the activation
	sum := ZMM()
	VPXORD(sum, sum, sum)
	VPDPBUSD(xq, d.u, sum)
	s := scales2(k, x, off(x, q8Bytes512), two)
	VCVTDQ2PS(sum, sum)
	VMULPS(d.dw, s, s)
	VFMADD231PS(sum, s, acc)
}

func kern512(nt int) {
	name := fmt.Sprintf("q8_0x%dAVX512", nt)
	text(name, NOSPLIT, sig32)
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < %d: the dot product of", name, nt),
		"weight row r (nb q8_0 blocks at w) with activation row t (nb Q8_0 blocks at",
		"x + t·xstride bytes; aux unused), with AVX-512 VNNI.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	var ys, xs Register
	if nt > 1 {
		ys = Load(Param("ystride"), GP64())
		SHLQ(U8(2), ys)
		xs = Load(Param("xstride"), GP64())
	}
	k := newMasks512()
	zero := ZMM()
	VPXORD(zero, zero, zero)
	xp, n := GP64(), GP64()
	var x3 Register
	if nt == 4 {
		x3 = GP64()
	}
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	Load(Param("x"), xp)
	if nt == 4 {
		LEAQ(Mem{Base: xp, Index: xs, Scale: 2}, x3)
		ADDQ(xs, x3)
	}
	Load(Param("nb"), n)
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = ZMM()
		VPXORD(acc[t], acc[t], acc[t])
	}
	step := func(two bool) {
		blocks := 1
		if two {
			blocks = 2
		}
		d := decode512(k, Mem{Base: w}, two)
		for t := 0; t < nt; t++ {
			pair512(k, d, rowMem(xp, xs, x3, t, 0), zero, acc[t], two)
		}
		ADDQ(U8(blocks*q8Bytes512), w)
		ADDQ(U8(blocks*q8Bytes512), xp)
		if nt == 4 {
			ADDQ(U8(blocks*q8Bytes512), x3)
		}
		SUBQ(U8(blocks), n)
	}
	Label("blk2")
	CMPQ(n, U8(2))
	JL(LabelRef("blk"))
	step(true)
	JMP(LabelRef("blk2"))
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	step(false)
	Label("fin")
	for t := 0; t < nt; t++ {
		hi := YMM()
		VEXTRACTF64X4(U8(1), acc[t], hi)
		VADDPS(hi, acc[t].AsY(), hi)
		r := hsum(hi)
		if t == 3 {
			y3 := GP64()
			LEAQ(Mem{Base: y, Index: ys, Scale: 2}, y3)
			ADDQ(ys, y3)
			VMOVSS(r, Mem{Base: y3})
		} else {
			VMOVSS(r, rowMem(y, ys, nil, t, 0))
		}
	}
	ADDQ(U8(4), y)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

func quantKernels512() {
	for nt := 1; nt <= 4; nt++ {
		kern512(nt)
	}
}
