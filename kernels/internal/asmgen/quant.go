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

// (Q4_0 and Q8_0 have kernels of their own that sum block by block: q4rows.go.)
var formats32 = []fmt32{
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
// A super-block is decoded one group of 32 levels at a time into a
// register of unsigned bytes, with a vector of int16 scales for the group
// (one scale per 16 elements, eight int16 lanes each); each activation row
// t of the call adds madd(maddubs(levels, x_t[32k:]), scales) into its
// eight int32 lanes sumi_t. Then, per row, the level offset is taken out
// through the activation's sums of 16 (Q6_K: 32, Q3_K: 4 times
// Σ scale·bsum), (dx·d)·float(sumi_t) is added to the row's accumulator
// and -(dx·dmin)·float(Σ min·bsum) to its minimum accumulator. The lanes
// and the float operations of a (weight row, activation row) pair are the
// same whatever the number of activation rows in the call.

type kfmt struct {
	name   string
	wbytes int
	corr   int // offset of the levels taken out through the bsums (0, 4, 32)
	mins   int // minimum term: 0 none, 4 (Q4_K/Q5_K: per 32), 8 (Q2_K: per 16)
}

var formatsK = []kfmt{
	{name: "q4_K", wbytes: 144, mins: 4},
	{name: "q5_K", wbytes: 176, mins: 4},
	{name: "q6_K", wbytes: 210, corr: 32},
	{name: "q3_K", wbytes: 110, corr: 4},
	{name: "q2_K", wbytes: 84, mins: 8},
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

// groupSums adds group k's levels q, scaled by scv, times each activation
// row's quants into its sums: sumi[t] += madd(maddubs(q, x_t[32k:]), scv).
func groupSums(sumi []VecVirtual, q VecVirtual, scv Op, xs []Mem, k int) {
	for t, x := range xs {
		p := YMM()
		VPMADDUBSW(off(x, 4+32*k), q, p)
		VPMADDWD(scv, p, p)
		VPADDD(p, sumi[t], sumi[t])
	}
}

// finishK takes the level offset out of sumi (through the activation's
// sums of 16 and the sixteen int16 scales sc16), then accumulates
// (dx·d)·float(sumi) into acc and, with minima mins, -(dx·dmin)·float(Σ
// min·bsum) into accm, for the Q8_K block at x. acc and accm are registers
// (one activation row) or scratch slots (several); the arithmetic is the
// same.
func finishK(f kfmt, sumi VecVirtual, sc16, mins Op, d, dmin VecVirtual, x Mem, acc, accm Op) {
	if f.corr > 0 {
		bs := YMM()
		VMOVDQU(off(x, 260), bs)
		VPMADDWD(sc16, bs, bs)
		sh := 5
		if f.corr == 4 {
			sh = 2
		}
		VPSLLD(U8(sh), bs, bs)
		VPSUBD(bs, sumi, sumi)
	}
	dx := XMM()
	VMOVSS(x, dx)
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
	VMOVDQU(off(x, 260), bs)
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

// k4Scales decodes a Q4_K/Q5_K block's scales at m into registers, as
// ggml's get_scale_min_k4 does: the eight int16 scales in both lanes of
// sc, the eight int16 minima in mn.
func k4Scales(m Mem) (sc, mn VecVirtual) {
	u0, u1, u2, t1, t2 := GP64(), GP64(), GP64(), GP64(), GP64()
	MOVL(m, u0.As32())
	MOVL(off(m, 4), u1.As32())
	MOVL(off(m, 8), u2.As32())
	// minima 4..7: (u2>>4)&0x0f.. | ((u1>>6)&0x03..)<<4
	MOVL(u2.As32(), t1.As32())
	SHRL(U8(4), t1.As32())
	ANDL(U32(0x0f0f0f0f), t1.As32())
	MOVL(u1.As32(), t2.As32())
	SHRL(U8(6), t2.As32())
	ANDL(U32(0x03030303), t2.As32())
	SHLL(U8(4), t2.As32())
	ORL(t2.As32(), t1.As32())
	// minima 0..3
	ANDL(U32(0x3f3f3f3f), u1.As32())
	// scales 4..7: u2&0x0f.. | ((u0>>6)&0x03..)<<4
	ANDL(U32(0x0f0f0f0f), u2.As32())
	MOVL(u0.As32(), t2.As32())
	SHRL(U8(6), t2.As32())
	ANDL(U32(0x03030303), t2.As32())
	SHLL(U8(4), t2.As32())
	ORL(t2.As32(), u2.As32())
	// scales 0..3
	ANDL(U32(0x3f3f3f3f), u0.As32())
	SHLQ(U8(32), u2)
	ORQ(u2, u0)
	SHLQ(U8(32), t1)
	ORQ(t1, u1)
	b := XMM()
	VMOVQ(u0, b)
	VPINSRQ(U8(1), u1, b, b)
	v := YMM()
	VPMOVZXBW(b, v)
	mn = XMM()
	VEXTRACTI128(U8(1), v, mn)
	sc = YMM()
	VINSERTI128(U8(1), v.AsX(), v, sc)
	return sc, mn
}

// q3Scales decodes the sixteen 6-bit scales of the Q3_K block at w, less
// 32, as int16 (ggml's AVX2 unpacking).
func q3Scales(w Mem) VecVirtual {
	a0, a1, a2, t1, t2 := GP32(), GP32(), GP32(), GP32(), GP32()
	MOVL(off(w, 96), a0)
	MOVL(off(w, 100), a1)
	MOVL(off(w, 104), a2)
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
	VMOVQ(p0, b)
	VPINSRQ(U8(1), p2, b, b)
	m32 := XMM()
	MOVL(U32(0x20202020), t1)
	VMOVD(t1, m32)
	VPBROADCASTD(m32, m32)
	VPSUBB(m32, b, b)
	sc := YMM()
	VPMOVSXBW(b, sc)
	return sc
}

// pairScales returns the scale vector of group k (0..7) from the sixteen
// int16 scales, given lo and hi, their low and high lanes duplicated into
// both lanes: scale 2k in the low eight lanes, 2k+1 in the high eight.
func pairScales(lo, hi VecVirtual, k int) VecVirtual {
	src := lo
	if k >= 4 {
		src = hi
	}
	g := YMM()
	VPSHUFB(qc(fmt.Sprintf("qGs%d", k%4)), src, g)
	return g
}

// sixteenScales returns lo and hi for pairScales.
func sixteenScales(sc VecVirtual) (lo, hi VecVirtual) {
	lo, hi = YMM(), YMM()
	VPERMQ(U8(0x44), sc, lo)
	VPERMQ(U8(0xee), sc, hi)
	return lo, hi
}

// decodeK emits the sums of one super-block at w against the activation
// blocks xs (one per row) into sumi, decoding the levels group by group,
// and returns what finishK needs.
type decodeK func(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual) (sc16, mins Op, d, dmin VecVirtual)

var decodersK = map[string]decodeK{
	"q4_K": func(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual) (Op, Op, VecVirtual, VecVirtual) {
		return decodeK4(w, xs, low, sumi, false)
	},
	"q5_K": func(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual) (Op, Op, VecVirtual, VecVirtual) {
		return decodeK4(w, xs, low, sumi, true)
	},
	"q6_K": func(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual) (Op, Op, VecVirtual, VecVirtual) {
		sc := YMM()
		VPMOVSXBW(off(w, 192), sc)
		lo, hi := sixteenScales(sc)
		for h := 0; h < 2; h++ {
			b1, b2, hb := YMM(), YMM(), YMM()
			VMOVDQU(off(w, 64*h), b1)
			VMOVDQU(off(w, 64*h+32), b2)
			VMOVDQU(off(w, 128+32*h), hb)
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
				groupSums(sumi, q, pairScales(lo, hi, k), xs, k)
			}
		}
		return sc, nil, halfScalar(off(w, 208)), nil
	},
	"q3_K": func(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual) (Op, Op, VecVirtual, VecVirtual) {
		sc := q3Scales(w)
		lo, hi := sixteenScales(sc)
		hm := YMM()
		VMOVDQU(w, hm)
		for h := 0; h < 2; h++ {
			qb := YMM()
			VMOVDQU(off(w, 32+32*h), qb)
			for j := 0; j < 4; j++ {
				q := hbit(qb, 2*j, 0, qc("qX03"))
				VPOR(hbit(hm, 4*h+j, 2, qc("qX04")), q, q)
				k := 4*h + j
				groupSums(sumi, q, pairScales(lo, hi, k), xs, k)
			}
		}
		return sc, nil, halfScalar(off(w, 108)), nil
	},
	"q2_K": func(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual) (Op, Op, VecVirtual, VecVirtual) {
		b, h := XMM(), XMM()
		VMOVDQU(w, b)
		VPSRLW(U8(4), b, h)
		VPAND(low.AsX(), b, b)
		VPAND(low.AsX(), h, h)
		sc, mn := YMM(), YMM()
		VPMOVZXBW(b, sc)
		VPMOVZXBW(h, mn)
		lo, hi := sixteenScales(sc)
		for hh := 0; hh < 2; hh++ {
			qb := YMM()
			VMOVDQU(off(w, 16+32*hh), qb)
			for j := 0; j < 4; j++ {
				q := hbit(qb, 2*j, 0, qc("qX03"))
				k := 4*hh + j
				groupSums(sumi, q, pairScales(lo, hi, k), xs, k)
			}
		}
		return nil, mn, halfScalar(off(w, 80)), halfScalar(off(w, 82))
	},
}

func decodeK4(w Mem, xs []Mem, low VecVirtual, sumi []VecVirtual, five bool) (Op, Op, VecVirtual, VecVirtual) {
	sc, mn := k4Scales(off(w, 4))
	qs := 16
	var hb VecVirtual
	if five {
		hb = YMM()
		VMOVDQU(off(w, 16), hb)
		qs = 48
	}
	for j := 0; j < 4; j++ {
		q, h := YMM(), YMM()
		VMOVDQU(off(w, qs+32*j), q)
		VPSRLW(U8(4), q, h)
		VPAND(low, q, q)
		VPAND(low, h, h)
		if five {
			VPOR(hbit(hb, 2*j, 4, qc("qX10")), q, q)
			VPOR(hbit(hb, 2*j+1, 4, qc("qX10")), h, h)
		}
		g0 := YMM()
		VPSHUFB(qc(fmt.Sprintf("qSc%d", 2*j)), sc, g0)
		groupSums(sumi, q, g0, xs, 2*j)
		g1 := YMM()
		VPSHUFB(qc(fmt.Sprintf("qSc%d", 2*j+1)), sc, g1)
		groupSums(sumi, h, g1, xs, 2*j+1)
	}
	return nil, mn, halfScalar(w), halfScalar(off(w, 2))
}

const sigK = "func(y *float32, ystride int, w *byte, rows int, x *byte, xstride int, nb int)"

// kernK emits format f's kernel for nt activation rows: one row keeps its
// accumulators in registers, several in a stack scratch.
func kernK(f kfmt, nt int) {
	name := fmt.Sprintf("%sx%dAVX2", f.name, nt)
	if nt == 1 {
		text(name, NOSPLIT, sigK)
	} else {
		text(name, 0, sigK) // not NOSPLIT: a frame for the accumulators
	}
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < %d: the dot product", name, nt),
		fmt.Sprintf("of weight row r (nb %s super-blocks at w) with activation row t (nb Q8_K", f.name),
		"blocks at x + t·xstride bytes).")
	var s Mem
	if nt > 1 {
		// acc[t] at 32t, accm[t] at 32(nt+t), aligned to 32 bytes so that
		// no access splits a cache line
		sp := GP64()
		LEAQ(AllocLocal(2*32*nt+32), sp)
		ADDQ(U8(31), sp)
		ANDQ(I8(-32), sp)
		s = Mem{Base: sp}
	}
	y := Load(Param("y"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	var ys, xs, x3 Register
	if nt > 1 {
		ys = Load(Param("ystride"), GP64())
		SHLQ(U8(2), ys)
		xs = Load(Param("xstride"), GP64())
	}
	if nt == 4 {
		x3 = GP64()
	}
	low := nibbleMask()
	xp, n := GP64(), GP64()
	var acc, accm Op
	var accR, accmR VecVirtual
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	if nt == 1 {
		accR, accmR = YMM(), YMM()
		VXORPS(accR, accR, accR)
		VXORPS(accmR, accmR, accmR)
		acc, accm = accR, accmR
	} else {
		z := YMM()
		VXORPS(z, z, z)
		for i := 0; i < 2*nt; i++ {
			VMOVUPS(z, off(s, 32*i))
		}
	}
	Load(Param("x"), xp)
	if nt == 4 {
		LEAQ(Mem{Base: xp, Index: xs, Scale: 2}, x3)
		ADDQ(xs, x3)
	}
	Load(Param("nb"), n)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	xm := make([]Mem, nt)
	sumi := make([]VecVirtual, nt)
	for t := range xm {
		xm[t] = rowMem(xp, xs, x3, t, 0)
		sumi[t] = YMM()
		VPXOR(sumi[t], sumi[t], sumi[t])
	}
	sc16, mins, d, dmin := decodersK[f.name](Mem{Base: w}, xm, low, sumi)
	for t := range xm {
		if nt > 1 {
			acc, accm = off(s, 32*t), off(s, 32*(nt+t))
		}
		finishK(f, sumi[t], sc16, mins, d, dmin, xm[t], acc, accm)
	}
	ADDQ(U32(f.wbytes), w)
	ADDQ(U32(292), xp)
	if nt == 4 {
		ADDQ(U32(292), x3)
	}
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	for t := 0; t < nt; t++ {
		a, am := accR, accmR
		if nt > 1 {
			a, am = YMM(), YMM()
			VMOVUPS(off(s, 32*t), a)
			VMOVUPS(off(s, 32*(nt+t)), am)
		}
		r := hsum(a)
		if f.mins > 0 {
			VADDSS(hsum(am), r, r)
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

// quantKernels emits every quantized mat-mul kernel.
func quantKernels() {
	for _, f := range formats32 {
		for nt := 1; nt <= 4; nt++ {
			kern32(f, nt)
		}
	}
	for _, f := range formatsK {
		for nt := 1; nt <= 4; nt++ {
			kernK(f, nt)
		}
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
