package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Quantized mat-mul kernels: rows weight rows against nt activation rows
// (1 <= nt <= 4). Every (weight row, activation row) pair goes through the
// same instructions whatever nt is, so a row of the product does not
// depend on the other rows of the batch (see kernels/quant.go).

// constBytes emits a read-only constant of the given bytes.
func constBytes(name string, b []byte) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i, v := range b {
		DATA(i, U8(v))
	}
	return m
}

// splat returns n copies of the byte pattern p.
func splat(p []byte, n int) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, p...)
	}
	return b[:n]
}

var qconst map[string]Mem

// qc returns the named 32-byte constant, emitting it on first use.
func qc(name string) Mem {
	if m, ok := qconst[name]; ok {
		return m
	}
	if qconst == nil {
		qconst = map[string]Mem{}
	}
	var b []byte
	switch name {
	case "qBitShuf": // byte i of the lane: byte i/8 of a broadcast dword
		for i := 0; i < 32; i++ {
			b = append(b, byte(i/8))
		}
	case "qBitSel": // all bits but bit i%8
		for i := 0; i < 32; i++ {
			b = append(b, ^byte(1<<(i%8)))
		}
	case "qOnes8":
		b = splat([]byte{0xff}, 32)
	case "qX10":
		b = splat([]byte{0x10}, 32)
	case "qX30":
		b = splat([]byte{0x30}, 32)
	case "qX03":
		b = splat([]byte{0x03}, 32)
	case "qX04":
		b = splat([]byte{0x04}, 32)
	case "qPairShuf": // low lane: word 0 of each dword, high lane: word 1
		b = append(splat([]byte{0, 1}, 16), splat([]byte{2, 3}, 16)...)
	case "qSc0", "qSc1", "qSc2", "qSc3", "qSc4", "qSc5", "qSc6", "qSc7": // word k of each lane, everywhere
		k := int(name[3] - '0')
		b = splat([]byte{byte(2 * k), byte(2*k + 1)}, 32)
	case "qGs0", "qGs1", "qGs2", "qGs3": // low lane: word 2k of the lane; high lane: word 2k+1
		k := int(name[3] - '0')
		b = append(splat([]byte{byte(4 * k), byte(4*k + 1)}, 16), splat([]byte{byte(4*k + 2), byte(4*k + 3)}, 16)...)
	case "qAbs":
		b = splat([]byte{0xff, 0xff, 0xff, 0x7f}, 32)
	case "qOnes1":
		b = splat([]byte{1}, 32)
	case "qPackPerm": // the dword order that undoes VPACKSSDW/VPACKSSWB's lane interleave
		for _, v := range []byte{0, 4, 1, 5, 2, 6, 3, 7} {
			b = append(b, v, 0, 0, 0)
		}
	case "qIQ4NL":
		vals := []int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
		for i := 0; i < 32; i++ {
			b = append(b, byte(vals[i%16]))
		}
	default:
		panic("unknown constant " + name)
	}
	m := constBytes(name, b)
	qconst[name] = m
	return m
}

// ---- 32-element block formats ----

type consts32 struct{ ones, low, table VecVirtual }

type dec32 struct{ q, aq, dw, mw VecVirtual }

type fmt32 struct {
	name   string
	wbytes int
	abytes int  // aux bytes per activation block: 0, 36 (k·Σq lanes + scale) or 4 (s)
	signed bool // weight levels signed (sign trick), else unsigned
	table  bool // levels through the IQ4_NL table
	min    bool // a minimum term m·s per block (Q4_1, Q5_1)
	// decode loads the weight block at w into d.
	decode func(c consts32, w Mem) dec32
}

// bits32 expands the 32 bits at m to 32 bytes: 0x10 where the bit is set.
func bits32(m Mem) VecVirtual {
	v := YMM()
	VPBROADCASTD(m, v)
	VPSHUFB(qc("qBitShuf"), v, v)
	VPOR(qc("qBitSel"), v, v)
	VPCMPEQB(qc("qOnes8"), v, v)
	VPAND(qc("qX10"), v, v)
	return v
}

func half2f32(m Mem) VecVirtual {
	v := YMM()
	VPBROADCASTW(m, v.AsX())
	VCVTPH2PS(v.AsX(), v)
	return v
}

var formats32 = []fmt32{
	{name: "q8_0", wbytes: 34, signed: true, decode: func(c consts32, w Mem) dec32 {
		q, aq := YMM(), YMM()
		VMOVDQU(off(w, 2), q)
		VPSIGNB(q, q, aq)
		return dec32{q: q, aq: aq, dw: half2f32(w)}
	}},
	{name: "q4_0", wbytes: 18, abytes: 36, decode: func(c consts32, w Mem) dec32 {
		return dec32{q: unpackQ4(off(w, 2), c.low), dw: half2f32(w)}
	}},
	{name: "q5_0", wbytes: 22, abytes: 36, decode: func(c consts32, w Mem) dec32 {
		q := unpackQ4(off(w, 6), c.low)
		VPOR(bits32(off(w, 2)), q, q)
		return dec32{q: q, dw: half2f32(w)}
	}},
	{name: "q4_1", wbytes: 20, abytes: 4, min: true, decode: func(c consts32, w Mem) dec32 {
		q := unpackQ4(off(w, 4), c.low)
		return dec32{q: q, dw: half2f32(w), mw: half2f32(off(w, 2))}
	}},
	{name: "q5_1", wbytes: 24, abytes: 4, min: true, decode: func(c consts32, w Mem) dec32 {
		q := unpackQ4(off(w, 8), c.low)
		VPOR(bits32(off(w, 4)), q, q)
		return dec32{q: q, dw: half2f32(w), mw: half2f32(off(w, 2))}
	}},
	{name: "iq4nl", wbytes: 18, signed: true, table: true, decode: func(c consts32, w Mem) dec32 {
		n := unpackQ4(off(w, 2), c.low)
		q, aq := YMM(), YMM()
		VPSHUFB(n, c.table, q)
		VPSIGNB(q, q, aq)
		return dec32{q: q, aq: aq, dw: half2f32(w)}
	}},
}

// off returns m displaced by d bytes.
func off(m Mem, d int) Mem {
	m.Disp += d
	return m
}

// pair32 accumulates into acc (and accs, the minimum term) the product of
// the decoded weight block d with the activation block at x (aux record at a).
func pair32(f fmt32, c consts32, d dec32, x, a Mem, acc, accs VecVirtual) {
	v := YMM()
	xq := x
	xq.Disp += 2
	if f.signed {
		VMOVDQU(xq, v)
		VPSIGNB(d.q, v, v)
		VPMADDUBSW(v, d.aq, v)
	} else {
		VPMADDUBSW(xq, d.q, v)
	}
	VPMADDWD(v, c.ones, v)
	s := YMM()
	if f.abytes == 36 {
		VPSUBD(a, v, v)
		as := a
		as.Disp += 32
		VBROADCASTSS(as, s)
	} else {
		VPBROADCASTW(x, s.AsX())
		VCVTPH2PS(s.AsX(), s)
	}
	VCVTDQ2PS(v, v)
	VMULPS(d.dw, s, s)
	VFMADD231PS(v, s, acc)
	if f.min {
		VFMADD231SS(a, d.mw.AsX(), accs.AsX())
	}
}

const sig32 = "func(y *float32, ystride int, w *byte, rows int, x *byte, xstride int, aux *byte, auxstride int, nb int)"

// rowMem addresses activation row t (< 4) of a set whose row 0 is at base,
// row stride in stride, row 3 at base3.
func rowMem(base, stride, base3 Register, t, disp int) Mem {
	switch t {
	case 0:
		return Mem{Base: base, Disp: disp}
	case 1:
		return Mem{Base: base, Index: stride, Scale: 1, Disp: disp}
	case 2:
		return Mem{Base: base, Index: stride, Scale: 2, Disp: disp}
	}
	return Mem{Base: base3, Disp: disp}
}

func kern32(f fmt32, nt int) {
	name := fmt.Sprintf("%sx%dAVX2", f.name, nt)
	text(name, NOSPLIT, sig32)
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < %d: the dot product of", name, nt),
		fmt.Sprintf("weight row r (nb %s blocks at w) with activation row t (nb Q8_0 blocks at", f.name),
		"x + t·xstride bytes, aux records at aux + t·auxstride bytes).")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	var ys, xs, as Register
	if nt > 1 {
		ys = Load(Param("ystride"), GP64())
		SHLQ(U8(2), ys)
		xs = Load(Param("xstride"), GP64())
		if f.abytes > 0 {
			as = Load(Param("auxstride"), GP64())
		}
	}
	c := consts32{ones: onesWords()}
	if !f.signed || f.table {
		c.low = nibbleMask()
	}
	if f.table {
		c.table = YMM()
		VMOVDQU(qc("qIQ4NL"), c.table)
	}
	xp, ap, n := GP64(), GP64(), GP64()
	var x3, a3 Register
	if nt == 4 {
		x3 = GP64()
		if f.abytes > 0 {
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
	if f.abytes > 0 {
		Load(Param("aux"), ap)
		if nt == 4 {
			LEAQ(Mem{Base: ap, Index: as, Scale: 2}, a3)
			ADDQ(as, a3)
		}
	}
	Load(Param("nb"), n)
	acc := make([]VecVirtual, nt)
	accs := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = YMM()
		VXORPS(acc[t], acc[t], acc[t])
		if f.min {
			accs[t] = YMM()
			VXORPS(accs[t], accs[t], accs[t])
		}
	}
	// one activation row: two blocks per iteration, then one (the same
	// pairs in the same order; more rows have registers for one block only)
	step := func(blocks int) {
		for u := 0; u < blocks; u++ {
			d := f.decode(c, Mem{Base: w, Disp: u * f.wbytes})
			for t := 0; t < nt; t++ {
				var am Mem
				if f.abytes > 0 {
					am = rowMem(ap, as, a3, t, u*f.abytes)
				}
				pair32(f, c, d, rowMem(xp, xs, x3, t, 34*u), am, acc[t], accs[t])
			}
		}
		ADDQ(U8(blocks*f.wbytes), w)
		ADDQ(U8(blocks*34), xp)
		if nt == 4 {
			ADDQ(U8(blocks*34), x3)
		}
		if f.abytes > 0 {
			ADDQ(U8(blocks*f.abytes), ap)
			if nt == 4 {
				ADDQ(U8(blocks*f.abytes), a3)
			}
		}
		SUBQ(U8(blocks), n)
	}
	if nt == 1 {
		Label("blk2")
		CMPQ(n, U8(2))
		JL(LabelRef("blk"))
		step(2)
		JMP(LabelRef("blk2"))
	}
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	step(1)
	JMP(LabelRef("blk"))
	Label("fin")
	for t := 0; t < nt; t++ {
		r := hsum(acc[t])
		if f.min {
			VADDSS(accs[t].AsX(), r, r)
		}
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

// ---- k-quants: 256-element super-blocks against Q8_K ----
//
// Each super-block is decoded once into a stack scratch: its 256 levels as
// unsigned bytes in eight groups of 32 (QV), a vector of int16 scales for
// each group (SCV: one scale per 16 elements, eight int16 lanes each), the
// sixteen int16 scales (SC16) and, for Q4_K/Q5_K/Q2_K, the minima (MIN).
// Then for each activation row the shared pair code sums
// madd(maddubs(QV[k], x[32k:]), SCV[k]) over the groups into eight int32
// lanes, takes out the level offset through the activation's sums of 16
// (Q6_K: 32, Q3_K: 4 times Σ scale·bsum), and accumulates
// (dx·d)·float(lanes) into the row's accumulator, and -(dx·dmin)·
// float(Σ min·bsum) into its minimum accumulator.

const (
	sACC  = 0   // 4 × 32: the accumulators
	sACCM = 128 // 4 × 32: the minimum accumulators
	sQV   = 256 // 8 × 32
	sSCV  = 512 // 8 × 32
	sSC16 = 768 // 32: sixteen int16 scales (Q6_K, Q3_K)
	sMIN  = 800 // 32: int16 minima (Q2_K: sixteen, Q4_K/Q5_K: eight)
	sTMP  = 832 // 16
	sSize = 848
)

type kfmt struct {
	name   string
	wbytes int
	corr   int // offset of the levels taken out through the bsums (0, 4, 32)
	mins   int // minimum term: 0 none, 4 (Q4_K/Q5_K: per 32), 8 (Q2_K: per 16)
	// decode fills the scratch s from the super-block at w and returns d
	// (and dmin) broadcast in XMM registers.
	decode func(w Register, s Mem) (d, dmin VecVirtual)
}

func sm(s Mem, off int) Mem {
	s.Disp += off
	return s
}

// groupScales fills SCV from sc, the sixteen int16 scales: group k gets
// scale 2k in its low eight lanes and 2k+1 in its high eight.
func groupScales(sc VecVirtual, s Mem) {
	lo, hi := YMM(), YMM()
	VPERMQ(U8(0x44), sc, lo)
	VPERMQ(U8(0xee), sc, hi)
	for k := 0; k < 8; k++ {
		src := lo
		if k >= 4 {
			src = hi
		}
		v := YMM()
		VPSHUFB(qc(fmt.Sprintf("qGs%d", k%4)), src, v)
		VMOVDQU(v, sm(s, sSCV+32*k))
	}
}

// k4Scales decodes the twelve packed scale bytes of a Q4_K/Q5_K block at
// m as ggml's get_scale_min_k4 does: the eight minima as int16 into MIN,
// and each group's scale in all sixteen lanes into SCV.
func k4Scales(m Mem, s Mem) {
	sc, mn := k4ScalesReg(m)
	VMOVDQU(mn, sm(s, sMIN))
	for k := 0; k < 8; k++ {
		g := YMM()
		VPSHUFB(qc(fmt.Sprintf("qSc%d", k)), sc, g)
		VMOVDQU(g, sm(s, sSCV+32*k))
	}
}

// hbit returns ((v >> bit) & 1) << to for each byte of v (to > bit allowed), via one
// 16-bit shift and a mask.
func hbit(v VecVirtual, bit, to int, mask Mem) VecVirtual {
	r := YMM()
	switch {
	case bit < to:
		VPSLLW(U8(to-bit), v, r)
		VPAND(mask, r, r)
	case bit > to:
		VPSRLW(U8(bit-to), v, r)
		VPAND(mask, r, r)
	default:
		VPAND(mask, v, r)
	}
	return r
}

func halfScalar(m Mem) VecVirtual {
	v := XMM()
	VPBROADCASTW(m, v)
	VCVTPH2PS(v, v)
	return v
}

var formatsK = []kfmt{
	{name: "q4_K", wbytes: 144, mins: 4, decode: func(w Register, s Mem) (VecVirtual, VecVirtual) {
		k4Scales(Mem{Base: w, Disp: 4}, s)
		low := nibbleMask()
		for j := 0; j < 4; j++ {
			q, h := YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 16 + 32*j}, q)
			VPSRLW(U8(4), q, h)
			VPAND(low, q, q)
			VPAND(low, h, h)
			VMOVDQU(q, sm(s, sQV+64*j))
			VMOVDQU(h, sm(s, sQV+64*j+32))
		}
		return halfScalar(Mem{Base: w}), halfScalar(Mem{Base: w, Disp: 2})
	}},
	{name: "q5_K", wbytes: 176, mins: 4, decode: func(w Register, s Mem) (VecVirtual, VecVirtual) {
		k4Scales(Mem{Base: w, Disp: 4}, s)
		low := nibbleMask()
		hb := YMM()
		VMOVDQU(Mem{Base: w, Disp: 16}, hb)
		for j := 0; j < 4; j++ {
			q, h := YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 48 + 32*j}, q)
			VPSRLW(U8(4), q, h)
			VPAND(low, q, q)
			VPAND(low, h, h)
			VPOR(hbit(hb, 2*j, 4, qc("qX10")), q, q)
			VPOR(hbit(hb, 2*j+1, 4, qc("qX10")), h, h)
			VMOVDQU(q, sm(s, sQV+64*j))
			VMOVDQU(h, sm(s, sQV+64*j+32))
		}
		return halfScalar(Mem{Base: w}), halfScalar(Mem{Base: w, Disp: 2})
	}},
	{name: "q6_K", wbytes: 210, corr: 32, decode: func(w Register, s Mem) (VecVirtual, VecVirtual) {
		sc := YMM()
		VPMOVSXBW(Mem{Base: w, Disp: 192}, sc)
		VMOVDQU(sc, sm(s, sSC16))
		groupScales(sc, s)
		low := nibbleMask()
		for h := 0; h < 2; h++ {
			b1, b2, hb := YMM(), YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 64 * h}, b1)
			VMOVDQU(Mem{Base: w, Disp: 64*h + 32}, b2)
			VMOVDQU(Mem{Base: w, Disp: 128 + 32*h}, hb)
			for i := 0; i < 4; i++ {
				q := YMM()
				src := b1
				if i%2 == 1 {
					src = b2
				}
				if i < 2 {
					VPAND(low, src, q)
				} else {
					VPSRLW(U8(4), src, q)
					VPAND(low, q, q)
				}
				VPOR(hbit(hb, 2*i, 4, qc("qX30")), q, q)
				VMOVDQU(q, sm(s, sQV+32*(4*h+i)))
			}
		}
		return halfScalar(Mem{Base: w, Disp: 208}), nil
	}},
	{name: "q3_K", wbytes: 110, corr: 4, decode: func(w Register, s Mem) (VecVirtual, VecVirtual) {
		sc := q3Scales(w)
		VMOVDQU(sc, sm(s, sSC16))
		groupScales(sc, s)
		hm := YMM()
		VMOVDQU(Mem{Base: w}, hm)
		for h := 0; h < 2; h++ {
			qb := YMM()
			VMOVDQU(Mem{Base: w, Disp: 32 + 32*h}, qb)
			for j := 0; j < 4; j++ {
				q := hbit(qb, 2*j, 0, qc("qX03"))
				VPOR(hbit(hm, 4*h+j, 2, qc("qX04")), q, q)
				VMOVDQU(q, sm(s, sQV+32*(4*h+j)))
			}
		}
		return halfScalar(Mem{Base: w, Disp: 108}), nil
	}},
	{name: "q2_K", wbytes: 84, mins: 8, decode: func(w Register, s Mem) (VecVirtual, VecVirtual) {
		low := nibbleMask()
		b, h := XMM(), XMM()
		VMOVDQU(Mem{Base: w}, b)
		VPSRLW(U8(4), b, h)
		VPAND(low.AsX(), b, b)
		VPAND(low.AsX(), h, h)
		sc, mn := YMM(), YMM()
		VPMOVZXBW(b, sc)
		VPMOVZXBW(h, mn)
		VMOVDQU(mn, sm(s, sMIN))
		groupScales(sc, s)
		for hh := 0; hh < 2; hh++ {
			qb := YMM()
			VMOVDQU(Mem{Base: w, Disp: 16 + 32*hh}, qb)
			for j := 0; j < 4; j++ {
				q := hbit(qb, 2*j, 0, qc("qX03"))
				VMOVDQU(q, sm(s, sQV+32*(4*hh+j)))
			}
		}
		return halfScalar(Mem{Base: w, Disp: 80}), halfScalar(Mem{Base: w, Disp: 82})
	}},
}

// pairK accumulates one decoded super-block (scratch s, scales d, dmin)
// against the Q8_K block at x into the accumulators at acc (and acc+128).
func pairK(f kfmt, s Mem, d, dmin VecVirtual, x, acc Register) {
	sumi := YMM()
	VPXOR(sumi, sumi, sumi)
	for k := 0; k < 8; k++ {
		q := YMM()
		VMOVDQU(sm(s, sQV+32*k), q)
		groupSum(sumi, q, sm(s, sSCV+32*k), x, k)
	}
	finishK(f, sumi, sm(s, sSC16), sm(s, sMIN), d, dmin, x, Mem{Base: acc}, Mem{Base: acc, Disp: 128})
}

// groupSum adds to the eight int32 lanes of sumi the products of group k's
// 32 levels q with the activations, pairs of them scaled by the int16 scales
// scv: sumi += madd(maddubs(q, x[32k:]), scv). q is overwritten.
func groupSum(sumi, q VecVirtual, scv Op, x Register, k int) {
	VPMADDUBSW(Mem{Base: x, Disp: 4 + 32*k}, q, q)
	VPMADDWD(scv, q, q)
	VPADDD(q, sumi, sumi)
}

// finishK takes the level offset out of sumi (through the activation's
// sums of 16 and the sixteen int16 scales sc16), then accumulates
// (dx·d)·float(sumi) into acc and, with minima mins, -(dx·dmin)·float(Σ
// min·bsum) into accm. acc and accm are registers (one activation row) or
// scratch slots (several); the arithmetic is the same.
func finishK(f kfmt, sumi VecVirtual, sc16, mins Op, d, dmin VecVirtual, x Register, acc, accm Op) {
	if f.corr > 0 {
		bs := YMM()
		VMOVDQU(Mem{Base: x, Disp: 260}, bs)
		VPMADDWD(sc16, bs, bs)
		sh := 5
		if f.corr == 4 {
			sh = 2
		}
		VPSLLD(U8(sh), bs, bs)
		VPSUBD(bs, sumi, sumi)
	}
	dx := XMM()
	VMOVSS(Mem{Base: x}, dx)
	dd := YMM()
	VMULSS(d, dx, dd.AsX())
	VBROADCASTSS(dd.AsX(), dd)
	VCVTDQ2PS(sumi, sumi)
	a, inMem := acc.(Mem)
	var av VecVirtual
	if inMem {
		av = YMM()
		VMOVUPS(a, av)
	} else {
		av = acc.(VecVirtual)
	}
	VFMADD231PS(sumi, dd, av)
	if inMem {
		VMOVUPS(av, a)
	}
	if f.mins == 0 {
		return
	}
	dm := YMM()
	VMULSS(dmin, dx, dm.AsX())
	VBROADCASTSS(dm.AsX(), dm)
	var am VecVirtual
	if inMem {
		am = YMM()
		VMOVUPS(accm, am)
	} else {
		am = accm.(VecVirtual)
	}
	bs := YMM()
	VMOVDQU(Mem{Base: x, Disp: 260}, bs)
	if f.mins == 4 {
		bh := XMM()
		VEXTRACTI128(U8(1), bs, bh)
		VPHADDW(bh, bs.AsX(), bh)
		VPMADDWD(mins, bh, bh)
		VCVTDQ2PS(bh, bh)
		VFNMADD231PS(bh, dm.AsX(), am.AsX()) // a VEX.128 op: the upper lanes of am stay zero
		if inMem {
			VMOVUPS(am.AsX(), accm)
		}
		return
	}
	VPMADDWD(mins, bs, bs)
	VCVTDQ2PS(bs, bs)
	VFNMADD231PS(bs, dm, am)
	if inMem {
		VMOVUPS(am, accm)
	}
}

// k4ScalesReg decodes a Q4_K/Q5_K block's scales at m into registers: the
// eight int16 scales in both lanes of sc, the eight int16 minima in mn.
func k4ScalesReg(m Mem) (sc, mn VecVirtual) {
	u0, u1, u2, t1, t2 := GP64(), GP64(), GP64(), GP64(), GP64()
	MOVL(m, u0.As32())
	m.Disp += 4
	MOVL(m, u1.As32())
	m.Disp += 4
	MOVL(m, u2.As32())
	MOVL(u2.As32(), t1.As32())
	SHRL(U8(4), t1.As32())
	ANDL(U32(0x0f0f0f0f), t1.As32())
	MOVL(u1.As32(), t2.As32())
	SHRL(U8(6), t2.As32())
	ANDL(U32(0x03030303), t2.As32())
	SHLL(U8(4), t2.As32())
	ORL(t2.As32(), t1.As32())
	ANDL(U32(0x3f3f3f3f), u1.As32())
	ANDL(U32(0x0f0f0f0f), u2.As32())
	MOVL(u0.As32(), t2.As32())
	SHRL(U8(6), t2.As32())
	ANDL(U32(0x03030303), t2.As32())
	SHLL(U8(4), t2.As32())
	ORL(t2.As32(), u2.As32())
	ANDL(U32(0x3f3f3f3f), u0.As32())
	SHLQ(U8(32), u2)
	ORQ(u2, u0)
	SHLQ(U8(32), t1)
	ORQ(t1, u1)
	b := XMM()
	MOVQ(u0, b)
	VPINSRQ(U8(1), u1, b, b)
	v := YMM()
	VPMOVZXBW(b, v)
	mn = XMM()
	VEXTRACTI128(U8(1), v, mn)
	sc = YMM()
	VINSERTI128(U8(1), v.AsX(), v, sc)
	return sc, mn
}

// oneK emits, for one activation row, the integer sums of a super-block at
// w against the Q8_K block at x, decoding the levels into registers as it
// goes; it returns sumi (the same lanes pairK computes) and what finishK needs.
type oneK func(w, x Register, low VecVirtual) (sumi VecVirtual, sc16, mins Op, d, dmin VecVirtual)

var onesK = map[string]oneK{
	"q4_K": func(w, x Register, low VecVirtual) (VecVirtual, Op, Op, VecVirtual, VecVirtual) {
		return oneK4(w, x, low, false)
	},
	"q5_K": func(w, x Register, low VecVirtual) (VecVirtual, Op, Op, VecVirtual, VecVirtual) {
		return oneK4(w, x, low, true)
	},
	"q6_K": func(w, x Register, low VecVirtual) (VecVirtual, Op, Op, VecVirtual, VecVirtual) {
		sc := YMM()
		VPMOVSXBW(Mem{Base: w, Disp: 192}, sc)
		lo, hi := YMM(), YMM()
		VPERMQ(U8(0x44), sc, lo)
		VPERMQ(U8(0xee), sc, hi)
		sumi := YMM()
		VPXOR(sumi, sumi, sumi)
		for h := 0; h < 2; h++ {
			b1, b2, hb := YMM(), YMM(), YMM()
			VMOVDQU(Mem{Base: w, Disp: 64 * h}, b1)
			VMOVDQU(Mem{Base: w, Disp: 64*h + 32}, b2)
			VMOVDQU(Mem{Base: w, Disp: 128 + 32*h}, hb)
			for i := 0; i < 4; i++ {
				q := YMM()
				src := b1
				if i%2 == 1 {
					src = b2
				}
				if i < 2 {
					VPAND(low, src, q)
				} else {
					VPSRLW(U8(4), src, q)
					VPAND(low, q, q)
				}
				VPOR(hbit(hb, 2*i, 4, qc("qX30")), q, q)
				k := 4*h + i
				g := YMM()
				gsrc := lo
				if k >= 4 {
					gsrc = hi
				}
				VPSHUFB(qc(fmt.Sprintf("qGs%d", k%4)), gsrc, g)
				groupSum(sumi, q, g, x, k)
			}
		}
		return sumi, sc, nil, halfScalar(Mem{Base: w, Disp: 208}), nil
	},
	"q3_K": func(w, x Register, low VecVirtual) (VecVirtual, Op, Op, VecVirtual, VecVirtual) {
		sc := q3Scales(w)
		lo, hi := YMM(), YMM()
		VPERMQ(U8(0x44), sc, lo)
		VPERMQ(U8(0xee), sc, hi)
		sumi := YMM()
		VPXOR(sumi, sumi, sumi)
		hm := YMM()
		VMOVDQU(Mem{Base: w}, hm)
		for h := 0; h < 2; h++ {
			qb := YMM()
			VMOVDQU(Mem{Base: w, Disp: 32 + 32*h}, qb)
			for j := 0; j < 4; j++ {
				q := hbit(qb, 2*j, 0, qc("qX03"))
				VPOR(hbit(hm, 4*h+j, 2, qc("qX04")), q, q)
				k := 4*h + j
				g := YMM()
				gsrc := lo
				if k >= 4 {
					gsrc = hi
				}
				VPSHUFB(qc(fmt.Sprintf("qGs%d", k%4)), gsrc, g)
				groupSum(sumi, q, g, x, k)
			}
		}
		return sumi, sc, nil, halfScalar(Mem{Base: w, Disp: 108}), nil
	},
	"q2_K": func(w, x Register, low VecVirtual) (VecVirtual, Op, Op, VecVirtual, VecVirtual) {
		b, h := XMM(), XMM()
		VMOVDQU(Mem{Base: w}, b)
		VPSRLW(U8(4), b, h)
		VPAND(low.AsX(), b, b)
		VPAND(low.AsX(), h, h)
		sc, mn := YMM(), YMM()
		VPMOVZXBW(b, sc)
		VPMOVZXBW(h, mn)
		lo, hi := YMM(), YMM()
		VPERMQ(U8(0x44), sc, lo)
		VPERMQ(U8(0xee), sc, hi)
		sumi := YMM()
		VPXOR(sumi, sumi, sumi)
		for hh := 0; hh < 2; hh++ {
			qb := YMM()
			VMOVDQU(Mem{Base: w, Disp: 16 + 32*hh}, qb)
			for j := 0; j < 4; j++ {
				q := hbit(qb, 2*j, 0, qc("qX03"))
				k := 4*hh + j
				g := YMM()
				gsrc := lo
				if k >= 4 {
					gsrc = hi
				}
				VPSHUFB(qc(fmt.Sprintf("qGs%d", k%4)), gsrc, g)
				groupSum(sumi, q, g, x, k)
			}
		}
		return sumi, nil, mn, halfScalar(Mem{Base: w, Disp: 80}), halfScalar(Mem{Base: w, Disp: 82})
	},
}

func oneK4(w, x Register, low VecVirtual, five bool) (VecVirtual, Op, Op, VecVirtual, VecVirtual) {
	sc, mn := k4ScalesReg(Mem{Base: w, Disp: 4})
	qs := 16
	var hb VecVirtual
	if five {
		hb = YMM()
		VMOVDQU(Mem{Base: w, Disp: 16}, hb)
		qs = 48
	}
	sumi := YMM()
	VPXOR(sumi, sumi, sumi)
	for j := 0; j < 4; j++ {
		q, h := YMM(), YMM()
		VMOVDQU(Mem{Base: w, Disp: qs + 32*j}, q)
		VPSRLW(U8(4), q, h)
		VPAND(low, q, q)
		VPAND(low, h, h)
		if five {
			VPOR(hbit(hb, 2*j, 4, qc("qX10")), q, q)
			VPOR(hbit(hb, 2*j+1, 4, qc("qX10")), h, h)
		}
		g0, g1 := YMM(), YMM()
		VPSHUFB(qc(fmt.Sprintf("qSc%d", 2*j)), sc, g0)
		groupSum(sumi, q, g0, x, 2*j)
		VPSHUFB(qc(fmt.Sprintf("qSc%d", 2*j+1)), sc, g1)
		groupSum(sumi, h, g1, x, 2*j+1)
	}
	return sumi, nil, mn, halfScalar(Mem{Base: w}), halfScalar(Mem{Base: w, Disp: 2})
}

// q3Scales decodes the sixteen 6-bit scales of the Q3_K block at w, less
// 32, as int16 (ggml's AVX2 unpacking).
func q3Scales(w Register) VecVirtual {
	a0, a1, a2, t1, t2 := GP32(), GP32(), GP32(), GP32(), GP32()
	MOVL(Mem{Base: w, Disp: 96}, a0)
	MOVL(Mem{Base: w, Disp: 100}, a1)
	MOVL(Mem{Base: w, Disp: 104}, a2)
	part := func(lo Register, loShift, hiShift int) GPVirtual {
		r := GP64()
		MOVL(lo, r.As32())
		if loShift > 0 {
			SHRL(U8(loShift), r.As32())
		}
		ANDL(U32(0x0f0f0f0f), r.As32())
		MOVL(a2, t2)
		if hiShift > 0 {
			SHRL(U8(hiShift), t2)
		}
		ANDL(U32(0x03030303), t2)
		SHLL(U8(4), t2)
		ORL(t2, r.As32())
		return r
	}
	p0, p1 := part(a0, 0, 0), part(a1, 0, 2)
	SHLQ(U8(32), p1)
	ORQ(p1, p0)
	p2, p3 := part(a0, 4, 4), part(a1, 4, 6)
	SHLQ(U8(32), p3)
	ORQ(p3, p2)
	b := XMM()
	MOVQ(p0, b)
	VPINSRQ(U8(1), p2, b, b)
	m32 := XMM()
	MOVL(U32(0x20202020), t1)
	MOVD(t1, m32)
	VPBROADCASTD(m32, m32)
	VPSUBB(m32, b, b)
	sc := YMM()
	VPMOVSXBW(b, sc)
	return sc
}

// kernK1 is kernK for one activation row, with the accumulators in
// registers and the levels decoded straight into the sums.
func kernK1(f kfmt) {
	name := fmt.Sprintf("%sx1AVX2", f.name)
	text(name, NOSPLIT, "func(y *float32, w *byte, rows int, x *byte, nb int)")
	Doc(fmt.Sprintf("%s computes y[r] for r < rows: the dot product of weight row r (nb %s", name, f.name),
		"super-blocks at w) with the activation row of nb Q8_K blocks at x.")
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	low := nibbleMask()
	xp, n := GP64(), GP64()
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	acc, accm := YMM(), YMM()
	VXORPS(acc, acc, acc)
	VXORPS(accm, accm, accm)
	Load(Param("x"), xp)
	Load(Param("nb"), n)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	sumi, sc16, mins, d, dmin := onesK[f.name](w, xp, low)
	finishK(f, sumi, sc16, mins, d, dmin, xp, acc, accm)
	ADDQ(U32(f.wbytes), w)
	ADDQ(U32(292), xp)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	r := hsum(acc)
	if f.mins > 0 {
		rm := hsum(accm)
		VADDSS(rm, r, r)
	}
	VMOVSS(r, Mem{Base: y})
	ADDQ(U8(4), y)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

const sigK = "func(y *float32, ystride int, w *byte, rows int, x *byte, xstride int, nb int, nt int)"

func kernK(f kfmt) {
	name := fmt.Sprintf("%sAVX2", f.name)
	text(name, 0, sigK) // not NOSPLIT: the scratch frame is larger than a nosplit function may take
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < nt (1..4): the dot product", name),
		fmt.Sprintf("of weight row r (nb %s super-blocks at w) with activation row t (nb Q8_K", f.name),
		"blocks at x + t·xstride bytes).")
	// the scratch, aligned to 32 bytes so that no vector access splits a cache line
	sp := GP64()
	LEAQ(AllocLocal(sSize+32), sp)
	ADDQ(U8(31), sp)
	ANDQ(I8(-32), sp)
	s := Mem{Base: sp}
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	z := YMM()
	VXORPS(z, z, z)
	for t := 0; t < 4; t++ {
		VMOVUPS(z, sm(s, sACC+32*t))
		VMOVUPS(z, sm(s, sACCM+32*t))
	}
	xb, n := GP64(), GP64()
	Load(Param("x"), xb)
	Load(Param("nb"), n)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	d, dmin := f.decode(w, s)
	xp, ac, tc := GP64(), GP64(), GP64()
	MOVQ(xb, xp)
	LEAQ(sm(s, sACC), ac)
	Load(Param("nt"), tc)
	Label("pair")
	pairK(f, s, d, dmin, xp, ac)
	xs := Load(Param("xstride"), GP64())
	ADDQ(xs, xp)
	ADDQ(U8(32), ac)
	DECQ(tc)
	JNE(LabelRef("pair"))
	ADDQ(U32(f.wbytes), w)
	ADDQ(U32(292), xb)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	yp, ys, ac2, tc2 := GP64(), GP64(), GP64(), GP64()
	MOVQ(y, yp)
	Load(Param("ystride"), ys)
	SHLQ(U8(2), ys)
	LEAQ(sm(s, sACC), ac2)
	Load(Param("nt"), tc2)
	Label("red")
	a := YMM()
	VMOVUPS(Mem{Base: ac2}, a)
	r := hsum(a)
	if f.mins > 0 {
		m := YMM()
		VMOVUPS(Mem{Base: ac2, Disp: 128}, m)
		rm := hsum(m)
		VADDSS(rm, r, r)
	}
	VMOVSS(r, Mem{Base: yp})
	ADDQ(ys, yp)
	ADDQ(U8(32), ac2)
	DECQ(tc2)
	JNE(LabelRef("red"))
	ADDQ(U8(4), y)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

// quantKernels emits every quantized mat-mul kernel.
func quantKernels() {
	for _, f := range formats32 {
		for nt := 1; nt <= 4; nt++ {
			kern32(f, nt)
		}
	}
	for _, f := range formatsK {
		kernK1(f)
		kernK(f)
	}
	quantQ8_K()
}

// quantQ8_K: x to Q8_K blocks exactly as ggml's quantize_row_q8_K_ref:
// mx, the first value of largest magnitude, maps to -127; q = x·(-127/mx)
// rounded to nearest even (saturating, which is ggml's min(127, ·)); d =
// 1/iscale; bsums the sums of each 16 quants. An all-zero block is all
// zero bytes.
func quantQ8_K() {
	text("quantQ8_KAVX2", NOSPLIT, "func(dst *byte, x *float32, nb int)")
	Doc("quantQ8_KAVX2 quantizes nb blocks of 256 floats at x into Q8_K blocks at dst.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	abs := YMM()
	VMOVDQU(qc("qAbs"), abs)
	idx := YMM()
	VMOVDQU(qc("qPackPerm"), idx)
	Label("blk")
	TESTQ(nb, nb)
	JE(LabelRef("done"))
	// amax over the 32 vectors, four running maxima
	m := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for i := 0; i < 32; i++ {
		if i < 4 {
			VANDPS(Mem{Base: x, Disp: 32 * i}, abs, m[i])
			continue
		}
		t := YMM()
		VANDPS(Mem{Base: x, Disp: 32 * i}, abs, t)
		VMAXPS(t, m[i%4], m[i%4])
	}
	VMAXPS(m[1], m[0], m[0])
	VMAXPS(m[3], m[2], m[2])
	VMAXPS(m[2], m[0], m[0])
	hi := XMM()
	VEXTRACTF128(U8(1), m[0], hi)
	VMAXPS(hi, m[0].AsX(), hi)
	t2 := XMM()
	VPERMILPS(U8(0x4E), hi, t2)
	VMAXPS(t2, hi, hi)
	VPERMILPS(U8(0xB1), hi, t2)
	VMAXPS(t2, hi, hi) // amax in every lane
	zero := XMM()
	VXORPS(zero, zero, zero)
	VUCOMISS(zero, hi)
	JNE(LabelRef("nonzero"))
	zy := YMM()
	VXORPS(zy, zy, zy)
	for off := 0; off+32 <= 292; off += 32 {
		VMOVDQU(zy, Mem{Base: dst, Disp: off})
	}
	VMOVDQU(zy.AsX(), Mem{Base: dst, Disp: 292 - 16})
	JMP(LabelRef("next"))

	Label("nonzero")
	// the first element whose magnitude is amax
	amax := YMM()
	VBROADCASTSS(hi, amax)
	p, i, g := GP64(), GP64(), GP32()
	MOVQ(x, p)
	XORQ(i, i)
	Label("find")
	t := YMM()
	VANDPS(Mem{Base: p}, abs, t)
	VCMPPS(U8(0), amax, t, t) // EQ_OQ
	VMOVMSKPS(t, g)
	TESTL(g, g)
	JNE(LabelRef("found"))
	ADDQ(U8(32), p)
	ADDQ(U8(8), i)
	JMP(LabelRef("find"))
	Label("found")
	BSFL(g, g)
	ADDQ(g.As64(), i)
	mx := XMM()
	VMOVSS(Mem{Base: x, Index: i, Scale: 4}, mx)
	is := XMM()
	VMOVSS(qcF("qM127", -127), is)
	VDIVSS(mx, is, is) // iscale = -127/mx
	isv := YMM()
	VBROADCASTSS(is, isv)
	ones := YMM()
	VMOVDQU(qc("qOnes1"), ones)
	var h1, h2 [2]VecVirtual
	for k := 0; k < 8; k++ {
		v := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
		for j := range v {
			VMULPS(Mem{Base: x, Disp: 128*k + 32*j}, isv, v[j])
			VCVTPS2DQ(v[j], v[j])
		}
		VPACKSSDW(v[1], v[0], v[0])
		VPACKSSDW(v[3], v[2], v[2])
		VPACKSSWB(v[2], v[0], v[0])
		VPERMD(v[0], idx, v[0])
		VMOVDQU(v[0], Mem{Base: dst, Disp: 4 + 32*k})
		// sums of 16: pair sums, then three rounds of in-lane pairwise adds
		VPMADDUBSW(v[0], ones, v[0])
		if k%2 == 0 {
			h1[(k/2)%2] = v[0]
			continue
		}
		VPHADDW(v[0], h1[(k/2)%2], h1[(k/2)%2]) // quads of groups k-1, k
		if (k/2)%2 == 0 {
			continue
		}
		h := YMM()
		VPHADDW(h1[1], h1[0], h) // octs of groups k-3..k
		h2[k/4] = h
	}
	s := YMM()
	VPHADDW(h2[1], h2[0], s) // low lane: sums 0, 2, …, 14; high lane: 1, 3, …, 15
	sh := XMM()
	VEXTRACTI128(U8(1), s, sh)
	lo := XMM()
	VPUNPCKLWD(sh, s.AsX(), lo)
	VPUNPCKHWD(sh, s.AsX(), sh)
	VMOVDQU(lo, Mem{Base: dst, Disp: 260})
	VMOVDQU(sh, Mem{Base: dst, Disp: 276})
	d := XMM()
	VMOVSS(qcF("qOneF", 1), d)
	VDIVSS(is, d, d)
	VMOVSS(d, Mem{Base: dst})
	Label("next")
	ADDQ(U32(292), dst)
	ADDQ(U32(1024), x)
	DECQ(nb)
	JMP(LabelRef("blk"))
	Label("done")
	VZEROUPPER()
	RET()
}

// qcF returns a 4-byte float constant.
func qcF(name string, v float32) Mem {
	if m, ok := qconst[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	DATA(0, U32(math.Float32bits(v)))
	qconst[name] = m
	return m
}
