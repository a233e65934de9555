package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Tile kernels: Q8_0 and Q4_0 weight rows against eight activation rows at
// once, for prompt processing. The activations come in a tile (see
// kernels/tile.go): per block, eight 32-byte vectors, vector l holding
// quants 4l..4l+3 of each of the eight rows (four bytes a row), then the
// eight rows' scales as float32 and, for Q4_0, their 8·Σq as int32. The
// weight block's four quants of a vector are broadcast to all eight rows.
//
// The lanes of the tile kernel are the activation rows, and accumulator l
// holds what lane l holds in the one-row kernels (kern32): the partial sums
// of quants 4l..4l+3 of every block, converted and scaled by the same
// float32 operations, then reduced in the same order as hsum reduces the
// eight lanes. So every product comes out bit for bit as the one-row
// kernels compute it: the batch stays invariant.

const (
	tileRows  = 8
	tileBlock = 320 // bytes of one block of a tile: 256 quants, 32 scales, 32 offsets
)

const sigTile = "func(y *float32, ystride int, w *byte, rows int, xt *byte, nb int)"

func tileKernels() {
	tileKernel("q8_0", 34, true)
	q4Kernels()
}

func tileKernel(name string, wbytes int, signed bool) {
	fn := fmt.Sprintf("%sx8TileAVX2", name)
	text(fn, NOSPLIT, sigTile)
	Doc(fmt.Sprintf("%s computes y[t·ystride+r] for r < rows, t < 8: the dot product", fn),
		fmt.Sprintf("of weight row r (nb %s blocks at w) with activation row t of the tile at xt", name),
		"(nb blocks of 320 bytes).")
	y := Load(Param("y"), GP64())
	ys := Load(Param("ystride"), GP64())
	SHLQ(U8(2), ys)
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	ones := onesWords()
	var low VecVirtual
	if !signed {
		low = nibbleMask()
	}
	xp, n := GP64(), GP64()
	Label("row")
	TESTQ(rows, rows)
	JE(LabelRef("end"))
	Load(Param("xt"), xp)
	Load(Param("nb"), n)
	acc := make([]VecVirtual, 8)
	for l := range acc {
		acc[l] = YMM()
		VXORPS(acc[l], acc[l], acc[l])
	}
	Label("blk")
	TESTQ(n, n)
	JE(LabelRef("fin"))
	// s = dw·dx for the eight rows: the one-row kernels' VMULPS
	s := YMM()
	VPBROADCASTW(Mem{Base: w}, s.AsX())
	VCVTPH2PS(s.AsX(), s)
	VMULPS(Mem{Base: xp, Disp: 256}, s, s)
	// the quant groups in the order 0, 4, 1, 5, …: Q4_0's groups l and l+4
	// are the low and high nibbles of the same four bytes (each group has
	// its own accumulator, so the order does not change a bit)
	for _, l := range []int{0, 4, 1, 5, 2, 6, 3, 7} {
		xm := Mem{Base: xp, Disp: 32 * l}
		v := YMM()
		if signed {
			// |x| times w with x's sign: the same products as the
			// one-row kernels' |w| times x with w's sign, exactly
			b, a := YMM(), YMM()
			VPBROADCASTD(Mem{Base: w, Disp: 2 + 4*l}, b)
			VPSIGNB(xm, b, v)
			VPABSB(xm, a)
			VPMADDUBSW(v, a, v)
		} else {
			// quants 4l..4l+3: low nibbles of bytes 4l.. (l < 4), else
			// the high nibbles of bytes 4(l-4)..
			b := YMM()
			VPBROADCASTD(Mem{Base: w, Disp: 2 + 4*(l%4)}, b)
			if l >= 4 {
				VPSRLW(U8(4), b, b)
			}
			VPAND(low, b, b)
			VPMADDUBSW(xm, b, v)
		}
		VPMADDWD(v, ones, v)
		if !signed && l == 0 {
			VPSUBD(Mem{Base: xp, Disp: 288}, v, v)
		}
		VCVTDQ2PS(v, v)
		VFMADD231PS(v, s, acc[l])
	}
	ADDQ(U8(wbytes), w)
	ADDQ(U32(tileBlock), xp)
	DECQ(n)
	JMP(LabelRef("blk"))
	Label("fin")
	// hsum's order: ((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7))
	for l := 0; l < 4; l++ {
		VADDPS(acc[l+4], acc[l], acc[l])
	}
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	yp := GP64()
	MOVQ(y, yp)
	hi := XMM()
	VEXTRACTF128(U8(1), acc[0], hi)
	for t := 0; t < 8; t++ {
		src := acc[0].AsX()
		if t >= 4 {
			src = hi
		}
		if t%4 == 0 {
			VMOVSS(src, Mem{Base: yp})
		} else {
			VEXTRACTPS(U8(t%4), src, Mem{Base: yp})
		}
		if t < 7 {
			ADDQ(ys, yp)
		}
	}
	ADDQ(U8(4), y)
	DECQ(rows)
	JMP(LabelRef("row"))
	Label("end")
	VZEROUPPER()
	RET()
}
