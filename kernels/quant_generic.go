package kernels

import (
	"encoding/binary"
	"math"

	"github.com/herd-llm/herd/tensor"
)

// The pure-Go quantized kernels: one dot product per (weight row,
// activation row) pair, each an exact integer sum per block (or per
// sub-block, times its integer scale) scaled by the block scales in float32.

// quantQ8_KImpl quantizes activations to Q8_K; the assembly version, where
// there is one, writes the same bytes.
var quantQ8_KImpl = tensor.QuantizeRowQ8_K

// setupGenericQuant fills the pure-Go kernel (gen) of every quantized
// format; cpu.go's init calls it before it installs a path.
func setupGenericQuant() {
	type dotFn func(w, x, aux []byte) float32
	set := func(dt tensor.DType, dot dotFn) {
		f := formats[dt]
		xb, ab := f.xbytes(1)
		wbytes := f.wbytes
		f.gen = func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
			wrow := nb * wbytes
			for t := range nt {
				xr := x[t*xstride : t*xstride+nb*xb]
				var ar []byte
				if ab > 0 {
					ar = aux[t*auxstride : t*auxstride+nb*ab]
				}
				yr := y[t*ystride : t*ystride+rows]
				for r := range yr {
					yr[r] = dot(w[r*wrow:(r+1)*wrow], xr, ar)
				}
			}
		}
		f.kern = f.gen
	}
	set(tensor.Q8_0, func(w, x, _ []byte) float32 { return dotQ8_0Generic(w, x) })
	set(tensor.Q4_0, dotQ4_0Generic)
	set(tensor.Q5_0, dotQ5_0Generic)
	set(tensor.Q4_1, dotQ4_1Generic)
	set(tensor.Q5_1, dotQ5_1Generic)
	set(tensor.IQ4_NL, func(w, x, _ []byte) float32 { return dotIQ4NLGeneric(w, x) })
	set(tensor.Q2_K, func(w, x, _ []byte) float32 { return dotQ2_KGeneric(w, x) })
	set(tensor.Q3_K, func(w, x, _ []byte) float32 { return dotQ3_KGeneric(w, x) })
	set(tensor.Q4_K, func(w, x, _ []byte) float32 { return dotQ4_KGeneric(w, x) })
	set(tensor.Q5_K, func(w, x, _ []byte) float32 { return dotQ5_KGeneric(w, x) })
	set(tensor.Q6_K, func(w, x, _ []byte) float32 { return dotQ6_KGeneric(w, x) })
	formats[tensor.Q8_0].tileGen = tileGeneric(q8Bytes, q8Level)
	formats[tensor.Q4_0].tileGen = tileGeneric(q4Bytes, q4Level)
	for _, dt := range []tensor.DType{tensor.Q4_0x8, tensor.Q8_0x8, tensor.Q4_Kx8, tensor.Q6_Kx8} {
		setPackedGeneric(dt)
	}
}

// setPackedGeneric fills the pure-Go kernels of a packed format: each
// group of eight rows unpacked (tensor.UnpackRows8) and multiplied by the
// plain format's pure-Go kernels, the rows after the last group as they are
// (the k-quant layouts have none).
func setPackedGeneric(dt tensor.DType) {
	f := formats[dt]
	p := formats[f.plain]
	cols := func(nb int) int { return nb * f.block }
	groups := func(w []byte, rows, nb int, fn func(r0, n int, wg []byte)) {
		wrow := nb * f.wbytes
		bp := byteScratch.get(tensor.PackGroup * wrow)
		defer byteScratch.put(bp)
		g8 := rows / tensor.PackGroup * tensor.PackGroup
		for r0 := 0; r0 < g8; r0 += tensor.PackGroup {
			src := w[r0*wrow : (r0+tensor.PackGroup)*wrow]
			if err := tensor.UnpackRows8(f.plain, *bp, src, tensor.PackGroup, cols(nb)); err != nil {
				panic(err) // unreachable: the sizes were checked
			}
			fn(r0, tensor.PackGroup, *bp)
		}
		if g8 < rows {
			fn(g8, rows-g8, w[g8*wrow:rows*wrow])
		}
	}
	f.gen = func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
		groups(w, rows, nb, func(r0, n int, wg []byte) {
			p.gen(y[r0:], ystride, wg, n, x, xstride, aux, auxstride, nb, nt)
		})
	}
	f.kern = f.gen
	if p.tileGen == nil {
		return
	}
	f.tileGen = func(y []float32, ystride int, w []byte, rows int, xt []byte, nb, ng int) {
		groups(w, rows, nb, func(r0, n int, wg []byte) {
			p.tileGen(y[r0:], ystride, wg, n, xt, nb, ng)
		})
	}
	f.tile = f.tileGen
}

func f16At(b []byte) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(b)) }
func f32At(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

// dotQ8_0Generic is the dot product of a row of Q8_0 weight blocks with a row
// of Q8_0 activation blocks of the same length.
func dotQ8_0Generic(w, x []byte) float32 {
	nb := len(x) / q8Bytes
	w = w[:nb*q8Bytes]
	var sum float32
	for b := range nb {
		wb := w[b*q8Bytes : (b+1)*q8Bytes]
		xb := x[b*q8Bytes : (b+1)*q8Bytes]
		var s int32
		for i := 2; i < q8Bytes; i++ {
			s += int32(int8(wb[i])) * int32(int8(xb[i]))
		}
		sum += float32(s) * (f16At(wb) * f16At(xb))
	}
	return sum
}

// q4AuxInts is the length, in int32s, of an actAux record: k·Σq in the
// first of eight lanes (the other seven zero, so one vector subtraction
// takes it out of the block's eight partial sums), then the scale.
const q4AuxInts = 9

// dotOffsetGeneric is the dot product of unsigned weight levels q (value
// q - k) with Q8_0 activations and their aux records: Σ(q-k)·x = Σq·x - k·Σx
// per block. level(wb, i) returns the level of element i of weight block wb.
func dotOffsetGeneric(w, x, aux []byte, wbytes int, level func(wb []byte, i int) int32) float32 {
	nb := len(x) / q8Bytes
	var sum float32
	for b := range nb {
		wb := w[b*wbytes : (b+1)*wbytes]
		xb := x[b*q8Bytes+2 : (b+1)*q8Bytes]
		var s int32
		for i, q := range xb {
			s += level(wb, i) * int32(int8(q))
		}
		a := aux[b*auxBytes : (b+1)*auxBytes]
		s -= int32(binary.LittleEndian.Uint32(a))
		sum += float32(s) * (f16At(wb) * f32At(a[32:]))
	}
	return sum
}

func q4Level(wb []byte, i int) int32 {
	if i < qk/2 {
		return int32(wb[2+i] & 15)
	}
	return int32(wb[2+i-qk/2] >> 4)
}

// q5Level is the level of element i of a Q5_0 (off 2) or Q5_1 (off 4)
// block: the nibble, and bit i of qh as its fifth bit.
func q5Level(wb []byte, off, i int) int32 {
	qh := binary.LittleEndian.Uint32(wb[off:])
	var v int32
	if i < qk/2 {
		v = int32(wb[off+4+i] & 15)
	} else {
		v = int32(wb[off+4+i-qk/2] >> 4)
	}
	return v | int32(qh>>i&1)<<4
}

func dotQ4_0Generic(w, x, aux []byte) float32 {
	return dotOffsetGeneric(w, x, aux, q4Bytes, q4Level)
}

func dotQ5_0Generic(w, x, aux []byte) float32 {
	return dotOffsetGeneric(w, x, aux, q5_0Bytes, func(wb []byte, i int) int32 { return q5Level(wb, 2, i) })
}

// dotMinGeneric is the dot product of weights d·q + m (Q4_1, Q5_1) with
// Q8_1 activations: d·dx·Σq·x + m·s per block, the m·s terms summed apart.
func dotMinGeneric(w, x, aux []byte, wbytes int, level func(wb []byte, i int) int32) float32 {
	nb := len(x) / q8Bytes
	var sum, summ float32
	for b := range nb {
		wb := w[b*wbytes : (b+1)*wbytes]
		xb := x[b*q8Bytes : (b+1)*q8Bytes]
		var s int32
		for i, q := range xb[2:] {
			s += level(wb, i) * int32(int8(q))
		}
		sum += float32(s) * (f16At(wb) * f16At(xb))
		summ += f16At(wb[2:]) * f32At(aux[4*b:])
	}
	return sum + summ
}

func dotQ4_1Generic(w, x, aux []byte) float32 {
	return dotMinGeneric(w, x, aux, q4_1Bytes, func(wb []byte, i int) int32 { return q4Level(wb[2:], i) })
}

func dotQ5_1Generic(w, x, aux []byte) float32 {
	return dotMinGeneric(w, x, aux, q5_1Bytes, func(wb []byte, i int) int32 { return q5Level(wb, 4, i) })
}

// iq4nlValues are IQ4_NL's 16 levels (ggml's kvalues_iq4nl).
var iq4nlValues = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

func dotIQ4NLGeneric(w, x []byte) float32 {
	nb := len(x) / q8Bytes
	var sum float32
	for b := range nb {
		wb := w[b*iq4nlBytes : (b+1)*iq4nlBytes]
		xb := x[b*q8Bytes : (b+1)*q8Bytes]
		var s int32
		for j, q := range wb[2:] {
			s += int32(iq4nlValues[q&15])*int32(int8(xb[2+j])) + int32(iq4nlValues[q>>4])*int32(int8(xb[2+j+qk/2]))
		}
		sum += float32(s) * (f16At(wb) * f16At(xb))
	}
	return sum
}

// q8kParts returns the parts of a Q8_K block: scale, quants, sums of 16.
func q8kParts(xb []byte) (d float32, q []byte, bsum func(g int) int32) {
	return f32At(xb), xb[4:260], func(g int) int32 { return int32(int16(binary.LittleEndian.Uint16(xb[260+2*g:]))) }
}

func dotQ2_KGeneric(w, x []byte) float32 {
	var sum float32
	for b := range len(x) / q8kBytes {
		wb := w[b*q2kBytes : (b+1)*q2kBytes]
		dx, q8, bsum := q8kParts(x[b*q8kBytes : (b+1)*q8kBytes])
		var isum, msum int32
		for g := range 16 {
			msum += int32(wb[g]>>4) * bsum(g)
		}
		for n := 0; n < qkk; n += 128 {
			q := wb[16+n/4 : 16+n/4+32]
			for j := range 4 {
				for half := range 2 {
					sc := int32(wb[n/16+2*j+half] & 15)
					var s int32
					for l := range 16 {
						k := 16*half + l
						s += int32(q[k]>>(2*j)&3) * int32(int8(q8[n+32*j+k]))
					}
					isum += sc * s
				}
			}
		}
		sum += dx*f16At(wb[80:])*float32(isum) - dx*f16At(wb[82:])*float32(msum)
	}
	return sum
}

func dotQ3_KGeneric(w, x []byte) float32 {
	var sum float32
	for b := range len(x) / q8kBytes {
		wb := w[b*q3kBytes : (b+1)*q3kBytes]
		dx, q8, _ := q8kParts(x[b*q8kBytes : (b+1)*q8kBytes])
		hm, sc := wb[:32], wb[96:108]
		var isum int32
		for n := 0; n < qkk; n += 128 {
			q := wb[32+n/4 : 32+n/4+32]
			for j := range 4 {
				m := byte(1) << (n/128*4 + j)
				for half := range 2 {
					var s int32
					for l := range 16 {
						k := 16*half + l
						v := int32(q[k] >> (2 * j) & 3)
						if hm[k]&m == 0 {
							v -= 4
						}
						s += v * int32(int8(q8[n+32*j+k]))
					}
					isum += tensor.Q3KScale(sc, n/16+2*j+half) * s
				}
			}
		}
		sum += dx * f16At(wb[108:]) * float32(isum)
	}
	return sum
}

// scaleMinK4 decodes the six-bit scale and minimum of sub-block j (0..7)
// from the 12 packed bytes of a Q4_K/Q5_K block.
func scaleMinK4(j int, q []byte) (d, m int32) {
	if j < 4 {
		return int32(q[j] & 63), int32(q[j+4] & 63)
	}
	return int32(q[j+4]&15 | (q[j-4]>>6)<<4), int32(q[j+4]>>4 | (q[j]>>6)<<4)
}

// dotK4Generic is the Q4_K/Q5_K dot product; level(wb, j, l) returns the
// level of element l (0..63) of 64-element chunk j.
func dotK4Generic(w, x []byte, wbytes int, level func(wb []byte, j, l int) int32) float32 {
	var sum float32
	for b := range len(x) / q8kBytes {
		wb := w[b*wbytes : (b+1)*wbytes]
		dx, q8, bsum := q8kParts(x[b*q8kBytes : (b+1)*q8kBytes])
		var isum, msum int32
		for j := range 8 {
			sc, m := scaleMinK4(j, wb[4:16])
			msum += m * (bsum(2*j) + bsum(2*j+1))
			var s int32
			for l := range 32 {
				s += level(wb, j/2, 32*(j%2)+l) * int32(int8(q8[32*j+l]))
			}
			isum += sc * s
		}
		sum += dx*f16At(wb)*float32(isum) - dx*f16At(wb[2:])*float32(msum)
	}
	return sum
}

func dotQ4_KGeneric(w, x []byte) float32 {
	return dotK4Generic(w, x, q4kBytes, func(wb []byte, j, l int) int32 {
		q := wb[16+32*j+l%32]
		if l < 32 {
			return int32(q & 15)
		}
		return int32(q >> 4)
	})
}

func dotQ5_KGeneric(w, x []byte) float32 {
	return dotK4Generic(w, x, q5kBytes, func(wb []byte, j, l int) int32 {
		q, h := wb[48+32*j+l%32], wb[16+l%32]
		if l < 32 {
			return int32(q&15) | int32(h>>(2*j)&1)<<4
		}
		return int32(q>>4) | int32(h>>(2*j+1)&1)<<4
	})
}

func dotQ6_KGeneric(w, x []byte) float32 {
	var sum float32
	for b := range len(x) / q8kBytes {
		wb := w[b*q6kBytes : (b+1)*q6kBytes]
		dx, q8, _ := q8kParts(x[b*q8kBytes : (b+1)*q8kBytes])
		var isum int32
		for n := 0; n < qkk; n += 128 {
			ql, qh := wb[n/2:n/2+64], wb[128+n/4:128+n/4+32]
			sc := wb[192+n/16 : 192+n/16+8]
			for l := range 32 {
				is := l / 16
				q1 := int32(ql[l]&15|(qh[l]&3)<<4) - 32
				q2 := int32(ql[l+32]&15|(qh[l]>>2&3)<<4) - 32
				q3 := int32(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				isum += int32(int8(sc[is]))*q1*int32(int8(q8[n+l])) +
					int32(int8(sc[is+2]))*q2*int32(int8(q8[n+32+l])) +
					int32(int8(sc[is+4]))*q3*int32(int8(q8[n+64+l])) +
					int32(int8(sc[is+6]))*q4*int32(int8(q8[n+96+l]))
			}
		}
		sum += dx * f16At(wb[208:]) * float32(isum)
	}
	return sum
}
