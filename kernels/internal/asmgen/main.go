// Command asmgen generates herd's AVX2+FMA kernels (kernels_amd64.s) and
// their Go declarations with avo. Run it through go generate in package
// kernels; it is a module of its own so that avo's build-time dependencies
// stay out of herd's go.mod.
package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("amd64,!purego")
	gemmKernel()
	dot()
	sumSq()
	axpy()
	scaleMul()
	add()
	convHalf("convF16AVX2", true)
	convHalf("convBF16AVX2", false)
	toHalf()
	quantKernels()
	packNT("packNTF32AVX2", kindF32)
	packNT("packNTF16AVX2", kindF16)
	packNT("packNTBF16AVX2", kindBF16)
	for _, k := range []int{kindF32, kindF16, kindBF16} {
		dotRows(k)
		dotTile(k)
	}
	expSubSum()
	siluMul()
	maxVec()
	scale()
	for _, k := range []int{kindF32, kindF16} {
		attnScores(k)
		attnAccum(k)
	}
	quantQ8_0()
	tileKernels()
	quantKernels512()
	q4Kernels512()
	floatKernels512()
	gemmKernel512()
	f16x32Kernels()
	cpuidFunc()
	Generate()
}

// hsum reduces the eight lanes of acc to a scalar in the low lane of the
// returned XMM register.
func hsum(acc VecVirtual) Register {
	hi := XMM()
	lo := acc.AsX()
	VEXTRACTF128(U8(1), acc, hi)
	VADDPS(hi, lo, lo)
	VHADDPS(lo, lo, lo)
	VHADDPS(lo, lo, lo)
	return lo
}

// gemmKernel: the 6×16 micro-kernel. Twelve YMM accumulators hold the tile;
// each k step loads two YMM of the B panel and broadcasts six A values.
func gemmKernel() {
	text("gemmKernelAVX2", NOSPLIT, "func(k int, a, b, c *float32, ldc int, accumulate bool)")
	Doc("gemmKernelAVX2 computes the 6×16 tile c (row stride ldc floats) = or += a·b",
		"from a packed A panel (k steps of 6 floats) and B panel (k steps of 16).")
	k := Load(Param("k"), GP64())
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	c := Load(Param("c"), GP64())
	ldc := Load(Param("ldc"), GP64())
	SHLQ(U8(2), ldc)

	// Prefetch the C tile while the loop runs.
	row := GP64()
	MOVQ(c, row)
	for i := 0; i < 6; i++ {
		PREFETCHT0(Mem{Base: row})
		PREFETCHT0(Mem{Base: row, Disp: 60})
		if i < 5 {
			ADDQ(ldc, row)
		}
	}

	acc := make([]VecVirtual, 12)
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	b0, b1, av := YMM(), YMM(), YMM()
	step := func(u int) {
		VMOVUPS(Mem{Base: b, Disp: 64 * u}, b0)
		VMOVUPS(Mem{Base: b, Disp: 64*u + 32}, b1)
		for i := 0; i < 6; i++ {
			VBROADCASTSS(Mem{Base: a, Disp: 24*u + 4*i}, av)
			VFMADD231PS(b0, av, acc[2*i])
			VFMADD231PS(b1, av, acc[2*i+1])
		}
	}
	const unroll = 4
	Label("loop4")
	CMPQ(k, U8(unroll))
	JL(LabelRef("loop1"))
	for u := 0; u < unroll; u++ {
		step(u)
	}
	ADDQ(U32(24*unroll), a)
	ADDQ(U32(64*unroll), b)
	SUBQ(U8(unroll), k)
	JMP(LabelRef("loop4"))
	Label("loop1")
	TESTQ(k, k)
	JE(LabelRef("store"))
	step(0)
	ADDQ(U8(24), a)
	ADDQ(U8(64), b)
	DECQ(k)
	JMP(LabelRef("loop1"))

	Label("store")
	accum := Load(Param("accumulate"), GP8())
	TESTB(accum, accum)
	JE(LabelRef("overwrite"))
	for i := 0; i < 6; i++ {
		VADDPS(Mem{Base: c}, acc[2*i], acc[2*i])
		VADDPS(Mem{Base: c, Disp: 32}, acc[2*i+1], acc[2*i+1])
		VMOVUPS(acc[2*i], Mem{Base: c})
		VMOVUPS(acc[2*i+1], Mem{Base: c, Disp: 32})
		if i < 5 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
	Label("overwrite")
	for i := 0; i < 6; i++ {
		VMOVUPS(acc[2*i], Mem{Base: c})
		VMOVUPS(acc[2*i+1], Mem{Base: c, Disp: 32})
		if i < 5 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}

// floatLoop emits the common shape of an elementwise float32 kernel: a main
// loop over 32 elements (four YMM), a loop over 8, and a scalar tail. body
// gets the byte offset of the vector (or scalar) and whether it is scalar.
func floatLoop(n GPVirtual, ptrs []GPVirtual, strides []int, body func(off int, scalar bool)) {
	Label("loop32")
	CMPQ(n, U8(32))
	JL(LabelRef("loop8"))
	for u := 0; u < 4; u++ {
		body(32*u, false)
	}
	for i, p := range ptrs {
		ADDQ(U8(32*strides[i]), p)
	}
	SUBQ(U8(32), n)
	JMP(LabelRef("loop32"))
	Label("loop8")
	CMPQ(n, U8(8))
	JL(LabelRef("tail"))
	body(0, false)
	for i, p := range ptrs {
		ADDQ(U8(8*strides[i]), p)
	}
	SUBQ(U8(8), n)
	JMP(LabelRef("loop8"))
	Label("tail")
	TESTQ(n, n)
	JE(LabelRef("done"))
	body(0, true)
	for i, p := range ptrs {
		ADDQ(U8(strides[i]), p)
	}
	DECQ(n)
	JMP(LabelRef("tail"))
	Label("done")
}

func dot() {
	text("dotAVX2", NOSPLIT, "func(a, b []float32) float32")
	Doc("dotAVX2 returns Σ a[i]·b[i] over len(a) elements.")
	a := Load(Param("a").Base(), GP64())
	b := Load(Param("b").Base(), GP64())
	n := Load(Param("a").Len(), GP64())
	// acc[4] takes the scalar tail: a VEX scalar op clears the upper lanes
	// of its destination, so it must not be one of the vector accumulators.
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM(), YMM()}
	for _, r := range acc {
		VXORPS(r, r, r)
	}
	t := YMM()
	floatLoop(n.(GPVirtual), []GPVirtual{a.(GPVirtual), b.(GPVirtual)}, []int{4, 4}, func(off int, scalar bool) {
		if scalar {
			VMOVSS(Mem{Base: a}, t.AsX())
			VFMADD231SS(Mem{Base: b}, t.AsX(), acc[4].AsX())
			return
		}
		r := acc[off/32]
		VMOVUPS(Mem{Base: a, Disp: off}, t)
		VFMADD231PS(Mem{Base: b, Disp: off}, t, r)
	})
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	VADDPS(acc[4], acc[0], acc[0])
	Store(hsum(acc[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func sumSq() {
	text("sumSqAVX2", NOSPLIT, "func(x []float32) float32")
	Doc("sumSqAVX2 returns Σ x[i]².")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	// acc[4] takes the scalar tail: a VEX scalar op clears the upper lanes
	// of its destination, so it must not be one of the vector accumulators.
	acc := []VecVirtual{YMM(), YMM(), YMM(), YMM(), YMM()}
	for _, r := range acc {
		VXORPS(r, r, r)
	}
	t := YMM()
	floatLoop(n.(GPVirtual), []GPVirtual{x.(GPVirtual)}, []int{4}, func(off int, scalar bool) {
		if scalar {
			VMOVSS(Mem{Base: x}, t.AsX())
			VFMADD231SS(t.AsX(), t.AsX(), acc[4].AsX())
			return
		}
		VMOVUPS(Mem{Base: x, Disp: off}, t)
		VFMADD231PS(t, t, acc[off/32])
	})
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	VADDPS(acc[4], acc[0], acc[0])
	Store(hsum(acc[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func axpy() {
	text("axpyAVX2", NOSPLIT, "func(alpha float32, x, y []float32)")
	Doc("axpyAVX2 computes y[i] += alpha·x[i] over len(x) elements.")
	al := YMM()
	VBROADCASTSS(Load(Param("alpha"), XMM()), al)
	x := Load(Param("x").Base(), GP64())
	y := Load(Param("y").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	floatLoop(n.(GPVirtual), []GPVirtual{x.(GPVirtual), y.(GPVirtual)}, []int{4, 4}, func(off int, scalar bool) {
		t := ts[off/32]
		if scalar {
			VMOVSS(Mem{Base: y}, t.AsX())
			VFMADD231SS(Mem{Base: x}, al.AsX(), t.AsX())
			VMOVSS(t.AsX(), Mem{Base: y})
			return
		}
		VMOVUPS(Mem{Base: y, Disp: off}, t)
		VFMADD231PS(Mem{Base: x, Disp: off}, al, t)
		VMOVUPS(t, Mem{Base: y, Disp: off})
	})
	VZEROUPPER()
	RET()
}

func scaleMul() {
	text("scaleMulAVX2", NOSPLIT, "func(out, x, w []float32, s float32)")
	Doc("scaleMulAVX2 computes out[i] = w[i]·(s·x[i]) over len(out) elements.")
	sv := YMM()
	VBROADCASTSS(Load(Param("s"), XMM()), sv)
	o := Load(Param("out").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	w := Load(Param("w").Base(), GP64())
	n := Load(Param("out").Len(), GP64())
	ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	floatLoop(n.(GPVirtual), []GPVirtual{o.(GPVirtual), x.(GPVirtual), w.(GPVirtual)}, []int{4, 4, 4}, func(off int, scalar bool) {
		t := ts[off/32]
		if scalar {
			VMULSS(Mem{Base: x}, sv.AsX(), t.AsX())
			VMULSS(Mem{Base: w}, t.AsX(), t.AsX())
			VMOVSS(t.AsX(), Mem{Base: o})
			return
		}
		VMULPS(Mem{Base: x, Disp: off}, sv, t)
		VMULPS(Mem{Base: w, Disp: off}, t, t)
		VMOVUPS(t, Mem{Base: o, Disp: off})
	})
	VZEROUPPER()
	RET()
}

func add() {
	text("addAVX2", NOSPLIT, "func(out, a, b []float32)")
	Doc("addAVX2 computes out[i] = a[i] + b[i] over len(out) elements.")
	o := Load(Param("out").Base(), GP64())
	a := Load(Param("a").Base(), GP64())
	b := Load(Param("b").Base(), GP64())
	n := Load(Param("out").Len(), GP64())
	ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	floatLoop(n.(GPVirtual), []GPVirtual{o.(GPVirtual), a.(GPVirtual), b.(GPVirtual)}, []int{4, 4, 4}, func(off int, scalar bool) {
		t := ts[off/32]
		if scalar {
			VMOVSS(Mem{Base: a}, t.AsX())
			VADDSS(Mem{Base: b}, t.AsX(), t.AsX())
			VMOVSS(t.AsX(), Mem{Base: o})
			return
		}
		VMOVUPS(Mem{Base: a, Disp: off}, t)
		VADDPS(Mem{Base: b, Disp: off}, t, t)
		VMOVUPS(t, Mem{Base: o, Disp: off})
	})
	VZEROUPPER()
	RET()
}

// loadHalf converts 8 (or, scalar, 1) half values at m to float32 in t:
// IEEE half with VCVTPH2PS, bfloat16 by widening and shifting.
func loadHalf(m Mem, t VecVirtual, f16, scalar bool) {
	if scalar {
		g := GP32()
		MOVWLZX(m, g)
		if !f16 {
			SHLL(U8(16), g)
		}
		VMOVD(g, t.AsX())
		if f16 {
			VCVTPH2PS(t.AsX(), t.AsX())
		}
		return
	}
	if f16 {
		VCVTPH2PS(m, t)
		return
	}
	VPMOVZXWD(m, t)
	VPSLLD(U8(16), t, t)
}

func convHalf(name string, f16 bool) {
	kind := "bfloat16"
	if f16 {
		kind = "IEEE half"
	}
	text(name, NOSPLIT, "func(dst []float32, src []uint16)")
	Doc(fmt.Sprintf("%s converts len(dst) %s values from src to float32.", name, kind))
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("dst").Len(), GP64())
	ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	floatLoop(n.(GPVirtual), []GPVirtual{d.(GPVirtual), s.(GPVirtual)}, []int{4, 2}, func(off int, scalar bool) {
		t := ts[off/32]
		loadHalf(Mem{Base: s, Disp: off / 2}, t, f16, scalar)
		if scalar {
			VMOVSS(t.AsX(), Mem{Base: d})
			return
		}
		VMOVUPS(t, Mem{Base: d, Disp: off})
	})
	VZEROUPPER()
	RET()
}

// toHalf emits f32ToF16AVX2: float32 to IEEE half, rounding to nearest
// even (VCVTPS2PH with immediate 0), as tensor.F32ToF16 does.
func toHalf() {
	text("f32ToF16AVX2", NOSPLIT, "func(dst []uint16, src []float32)")
	Doc("f32ToF16AVX2 converts len(src) float32 values to IEEE half, rounding to nearest even.")
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	ts := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	floatLoop(n.(GPVirtual), []GPVirtual{d.(GPVirtual), s.(GPVirtual)}, []int{2, 4}, func(off int, scalar bool) {
		t := ts[off/32]
		if scalar {
			VMOVSS(Mem{Base: s}, t.AsX())
			VCVTPS2PH(U8(0), t.AsX(), t.AsX())
			g := GP32()
			VMOVD(t.AsX(), g)
			MOVW(g.As16(), Mem{Base: d})
			return
		}
		VMOVUPS(Mem{Base: s, Disp: off}, t)
		VCVTPS2PH(U8(0), t, t.AsX())
		VMOVUPS(t.AsX(), Mem{Base: d, Disp: off / 2})
	})
	VZEROUPPER()
	RET()
}

// onesWords returns a register of sixteen int16 ones.
func onesWords() VecVirtual {
	ones := YMM()
	g := GP32()
	MOVL(U32(0x00010001), g)
	VMOVD(g, ones.AsX())
	VPBROADCASTD(ones.AsX(), ones)
	return ones
}

// text starts a function. None of the kernels keeps a pointer it is
// passed, so each is marked noescape: callers may pass stack arrays
// without moving them to the heap.
func text(name string, a attr.Attribute, signature string) {
	TEXT(name, a, signature)
	Pragma("noescape")
}

// cpuidFunc: CPUID of a leaf (sub-leaf 0), for the vendor and family the
// path choices that depend on the microarchitecture read (cpu.go).
func cpuidFunc() {
	TEXT("cpuidAsm", NOSPLIT, "func(leaf uint32) (eax, ebx, ecx, edx uint32)")
	Pragma("noescape")
	Doc("cpuidAsm returns the registers CPUID sets for leaf (sub-leaf 0).")
	Load(Param("leaf"), EAX)
	XORL(ECX, ECX)
	CPUID()
	Store(EAX, Return("eax"))
	Store(EBX, Return("ebx"))
	Store(ECX, Return("ecx"))
	Store(EDX, Return("edx"))
	RET()
}
