package kernels

import (
	"encoding/binary"
	"math"

	"github.com/herd-llm/herd/tensor"
)

func convF16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = tensor.F16ToF32(h)
	}
}

func convBF16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = tensor.BF16ToF32(h)
	}
}

func dotF16Generic(w []uint16, x []float32) float32 {
	var s0, s1, s2, s3 float32
	w = w[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += tensor.F16ToF32(w[i]) * x[i]
		s1 += tensor.F16ToF32(w[i+1]) * x[i+1]
		s2 += tensor.F16ToF32(w[i+2]) * x[i+2]
		s3 += tensor.F16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += tensor.F16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// The generic mat-vec row loops: y[r] = W[r]·x for r < len(y), W's rows of
// cols elements (of Q8_0/Q4_0 blocks covering len(xq)/34 blocks) from w.

func matVecF32RowsGeneric(y, w, x []float32, cols int) {
	for r := range y {
		y[r] = dotGeneric(w[r*cols:(r+1)*cols], x[:cols])
	}
}

func matVecF16RowsGeneric(y []float32, w []uint16, x []float32, cols int) {
	for r := range y {
		y[r] = dotF16Generic(w[r*cols:(r+1)*cols], x[:cols])
	}
}

func matVecBF16RowsGeneric(y []float32, w []uint16, x []float32, cols int) {
	for r := range y {
		y[r] = dotBF16Generic(w[r*cols:(r+1)*cols], x[:cols])
	}
}

func matVecQ8RowsGeneric(y []float32, w, xq []byte) {
	wrow := len(xq) / q8Bytes * q8Bytes
	for r := range y {
		y[r] = dotQ8_0Generic(w[r*wrow:(r+1)*wrow], xq)
	}
}

func matVecQ4RowsGeneric(y []float32, w, xq []byte, aux []int32) {
	wrow := len(xq) / q8Bytes * q4Bytes
	for r := range y {
		y[r] = dotQ4_0Generic(w[r*wrow:(r+1)*wrow], xq, aux)
	}
}

func dotBF16Generic(w []uint16, x []float32) float32 {
	var s0, s1, s2, s3 float32
	w = w[:len(x)]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += tensor.BF16ToF32(w[i]) * x[i]
		s1 += tensor.BF16ToF32(w[i+1]) * x[i+1]
		s2 += tensor.BF16ToF32(w[i+2]) * x[i+2]
		s3 += tensor.BF16ToF32(w[i+3]) * x[i+3]
	}
	for ; i < len(x); i++ {
		s0 += tensor.BF16ToF32(w[i]) * x[i]
	}
	return (s0 + s1) + (s2 + s3)
}

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
		d := tensor.F16ToF32(binary.LittleEndian.Uint16(wb)) * tensor.F16ToF32(binary.LittleEndian.Uint16(xb))
		sum += float32(s) * d
	}
	return sum
}

// q4AuxInts is the length, in int32s, of the aux record the Q4_0 kernels
// use for each Q8_0 activation block: 8·Σq in the first of eight lanes (the
// other seven zero), then the float32 bits of the block's scale.
const q4AuxInts = 9

// q4Prep fills aux (len(xq)/34 records) from the Q8_0 activation blocks xq.
func q4Prep(aux []int32, xq []byte) {
	for b := range len(xq) / q8Bytes {
		blk := xq[b*q8Bytes : (b+1)*q8Bytes]
		var s int32
		for _, q := range blk[2:] {
			s += int32(int8(q))
		}
		a := aux[b*q4AuxInts : (b+1)*q4AuxInts]
		a[0] = 8 * s
		clear(a[1:8])
		a[8] = int32(math.Float32bits(tensor.F16ToF32(binary.LittleEndian.Uint16(blk))))
	}
}

// dotQ4_0Generic is the dot product of a row of Q4_0 weight blocks with a row
// of Q8_0 activation blocks covering the same elements, with their aux
// records: Σ(q-8)·x = Σq·x - 8·Σx per block.
func dotQ4_0Generic(w, x []byte, aux []int32) float32 {
	nb := len(x) / q8Bytes
	w = w[:nb*q4Bytes]
	aux = aux[:nb*q4AuxInts]
	var sum float32
	for b := range nb {
		wb := w[b*q4Bytes : (b+1)*q4Bytes]
		xb := x[b*q8Bytes : (b+1)*q8Bytes]
		var s int32
		for j := range qk / 2 {
			q := wb[2+j]
			s += int32(q&15)*int32(int8(xb[2+j])) + int32(q>>4)*int32(int8(xb[2+j+qk/2]))
		}
		s -= aux[b*q4AuxInts]
		d := tensor.F16ToF32(binary.LittleEndian.Uint16(wb)) * math.Float32frombits(uint32(aux[b*q4AuxInts+8]))
		sum += float32(s) * d
	}
	return sum
}

// quantQ8_0Generic quantizes x to Q8_0 blocks like ggml's SIMD paths: the
// scale is amax/127 and values round to nearest even.
func quantQ8_0Generic(dst []byte, x []float32) {
	for b := range len(x) / qk {
		xb := x[b*qk : (b+1)*qk]
		o := dst[b*q8Bytes : (b+1)*q8Bytes]
		var amax float32
		for _, v := range xb {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(o, tensor.F32ToF16(d))
		for i, v := range xb {
			o[2+i] = byte(int8(math.RoundToEven(float64(v * id))))
		}
	}
}
