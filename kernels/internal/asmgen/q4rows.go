package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Q4_0 kernels that sum each (weight row, activation row) pair block by
// block: the block's exact integer sum s (Σ level·q less 8·Σq), then
// acc = fma(float32(s), dw·dx, acc), block after block from acc = 0, and
// acc is the product. Three kernels compute it with the same float32
// operations, so a pair comes out bit for bit the same through any of them
// (batch invariance):
//
//   - q4_0Rows8AVX2 (decoding, one activation row): eight weight rows at a
//     time, their eight block sums reduced into the lanes of one vector, so
//     the scale and accumulation take one instruction for eight rows;
//   - q4_0Row1AVX2: one weight row at a time (the rows left over);
//   - q4_0TileG1AVX2, q4_0TileG2AVX2 (prompts): one weight row against one
//     or two activation tiles of eight rows (see kernels/tile.go), the
//     eight lanes being eight activation rows; a block's eight groups of
//     four quants are summed in int16 (at most 8·2·15·127 = 30480) before
//     one VPMADDWD, so a block costs nine multiplies for eight pairs.

const sigQ4Rows = "func(y *float32, w *byte, ld int, n int, x *byte, aux *byte, nb int)"

// bfmt is a weight format of the block-by-block kernels: Q4_0 (unsigned
// nibbles against signed activations, the offset 8·Σq taken out through
// the aux records) or Q8_0 (signed quants: |w| against x with w's sign;
// no aux, dx read from the activation block).
type bfmt struct {
	name   string
	wbytes int
	q8     bool
}

func q4Kernels() {
	for _, f := range []bfmt{{"q4_0", 18, false}, {"q8_0", 34, true}} {
		q4Rows8(f)
		q4Row1(f)
		q4Tile(f, 1, false)
		q4Tile(f, 2, false)
		q4Rows8Packed(f)
		q4Tile(f, 1, true)
		q4Tile(f, 2, true)
	}
}

// q4Rows8Packed is q4Rows8 over the eight-row layout (tensor.Q4_0x8,
// Q8_0x8): a group's block holds the eight rows' scales in 16 bytes and
// then their quants in pieces of four bytes, piece p of the eight rows in
// one 32-byte vector, so each int32 lane stays one row's from the first
// multiply to the block sum: no horizontal sums, one scale load, one stream
// of weights for eight rows. The block sums are the same integers as
// q4Rows8's, scaled and accumulated by the same instructions, so the two
// agree bit for bit.
// prefetchAhead is how many bytes ahead of the block it reads the packed
// decoding kernel asks for the weights (0: none).
var prefetchAhead = 1024

func q4Rows8Packed(f bfmt) {
	name := f.name + "x8Rows8AVX2"
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name+" computes y[r] for r < 8n as "+f.name+"Rows8AVX2 does, the weights in",
		"the eight-row layout (group g's blocks at w + 8g·ld, 8·"+fmt.Sprint(f.wbytes)+" bytes each).")
	y := Load(Param("y"), GP64())
	wg := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	groups := Load(Param("n"), GP64())
	SHLQ(U8(3), ld)
	ones := onesWords()
	var low VecVirtual
	if !f.q8 {
		low = nibbleMask()
	}
	wb, xp, ap, n := GP64(), GP64(), GP64(), GP64()
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	MOVQ(wg, wb)
	Load(Param("x"), xp)
	if !f.q8 {
		Load(Param("aux"), ap)
	}
	Load(Param("nb"), n)
	acc := YMM()
	VXORPS(acc, acc, acc)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	dv := YMM()
	if pf := prefetchAhead; pf > 0 {
		for o := 0; o < 8*f.wbytes; o += 64 {
			PREFETCHT0(Mem{Base: wb, Disp: pf + o})
		}
	}
	VCVTPH2PS(Mem{Base: wb}, dv)
	var sum VecVirtual
	if f.q8 {
		for l := 0; l < 8; l++ {
			c, a, xb := YMM(), YMM(), YMM()
			VMOVDQU(Mem{Base: wb, Disp: 16 + 32*l}, c)
			VPABSB(c, a)
			VPBROADCASTD(Mem{Base: xp, Disp: 2 + 4*l}, xb)
			VPSIGNB(c, xb, xb)
			VPMADDUBSW(xb, a, a)
			VPMADDWD(ones, a, a)
			if l == 0 {
				sum = a
			} else {
				VPADDD(a, sum, sum)
			}
		}
	} else {
		// int16 sums of the block's eight products of four pairs reach at
		// most 8·2·15·128 = 30720 in magnitude
		for m := 0; m < 4; m++ {
			c, hi := YMM(), YMM()
			VMOVDQU(Mem{Base: wb, Disp: 16 + 32*m}, c)
			VPSRLW(U8(4), c, hi)
			VPAND(low, c, c)
			VPAND(low, hi, hi)
			xl, xh := YMM(), YMM()
			VPBROADCASTD(Mem{Base: xp, Disp: 2 + 4*m}, xl)
			VPBROADCASTD(Mem{Base: xp, Disp: 2 + 16 + 4*m}, xh)
			VPMADDUBSW(xl, c, c)
			VPMADDUBSW(xh, hi, hi)
			if m == 0 {
				sum = c
			} else {
				VPADDW(c, sum, sum)
			}
			VPADDW(hi, sum, sum)
		}
		VPMADDWD(ones, sum, sum)
		k := YMM()
		VPBROADCASTD(Mem{Base: ap}, k)
		VPSUBD(k, sum, sum)
	}
	dx := YMM()
	if f.q8 {
		VPBROADCASTW(Mem{Base: xp}, dx.AsX())
		VCVTPH2PS(dx.AsX(), dx)
	} else {
		VBROADCASTSS(Mem{Base: ap, Disp: 32}, dx)
	}
	VMULPS(dx, dv, dv)
	VCVTDQ2PS(sum, sum)
	VFMADD231PS(sum, dv, acc)
	ADDQ(U32(8*f.wbytes), wb)
	ADDQ(U8(34), xp)
	if !f.q8 {
		ADDQ(U8(36), ap)
	}
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

// bProduct returns the eight int32 partial sums of the weight block at w
// (quants from w+2) times the activation quants xq (a register holding
// them for Q8_0, their address for Q4_0).
func bProduct(f bfmt, w Mem, xq Op, ones, low VecVirtual) VecVirtual {
	if f.q8 {
		v, a := YMM(), YMM()
		VMOVDQU(off(w, 2), v)
		VPABSB(v, a)
		VPSIGNB(v, xq, v)
		VPMADDUBSW(v, a, a)
		VPMADDWD(ones, a, a)
		return a
	}
	q := q4Unpack(off(w, 2), low)
	VPMADDUBSW(xq, q, q)
	VPMADDWD(ones, q, q)
	return q
}

// q4Unpack loads the sixteen quant bytes at m and returns the 32 levels,
// in element order (the low nibbles, then the high ones).
func q4Unpack(m Mem, low VecVirtual) VecVirtual {
	return unpackQ4(m, low)
}

func q4Rows8(f bfmt) {
	name := f.name + "Rows8AVX2"
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name+" computes y[r] for r < 8n: the dot product of weight row r",
		fmt.Sprintf("(nb %s blocks at w + r·ld bytes) with the activation row (nb Q8_0 blocks at x,", f.name),
		"aux records at aux), summed block by block.")
	y := Load(Param("y"), GP64())
	wg := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	groups := Load(Param("n"), GP64())
	ld3 := GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, ld3)
	ones := onesWords()
	var low VecVirtual
	if !f.q8 {
		low = nibbleMask()
	}
	wb, w4, xp, ap, n := GP64(), GP64(), GP64(), GP64(), GP64()
	Label("group")
	TESTQ(groups, groups)
	JE(LabelRef("end"))
	MOVQ(wg, wb)
	LEAQ(Mem{Base: wg, Index: ld, Scale: 4}, w4)
	Load(Param("x"), xp)
	if !f.q8 {
		Load(Param("aux"), ap)
	}
	Load(Param("nb"), n)
	acc := YMM()
	VXORPS(acc, acc, acc)
	rowMem := func(r, disp int) Mem {
		base := wb
		if r >= 4 {
			base, r = w4, r-4
		}
		switch r {
		case 0:
			return Mem{Base: base, Disp: disp}
		case 1:
			return Mem{Base: base, Index: ld, Scale: 1, Disp: disp}
		case 2:
			return Mem{Base: base, Index: ld, Scale: 2, Disp: disp}
		}
		return Mem{Base: base, Index: ld3, Scale: 1, Disp: disp}
	}
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	var xq Op = Mem{Base: xp, Disp: 2}
	if f.q8 {
		xr := YMM()
		VMOVDQU(xq, xr)
		xq = xr
	}
	p := make([]VecVirtual, 8)
	for r := range p {
		p[r] = bProduct(f, rowMem(r, 0), xq, ones, low)
	}
	// the eight rows' sums into the lanes of one vector
	a := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
	for i := range a {
		VPHADDD(p[2*i+1], p[2*i], a[i])
	}
	e, h := YMM(), YMM()
	VPHADDD(a[1], a[0], e)
	VPHADDD(a[3], a[2], h)
	lo, hi := YMM(), YMM()
	VPERM2I128(U8(0x20), h, e, lo)
	VPERM2I128(U8(0x31), h, e, hi)
	VPADDD(hi, lo, lo)
	if !f.q8 {
		c := YMM()
		VPBROADCASTD(Mem{Base: ap}, c)
		VPSUBD(c, lo, lo)
	}
	// the eight rows' dw, times dx
	d := XMM()
	for r := 0; r < 8; r++ {
		VPINSRW(U8(r), rowMem(r, 0), d, d)
	}
	dv := YMM()
	VCVTPH2PS(d, dv)
	dx := YMM()
	if f.q8 {
		VPBROADCASTW(Mem{Base: xp}, dx.AsX())
		VCVTPH2PS(dx.AsX(), dx)
	} else {
		VBROADCASTSS(Mem{Base: ap, Disp: 32}, dx)
	}
	VMULPS(dx, dv, dv)
	VCVTDQ2PS(lo, lo)
	VFMADD231PS(lo, dv, acc)
	ADDQ(U8(f.wbytes), wb)
	ADDQ(U8(f.wbytes), w4)
	ADDQ(U8(34), xp)
	if !f.q8 {
		ADDQ(U8(36), ap)
	}
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	VMOVUPS(acc, Mem{Base: y})
	ADDQ(U8(32), y)
	LEAQ(Mem{Base: wg, Index: ld, Scale: 8}, wg)
	DECQ(groups)
	JMP(LabelRef("group"))
	Label("end")
	VZEROUPPER()
	RET()
}

func q4Row1(f bfmt) {
	name := f.name + "Row1AVX2"
	text(name, NOSPLIT, sigQ4Rows)
	Doc(name + " computes y[r] for r < n as " + f.name + "Rows8AVX2 does, one row at a time.")
	y := Load(Param("y"), GP64())
	wr := Load(Param("w"), GP64())
	ld := Load(Param("ld"), GP64())
	rows := Load(Param("n"), GP64())
	ones := onesWords()
	var low VecVirtual
	if !f.q8 {
		low = nibbleMask()
	}
	wb, xp, ap, n := GP64(), GP64(), GP64(), GP64()
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	MOVQ(wr, wb)
	Load(Param("x"), xp)
	if !f.q8 {
		Load(Param("aux"), ap)
	}
	Load(Param("nb"), n)
	acc := XMM()
	VXORPS(acc, acc, acc)
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	var xq Op = Mem{Base: xp, Disp: 2}
	if f.q8 {
		xr := YMM()
		VMOVDQU(xq, xr)
		xq = xr
	}
	q := bProduct(f, Mem{Base: wb}, xq, ones, low)
	if !f.q8 {
		VPSUBD(Mem{Base: ap}, q, q) // k·Σq in lane 0, zero in the others
	}
	h := XMM()
	VEXTRACTI128(U8(1), q, h)
	VPADDD(h, q.AsX(), h)
	t := XMM()
	VPSHUFD(U8(0x4e), h, t)
	VPADDD(t, h, h)
	VPSHUFD(U8(0xb1), h, t)
	VPADDD(t, h, h)
	VCVTDQ2PS(h, h)
	d := XMM()
	VPBROADCASTW(Mem{Base: wb}, d)
	VCVTPH2PS(d, d)
	if f.q8 {
		dx := XMM()
		VPBROADCASTW(Mem{Base: xp}, dx)
		VCVTPH2PS(dx, dx)
		VMULSS(dx, d, d)
	} else {
		VMULSS(Mem{Base: ap, Disp: 32}, d, d)
	}
	VFMADD231SS(h, d, acc)
	ADDQ(U8(f.wbytes), wb)
	ADDQ(U8(34), xp)
	if !f.q8 {
		ADDQ(U8(36), ap)
	}
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	VMOVSS(acc, Mem{Base: y})
	ADDQ(U8(4), y)
	ADDQ(ld, wr)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}

// q4Tile: weight rows against g (1 or 2) activation tiles, the second
// nb·320 bytes after the first; y of tile g's row t and weight row r at
// y[(8g+t)·ystride + r].
//
// packed: the weights in the eight-row layout (tensor.Q4_0x8, Q8_0x8),
// rows a multiple of eight; row j of a group reads its scale at 2j and its
// pieces of four quant bytes at 16 + 32p + 4j of each 8·wbytes-byte block.
func q4Tile(f bfmt, g int, packed bool) {
	kind := f.name
	if packed {
		kind += "x8"
	}
	name := fmt.Sprintf("%sTileG%dAVX2", kind, g)
	text(name, NOSPLIT, sigTile)
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < %d: the dot product", name, 8*g),
		fmt.Sprintf("of weight row r (nb %s blocks at w) with activation row t of the tiles at xt", kind),
		fmt.Sprintf("(nb blocks of 320 bytes each), summed block by block as %sRows8AVX2 sums.", f.name))
	y := Load(Param("y"), GP64())
	ys := Load(Param("ystride"), GP64())
	SHLQ(U8(2), ys)
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	// ws and wq point at the row's scale and first quant piece in the
	// current block; step is the bytes from one block to the next
	ws, wq := w, w
	qdisp, step, pstride := 2, f.wbytes, 4
	var gb, jr, grp Register
	if packed {
		ws, wq = GP64(), GP64()
		qdisp, step, pstride = 0, 8*f.wbytes, 32
		gb, jr, grp = w, GP64(), GP64()
		XORQ(jr, jr)
		Load(Param("nb"), grp)
		IMUL3Q(U32(8*f.wbytes), grp, grp)
	}
	ones := onesWords()
	var low VecVirtual
	if !f.q8 {
		low = nibbleMask()
	}
	xp, n, gofs := GP64(), GP64(), GP64()
	Load(Param("nb"), gofs)
	IMUL3Q(U32(tileBlock), gofs, gofs)
	tm := func(grp, disp int) Mem {
		if grp == 0 {
			return Mem{Base: xp, Disp: disp}
		}
		return Mem{Base: xp, Index: gofs, Scale: 1, Disp: disp}
	}
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	if packed {
		LEAQ(Mem{Base: gb, Index: jr, Scale: 2}, ws)
		LEAQ(Mem{Base: gb, Index: jr, Scale: 4, Disp: 16}, wq)
	}
	Load(Param("xt"), xp)
	Load(Param("nb"), n)
	acc := make([]VecVirtual, g)
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	dw := YMM()
	VPBROADCASTW(Mem{Base: ws}, dw.AsX())
	VCVTPH2PS(dw.AsX(), dw)
	sum := make([]VecVirtual, g)
	add := func(k, i int, v VecVirtual) {
		if i == 0 {
			sum[k] = v
		} else if f.q8 {
			VPADDD(v, sum[k], sum[k])
		} else {
			VPADDW(v, sum[k], sum[k])
		}
	}
	for i, l := range []int{0, 4, 1, 5, 2, 6, 3, 7} {
		if f.q8 {
			// |w| against x with w's sign, as the one-row kernels; the
			// int16 pairs reach 2·127·127, so each goes to int32 at once
			b, a := YMM(), YMM()
			VPBROADCASTD(Mem{Base: wq, Disp: qdisp + pstride*l}, b)
			VPABSB(b, a)
			for k := range sum {
				v := YMM()
				VMOVDQU(tm(k, 32*l), v)
				VPSIGNB(b, v, v)
				VPMADDUBSW(v, a, v)
				VPMADDWD(ones, v, v)
				add(k, i, v)
			}
			continue
		}
		b := YMM()
		VPBROADCASTD(Mem{Base: wq, Disp: qdisp + pstride*(l%4)}, b)
		if l >= 4 {
			VPSRLW(U8(4), b, b)
		}
		VPAND(low, b, b)
		for k := range sum {
			v := YMM()
			VPMADDUBSW(tm(k, 32*l), b, v)
			add(k, i, v)
		}
	}
	for k := range sum {
		s := YMM()
		VMULPS(tm(k, 256), dw, s)
		if !f.q8 {
			VPMADDWD(ones, sum[k], sum[k])
			VPSUBD(tm(k, 288), sum[k], sum[k])
		}
		VCVTDQ2PS(sum[k], sum[k])
		VFMADD231PS(sum[k], s, acc[k])
	}
	if packed {
		ADDQ(U32(step), ws)
		ADDQ(U32(step), wq)
	} else {
		ADDQ(U8(f.wbytes), w)
	}
	ADDQ(U32(tileBlock), xp)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	yp := GP64()
	MOVQ(y, yp)
	for k := range acc {
		hi := XMM()
		VEXTRACTF128(U8(1), acc[k], hi)
		for t := 0; t < 8; t++ {
			src := acc[k].AsX()
			if t >= 4 {
				src = hi
			}
			if t%4 == 0 {
				VMOVSS(src, Mem{Base: yp})
			} else {
				VEXTRACTPS(U8(t%4), src, Mem{Base: yp})
			}
			if k < g-1 || t < 7 {
				ADDQ(ys, yp)
			}
		}
	}
	ADDQ(U8(4), y)
	if packed {
		INCQ(jr)
		CMPQ(jr, U8(8))
		JNE(LabelRef("same"))
		XORQ(jr, jr)
		ADDQ(grp, gb)
		Label("same")
	}
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}
