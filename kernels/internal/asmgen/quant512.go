package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 quantized kernels (F, BW, VL, DQ, VNNI): Q8_0 and Q4_0 weights
// against Q8_0 activations, two 32-element blocks per ZMM register. Block
// 2i goes to the low 256 bits and 2i+1 to the high 256 bits; VPDPBUSD sums
// unsigned weight bytes times signed activation bytes in groups of four
// into sixteen int32 lanes, eight per block; each half is converted to
// float32 and scaled by its block's dw·dx. An odd last block runs through
// the same instructions with the high half zero (levels and scales). As in
// the AVX2 kernels, the instructions of a (weight row, activation row)
// pair do not depend on how many activation rows the call carries.

type fmt512 struct {
	name   string
	wbytes int
	aux    bool // Q4_0: aux records (k·Σq lanes, then the scale as float32)
}

var formats512 = []fmt512{
	{name: "q8_0", wbytes: 34},
	{name: "q4_0", wbytes: 18, aux: true},
}

// dec512 is a decoded pair of weight blocks: unsigned levels u, for Q8_0
// the mask of negative weights neg, and the weight scales dw.
type dec512 struct {
	u, dw VecVirtual
	neg   Register
}

// masks512 are the constant opmasks of a kernel: hi and lo select the high
// and the low eight of sixteen lanes (words of a YMM, dwords of a ZMM), q4
// the low four qwords of a ZMM, odd the words of its 128-bit lanes 1 and 3.
type masks512 struct{ hi, lo, q4, odd Register }

func newMasks512() masks512 {
	m := masks512{hi: K(), lo: K(), q4: K(), odd: K()}
	g := GP32()
	for _, c := range []struct {
		k Register
		v uint32
	}{{m.hi, 0xff00}, {m.lo, 0x00ff}, {m.q4, 0x0f}, {m.odd, 0xff00ff00}} {
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
func decode512(f fmt512, k masks512, w Mem, low VecVirtual, two bool) dec512 {
	d := dec512{dw: scales2(k, w, off(w, f.wbytes), two)}
	if f.aux {
		// 128-bit lanes: block 0's nibbles, then them shifted down 4, then
		// the same of block 1; masked to the low nibble
		u := ZMM()
		VBROADCASTI32X4(off(w, 2), u)
		if two {
			VINSERTI32X4(U8(2), off(w, f.wbytes+2), u, u)
			VINSERTI32X4(U8(3), off(w, f.wbytes+2), u, u)
		}
		VPSRLW(U8(4), u, k.odd, u)
		VPANDD(low, u, u)
		d.u = u
		return d
	}
	var q VecVirtual
	if two {
		q = load2(k, off(w, 2), off(w, f.wbytes+2), true)
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
// with the activation blocks at x (aux records at a).
func pair512(f fmt512, k masks512, d dec512, x, a Mem, zero, acc VecVirtual, two bool) {
	xq := load2(k, off(x, 2), off(x, 36), two)
	if !f.aux {
		VPSUBB(xq, zero, d.neg, xq) // the weight's sign onto the activation
	}
	sum := ZMM()
	VPXORD(sum, sum, sum)
	VPDPBUSD(xq, d.u, sum)
	var s VecVirtual
	if f.aux {
		VPSUBD(load2(k, a, off(a, 36), two), sum, sum)
		s = ZMM()
		if two {
			VBROADCASTSS(off(a, 32), s)
			VBROADCASTSS(off(a, 36+32), k.hi, s)
		} else {
			VBROADCASTSS_Z(off(a, 32), k.lo, s)
		}
	} else {
		s = scales2(k, x, off(x, 34), two)
	}
	VCVTDQ2PS(sum, sum)
	VMULPS(d.dw, s, s)
	VFMADD231PS(sum, s, acc)
}

func kern512(f fmt512, nt int) {
	name := fmt.Sprintf("%sx%dAVX512", f.name, nt)
	text(name, NOSPLIT, sig32)
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < %d: the dot product of", name, nt),
		fmt.Sprintf("weight row r (nb %s blocks at w) with activation row t (nb Q8_0 blocks at", f.name),
		"x + t·xstride bytes, aux records at aux + t·auxstride bytes), with AVX-512 VNNI.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	var ys, xs, as Register
	if nt > 1 {
		ys = Load(Param("ystride"), GP64())
		SHLQ(U8(2), ys)
		xs = Load(Param("xstride"), GP64())
		if f.aux {
			as = Load(Param("auxstride"), GP64())
		}
	}
	k := newMasks512()
	var low VecVirtual
	if f.aux {
		low = ZMM()
		VPBROADCASTD(nibbleMask().AsX(), low)
	}
	zero := ZMM()
	VPXORD(zero, zero, zero)
	xp, ap, n := GP64(), GP64(), GP64()
	var x3, a3 Register
	if nt == 4 {
		x3 = GP64()
		if f.aux {
			a3 = GP64()
		}
	}
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	Load(Param("x"), xp)
	if nt == 4 {
		LEAQ(Mem{Base: xp, Index: xs, Scale: 2}, x3)
		ADDQ(xs, x3)
	}
	if f.aux {
		Load(Param("aux"), ap)
		if nt == 4 {
			LEAQ(Mem{Base: ap, Index: as, Scale: 2}, a3)
			ADDQ(as, a3)
		}
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
		d := decode512(f, k, Mem{Base: w}, low, two)
		for t := 0; t < nt; t++ {
			var am Mem
			if f.aux {
				am = rowMem(ap, as, a3, t, 0)
			}
			pair512(f, k, d, rowMem(xp, xs, x3, t, 0), am, zero, acc[t], two)
		}
		ADDQ(U8(blocks*f.wbytes), w)
		ADDQ(U8(blocks*34), xp)
		if nt == 4 {
			ADDQ(U8(blocks*34), x3)
		}
		if f.aux {
			ADDQ(U8(blocks*36), ap)
			if nt == 4 {
				ADDQ(U8(blocks*36), a3)
			}
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
	for _, f := range formats512 {
		for nt := 1; nt <= 4; nt++ {
			kern512(f, nt)
		}
	}
}
