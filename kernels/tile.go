package kernels

import (
	"encoding/binary"
	"math"
)

// Activation tiles: prompt processing multiplies Q8_0 and Q4_0 weights by
// eight activation rows at once. The eight rows' quantized activations are
// rearranged into a tile so that one 32-byte load gives the same four
// quants of all eight rows, and each weight block's four quants are
// broadcast against them: the eight lanes of a vector are eight (weight
// row, activation row) pairs, and the block scales multiply eight pairs in
// one instruction instead of one pair's partial sums (the layout llama.cpp
// gets by repacking the weights at load; here the activations, quantized
// afresh for every product anyway, take the new layout and the weights stay
// as the file stores them).
//
// A tile of nb blocks holds, per block (tileBlock bytes):
//
//	[0, 256)    32 bytes per quant group l < 8: quants 4l..4l+3 of row t at 4t
//	[256, 288)  the eight rows' block scales, float32
//	[288, 320)  the eight rows' k·Σq (Q4_0's offset term), int32; zero for Q8_0
//
// The assembly tile kernels (internal/asmgen/q4rows.go) sum each pair block
// by block, acc = fma(float32(s), dw·dx, acc), as the one-row kernels of
// the same path do, so a row of Y is the same bit for bit whether it went
// through a tile or not.
const (
	tileRows  = 8
	tileBlock = 320
)

// tileKernel computes y[t·ystride+r] = W[r]·X[t] for r < rows, t < 8·ng,
// from rows weight rows at w (nb blocks each) and ng tiles of nb blocks at
// xt, one after the other.
type tileKernel func(y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int)

// packTile writes the tile of the eight activation rows of a (rows t0 …
// t0+7, nb blocks of Q8_0 each, with their aux records for actAux) into dst.
func packTile(dst []byte, a actBuf, t0, nb int, act int) {
	dst = dst[:nb*tileBlock]
	for t := range tileRows {
		xr := a.xq[(t0+t)*a.xrow:]
		var ar []byte
		if act == actAux {
			ar = a.aux[(t0+t)*a.arow:]
		}
		for b := range nb {
			blk := xr[b*q8Bytes : (b+1)*q8Bytes]
			d := dst[b*tileBlock : (b+1)*tileBlock]
			for l := range 8 {
				copy(d[32*l+4*t:32*l+4*t+4], blk[2+4*l:6+4*l])
			}
			binary.LittleEndian.PutUint32(d[256+4*t:], math.Float32bits(f16At(blk)))
			var corr uint32
			if ar != nil {
				corr = binary.LittleEndian.Uint32(ar[b*auxBytes:])
			}
			binary.LittleEndian.PutUint32(d[288+4*t:], corr)
		}
	}
}

// tileGeneric is the pure-Go twin of the tile kernels: each pair's dot
// product read from the tile, summed as the pure-Go block kernels sum it
// (an exact integer sum per block, then float32(s)·(dw·dx) block after
// block). level(wb, i) is weight quant i of block wb as an int32; a Q4_0
// level is the unsigned nibble, its offset coming out through the tile's
// k·Σq.
func tileGeneric(wbytes int, level func(wb []byte, i int) int32) tileKernel {
	return func(y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int) {
		for g := range ng {
			tileGeneric1(y[g*tileRows*ystride:], ystride, w, rows, xt[g*nb*tileBlock:], nb, wbytes, level)
		}
	}
}

func tileGeneric1(y []float32, ystride int, w []byte, rows int, xt []byte, nb, wbytes int, level func(wb []byte, i int) int32) {
	{
		wrow := nb * wbytes
		for r := range rows {
			wr := w[r*wrow : (r+1)*wrow]
			for t := range tileRows {
				var sum float32
				for b := range nb {
					wb := wr[b*wbytes : (b+1)*wbytes]
					d := xt[b*tileBlock : (b+1)*tileBlock]
					var s int32
					for i := range qk {
						s += level(wb, i) * int32(int8(d[32*(i/4)+4*t+i%4]))
					}
					s -= int32(binary.LittleEndian.Uint32(d[288+4*t:]))
					sum += float32(s) * (f16At(wb) * f32At(d[256+4*t:]))
				}
				y[t*ystride+r] = sum
			}
		}
	}
}

func q8Level(wb []byte, i int) int32 { return int32(int8(wb[2+i])) }

// checkTile panics unless the slices passed to a tile kernel are long
// enough; the assembly kernels read and write through raw pointers.
func checkTile(f *qformat, y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int) {
	if rows < 0 || ng < 1 || len(y) < (ng*tileRows-1)*ystride+rows || len(w) < rows*nb*f.wbytes || len(xt) < ng*nb*tileBlock {
		panic("kernels: tile kernel called with short slices")
	}
}
