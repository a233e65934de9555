package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Element kinds of a weight matrix being packed.
const (
	kindF32 = iota
	kindF16
	kindBF16
)

// hsum4 reduces four YMM accumulators to one XMM holding their four sums.
func hsum4(a0, a1, a2, a3 VecVirtual) VecVirtual {
	VHADDPS(a1, a0, a0)
	VHADDPS(a3, a2, a2)
	VHADDPS(a2, a0, a0)
	hi := XMM()
	VEXTRACTF128(U8(1), a0, hi)
	VADDPS(hi, a0.AsX(), hi)
	return hi
}

// transpose8 transposes the 8×8 block in r (rows) and calls emit with each
// output row (a column of the input) in turn.
func transpose8(r []VecVirtual, emit func(i int, v VecVirtual)) {
	t := make([]VecVirtual, 8)
	for i := 0; i < 8; i += 2 {
		t[i], t[i+1] = YMM(), YMM()
		VUNPCKLPS(r[i+1], r[i], t[i])
		VUNPCKHPS(r[i+1], r[i], t[i+1])
	}
	s := make([]VecVirtual, 8)
	for g := 0; g < 8; g += 4 {
		for h := 0; h < 2; h++ {
			lo, hi := YMM(), YMM()
			VSHUFPS(U8(0x44), t[g+2+h], t[g+h], lo)
			VSHUFPS(U8(0xEE), t[g+2+h], t[g+h], hi)
			s[g+2*h], s[g+2*h+1] = lo, hi
		}
	}
	for i := 0; i < 4; i++ {
		o := YMM()
		VPERM2F128(U8(0x20), s[4+i], s[i], o)
		emit(i, o)
	}
	for i := 0; i < 4; i++ {
		o := YMM()
		VPERM2F128(U8(0x31), s[4+i], s[i], o)
		emit(4+i, o)
	}
}

// packNT packs 16 rows of a row-major matrix (row stride ld elements) into a
// GEMM B panel: for each of k columns (k a multiple of 8), the 16 row values
// as float32, converting half types on the way.
func packNT(name string, kind int) {
	typ, esz, shift := "float32", 4, 2
	if kind != kindF32 {
		typ, esz, shift = "uint16", 2, 1
	}
	text(name, NOSPLIT, fmt.Sprintf("func(dst *float32, src *%s, ld, k int)", typ))
	Doc(fmt.Sprintf("%s packs 16 rows of src (row stride ld) into the panel dst: for", name),
		"each column p < k (a multiple of 8), the 16 values of that column as float32.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	ld := Load(Param("ld"), GP64())
	k := Load(Param("k"), GP64())
	SHLQ(U8(shift), ld)
	// Bases of rows 0, 3, 6, 8, 11, 14; row b+1 and b+2 are reached through ld.
	base := make([]GPVirtual, 6)
	base[0] = src.(GPVirtual)
	base[1] = GP64()
	LEAQ(Mem{Base: src, Index: ld, Scale: 2}, base[1])
	ADDQ(ld, base[1])
	base[2] = GP64()
	LEAQ(Mem{Base: base[1], Index: ld, Scale: 2}, base[2])
	ADDQ(ld, base[2])
	for i := 0; i < 3; i++ {
		base[3+i] = GP64()
		LEAQ(Mem{Base: base[i], Index: ld, Scale: 8}, base[3+i])
	}
	row := func(g, i int) Mem {
		b := base[3*g+i/3]
		switch i % 3 {
		case 0:
			return Mem{Base: b}
		case 1:
			return Mem{Base: b, Index: ld, Scale: 1}
		}
		return Mem{Base: b, Index: ld, Scale: 2}
	}
	Label("loop")
	CMPQ(k, U8(8))
	JL(LabelRef("done"))
	for g := 0; g < 2; g++ {
		r := make([]VecVirtual, 8)
		for i := range r {
			r[i] = YMM()
			m := row(g, i)
			switch kind {
			case kindF32:
				VMOVUPS(m, r[i])
			case kindF16:
				VCVTPH2PS(m, r[i])
			case kindBF16:
				VPMOVZXWD(m, r[i])
				VPSLLD(U8(16), r[i], r[i])
			}
		}
		transpose8(r, func(i int, v VecVirtual) {
			VMOVUPS(v, Mem{Base: dst, Disp: 64*i + 32*g})
		})
	}
	for _, b := range base {
		ADDQ(U8(8*esz), b)
	}
	ADDQ(U32(512), dst)
	SUBQ(U8(8), k)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// constVec emits a read-only 32-byte constant of eight copies of v.
func constVec(name string, v float32) Mem {
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(math.Float32bits(v)))
	}
	return m
}

// expConsts are the constants of exp8, emitted once.
var expConsts map[string]Mem

func expConst(name string, v float32) Mem {
	if expConsts == nil {
		expConsts = map[string]Mem{}
	}
	if m, ok := expConsts[name]; ok {
		return m
	}
	m := constVec(name, v)
	expConsts[name] = m
	return m
}

// exp8 replaces the eight lanes of x by exp(x), Cephes-style: x = n·ln2 + r
// with |r| <= ln2/2, exp(r) by a degree-6 polynomial, 2^n built in the
// exponent field. Inputs are clamped to [-87.3, 88.0], so results never
// overflow to infinity or fall into subnormals. Relative error ~2 ulp.
func exp8(x VecVirtual) {
	n, y, z := YMM(), YMM(), YMM()
	VMINPS(expConst("expHi", 88.02969), x, x)
	VMAXPS(expConst("expLo", -87.33654), x, x)
	VMULPS(expConst("expLog2e", 1.44269504088896341), x, n)
	VROUNDPS(U8(0), n, n) // to nearest
	VFNMADD231PS(expConst("expC1", 0.693359375), n, x)
	VFNMADD231PS(expConst("expC2", -2.12194440e-4), n, x)
	VMOVUPS(expConst("expP0", 1.9875691500e-4), y)
	VFMADD213PS(expConst("expP1", 1.3981999507e-3), x, y)
	VFMADD213PS(expConst("expP2", 8.3334519073e-3), x, y)
	VFMADD213PS(expConst("expP3", 4.1665795894e-2), x, y)
	VFMADD213PS(expConst("expP4", 1.6666665459e-1), x, y)
	VFMADD213PS(expConst("expP5", 5.0000001201e-1), x, y)
	VMULPS(x, x, z)
	VFMADD213PS(x, z, y) // y = y·r² + r
	VADDPS(expConst("expOne", 1), y, y)
	VCVTPS2DQ(n, n)
	VPSLLD(U8(23), n, n)
	VPADDD(n, y, x) // y·2^n: add n to the exponent field
}

func expSubSum() {
	text("expSubSumAVX2", NOSPLIT, "func(x []float32, m float32) float32")
	Doc("expSubSumAVX2 replaces x[i] by exp(x[i]-m) for i < len(x)&^7 and returns their sum.")
	p := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	mv := YMM()
	VBROADCASTSS(Load(Param("m"), XMM()), mv)
	acc := YMM()
	VXORPS(acc, acc, acc)
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	v := YMM()
	VMOVUPS(Mem{Base: p}, v)
	VSUBPS(mv, v, v)
	exp8(v)
	VMOVUPS(v, Mem{Base: p})
	VADDPS(v, acc, acc)
	ADDQ(U8(32), p)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	Store(hsum(acc), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func siluMul() {
	text("siluMulAVX2", NOSPLIT, "func(out, gate, up []float32)")
	Doc("siluMulAVX2 computes out[i] = gate[i]·σ(gate[i])·up[i] for i < len(out)&^7.")
	o := Load(Param("out").Base(), GP64())
	g := Load(Param("gate").Base(), GP64())
	u := Load(Param("up").Base(), GP64())
	n := Load(Param("out").Len(), GP64())
	Label("loop")
	CMPQ(n, U8(8))
	JL(LabelRef("done"))
	gv, e := YMM(), YMM()
	VMOVUPS(Mem{Base: g}, gv)
	VXORPS(e, e, e)
	VSUBPS(gv, e, e) // -g
	exp8(e)
	VADDPS(expConst("expOne", 1), e, e)
	VMULPS(Mem{Base: u}, gv, gv)
	VDIVPS(e, gv, gv)
	VMOVUPS(gv, Mem{Base: o})
	ADDQ(U8(32), o)
	ADDQ(U8(32), g)
	ADDQ(U8(32), u)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

func maxVec() {
	text("maxAVX2", NOSPLIT, "func(x []float32) float32")
	Doc("maxAVX2 returns the largest of x (len(x) >= 1).")
	p := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	m := YMM()
	VBROADCASTSS(Mem{Base: p}, m)
	Label("loop8")
	CMPQ(n, U8(8))
	JL(LabelRef("tail"))
	VMAXPS(Mem{Base: p}, m, m)
	ADDQ(U8(32), p)
	SUBQ(U8(8), n)
	JMP(LabelRef("loop8"))
	Label("tail")
	hi := XMM()
	VEXTRACTF128(U8(1), m, hi)
	VMAXPS(hi, m.AsX(), hi)
	VPERMILPS(U8(0x4E), hi, m.AsX())
	VMAXPS(m.AsX(), hi, hi)
	VPERMILPS(U8(0xB1), hi, m.AsX())
	VMAXPS(m.AsX(), hi, hi)
	Label("loop1")
	TESTQ(n, n)
	JE(LabelRef("done"))
	VMAXSS(Mem{Base: p}, hi, hi)
	ADDQ(U8(4), p)
	DECQ(n)
	JMP(LabelRef("loop1"))
	Label("done")
	Store(hi, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func scale() {
	text("scaleAVX2", NOSPLIT, "func(x []float32, s float32)")
	Doc("scaleAVX2 computes x[i] *= s.")
	sv := YMM()
	VBROADCASTSS(Load(Param("s"), XMM()), sv)
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	floatLoop(n.(GPVirtual), []GPVirtual{x.(GPVirtual)}, []int{4}, func(off int, scalar bool) {
		t := ts[off/32]
		if scalar {
			VMULSS(Mem{Base: x}, sv.AsX(), t.AsX())
			VMOVSS(t.AsX(), Mem{Base: x})
			return
		}
		VMULPS(Mem{Base: x, Disp: off}, sv, t)
		VMOVUPS(t, Mem{Base: x, Disp: off})
	})
	VZEROUPPER()
	RET()
}

// fmaW emits acc += x·(8 keys or values at m, of kind): an F32 operand is
// used from memory, a half one widened first.
func fmaW(kind int, m Mem, x, acc VecVirtual) {
	if kind == kindF32 {
		VFMADD231PS(m, x, acc)
		return
	}
	t := YMM()
	loadW(kind, m, t)
	VFMADD231PS(t, x, acc)
}

// kvName names the attention kernels over keys and values of kind.
func kvName(base string, kind int) string {
	if kind == kindF32 {
		return base + "AVX2"
	}
	return base + kindNames[kind] + "AVX2"
}

func attnScores(kind int) {
	name := kvName("attnScores", kind)
	typ, esz := wType(kind)
	text(name, NOSPLIT, fmt.Sprintf("func(s, q *float32, k *%s, kstride, n, d int, scale float32)", typ))
	Doc(name + " computes s[j] = scale·Σ_e q[e]·k[j·kstride+e] for j < n; d is a multiple of 8.")
	s := Load(Param("s"), GP64())
	q := Load(Param("q"), GP64())
	k := Load(Param("k"), GP64())
	ks := Load(Param("kstride"), GP64())
	n := Load(Param("n"), GP64())
	d := Load(Param("d"), GP64())
	if esz == 4 {
		SHLQ(U8(2), ks)
	} else {
		SHLQ(U8(1), ks)
	}
	sc := XMM()
	VBROADCASTSS(Load(Param("scale"), XMM()), sc)
	k3, e, qp, kp := GP64(), GP64(), GP64(), GP64()

	Label("keys4")
	CMPQ(n, U8(4))
	JL(LabelRef("keys1"))
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for _, r := range acc {
		VXORPS(r, r, r)
	}
	MOVQ(d, e)
	MOVQ(q, qp)
	MOVQ(k, kp)
	LEAQ(Mem{Base: k, Index: ks, Scale: 2}, k3)
	ADDQ(ks, k3)
	Label("dims4")
	qv := YMM()
	VMOVUPS(Mem{Base: qp}, qv)
	fmaW(kind, Mem{Base: kp}, qv, acc[0])
	fmaW(kind, Mem{Base: kp, Index: ks, Scale: 1}, qv, acc[1])
	fmaW(kind, Mem{Base: kp, Index: ks, Scale: 2}, qv, acc[2])
	fmaW(kind, Mem{Base: k3}, qv, acc[3])
	ADDQ(U8(32), qp)
	ADDQ(U8(8*esz), kp)
	ADDQ(U8(8*esz), k3)
	SUBQ(U8(8), e)
	JNE(LabelRef("dims4"))
	r := hsum4(acc[0], acc[1], acc[2], acc[3])
	VMULPS(sc, r, r)
	VMOVUPS(r, Mem{Base: s})
	ADDQ(U8(16), s)
	LEAQ(Mem{Base: k, Index: ks, Scale: 4}, k)
	SUBQ(U8(4), n)
	JMP(LabelRef("keys4"))

	Label("keys1")
	TESTQ(n, n)
	JE(LabelRef("done"))
	a := YMM()
	VXORPS(a, a, a)
	MOVQ(d, e)
	MOVQ(q, qp)
	MOVQ(k, kp)
	Label("dims1")
	qv1 := YMM()
	VMOVUPS(Mem{Base: qp}, qv1)
	fmaW(kind, Mem{Base: kp}, qv1, a)
	ADDQ(U8(32), qp)
	ADDQ(U8(8*esz), kp)
	SUBQ(U8(8), e)
	JNE(LabelRef("dims1"))
	r1 := hsum(a)
	VMULSS(sc, r1, r1)
	VMOVSS(r1, Mem{Base: s})
	ADDQ(U8(4), s)
	ADDQ(ks, k)
	DECQ(n)
	JMP(LabelRef("keys1"))
	Label("done")
	VZEROUPPER()
	RET()
}

func attnAccum(kind int) {
	name := kvName("attnAccum", kind)
	typ, esz := wType(kind)
	text(name, NOSPLIT, fmt.Sprintf("func(acc *float32, v *%s, vstride int, p *float32, n, d int)", typ))
	Doc(name + " computes acc[e] += Σ_j p[j]·v[j·vstride+e] for e < d (a multiple of 8), j < n.")
	acc := Load(Param("acc"), GP64())
	v := Load(Param("v"), GP64())
	vs := Load(Param("vstride"), GP64())
	p := Load(Param("p"), GP64())
	n := Load(Param("n"), GP64())
	d := Load(Param("d"), GP64())
	if esz == 4 {
		SHLQ(U8(2), vs)
	} else {
		SHLQ(U8(1), vs)
	}
	vp, pp, j := GP64(), GP64(), GP64()
	chunk := func(name string, w int) {
		// w YMM columns, two keys per step into two accumulator sets.
		Label(name)
		CMPQ(d, U8(8*w))
		JL(LabelRef(fmt.Sprintf("%s_end", name)))
		a, b := make([]VecVirtual, w), make([]VecVirtual, w)
		for i := range a {
			a[i], b[i] = YMM(), YMM()
			VMOVUPS(Mem{Base: acc, Disp: 32 * i}, a[i])
			VXORPS(b[i], b[i], b[i])
		}
		MOVQ(v, vp)
		MOVQ(p, pp)
		MOVQ(n, j)
		Label(name + "_keys2")
		CMPQ(j, U8(2))
		JL(LabelRef(name + "_keys1"))
		p0, p1 := YMM(), YMM()
		VBROADCASTSS(Mem{Base: pp}, p0)
		VBROADCASTSS(Mem{Base: pp, Disp: 4}, p1)
		for i := range a {
			fmaW(kind, Mem{Base: vp, Disp: 8 * esz * i}, p0, a[i])
			fmaW(kind, Mem{Base: vp, Index: vs, Scale: 1, Disp: 8 * esz * i}, p1, b[i])
		}
		LEAQ(Mem{Base: vp, Index: vs, Scale: 2}, vp)
		ADDQ(U8(8), pp)
		SUBQ(U8(2), j)
		JMP(LabelRef(name + "_keys2"))
		Label(name + "_keys1")
		TESTQ(j, j)
		JE(LabelRef(name + "_store"))
		VBROADCASTSS(Mem{Base: pp}, p0)
		for i := range a {
			fmaW(kind, Mem{Base: vp, Disp: 8 * esz * i}, p0, a[i])
		}
		Label(name + "_store")
		for i := range a {
			VADDPS(b[i], a[i], a[i])
			VMOVUPS(a[i], Mem{Base: acc, Disp: 32 * i})
		}
		ADDQ(U8(32*w), acc)
		ADDQ(U8(8*esz*w), v)
		SUBQ(U8(8*w), d)
		JMP(LabelRef(name))
		Label(name + "_end")
	}
	chunk("cols4", 4)
	chunk("cols1", 1)
	VZEROUPPER()
	RET()
}

// quantQ8_0: x to Q8_0 blocks, as ggml's AVX2 path does it: d = amax/127,
// q = round-to-nearest-even(x·(1/d)), the scale stored as IEEE half.
func quantQ8_0() {
	text("quantQ8_0AVX2", NOSPLIT, "func(dst *byte, x *float32, nb int)")
	Doc("quantQ8_0AVX2 quantizes nb blocks of 32 floats at x into Q8_0 blocks at dst.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	absMask := GLOBL("absMask", RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(0x7fffffff))
	}
	perm := GLOBL("q8Perm", RODATA|NOPTR)
	for i, v := range []uint32{0, 4, 1, 5, 2, 6, 3, 7} {
		DATA(4*i, U32(v))
	}
	c127 := expConst("c127", 127)
	one := expConst("expOne", 1)
	idx, zero := YMM(), YMM()
	VMOVDQU(perm, idx)
	VXORPS(zero, zero, zero)
	g := GP32()
	Label("loop")
	TESTQ(nb, nb)
	JE(LabelRef("done"))
	v := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	m, t := YMM(), YMM()
	for i := range v {
		VMOVUPS(Mem{Base: x, Disp: 32 * i}, v[i])
	}
	VANDPS(absMask, v[0], m)
	for i := 1; i < 4; i++ {
		VANDPS(absMask, v[i], t)
		VMAXPS(t, m, m)
	}
	hi := XMM()
	VEXTRACTF128(U8(1), m, hi)
	VMAXPS(hi, m.AsX(), hi)
	VPERMILPS(U8(0x4E), hi, m.AsX())
	VMAXPS(m.AsX(), hi, hi)
	VPERMILPS(U8(0xB1), hi, m.AsX())
	VMAXPS(m.AsX(), hi, hi) // amax in every lane
	VDIVSS(c127, hi, hi)    // d
	h := XMM()
	VCVTPS2PH(U8(0), hi, h)
	VMOVD(h, g)
	MOVW(g.As16(), Mem{Base: dst})
	d, id := YMM(), YMM()
	VBROADCASTSS(hi, d)
	VMOVUPS(one, id)
	VDIVPS(d, id, id)
	VCMPPS(U8(4), zero, d, d) // d != 0
	VANDPS(d, id, id)
	for i := range v {
		VMULPS(id, v[i], v[i])
		VCVTPS2DQ(v[i], v[i])
	}
	VPACKSSDW(v[1], v[0], v[0])
	VPACKSSDW(v[3], v[2], v[2])
	VPACKSSWB(v[2], v[0], v[0])
	VPERMD(v[0], idx, v[0])
	VMOVDQU(v[0], Mem{Base: dst, Disp: 2})
	ADDQ(U8(34), dst)
	ADDQ(U8(128), x)
	DECQ(nb)
	JMP(LabelRef("loop"))
	Label("done")
	VZEROUPPER()
	RET()
}

// unpackQ4 loads the 16 nibble bytes at m as 32 unsigned bytes: low nibbles
// (elements 0..15) in the low lane, high nibbles (16..31) in the high lane.
func unpackQ4(m Mem, low VecVirtual) VecVirtual {
	q, hi := YMM(), XMM()
	VMOVDQU(m, q.AsX())
	VPSRLW(U8(4), q.AsX(), hi)
	VINSERTI128(U8(1), hi, q, q)
	VPAND(low, q, q)
	return q
}

func nibbleMask() VecVirtual {
	low := YMM()
	g := GP32()
	MOVL(U32(0x0f0f0f0f), g)
	VMOVD(g, low.AsX())
	VPBROADCASTD(low.AsX(), low)
	return low
}
