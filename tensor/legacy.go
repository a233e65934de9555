package tensor

import (
	"encoding/binary"
	"math"
)

// Block layouts of the remaining 32-element ("legacy") formats, as ggml's
// ggml-common.h declares them (little-endian, no padding):
//
//	Q4_1:   d f16, m f16, qs [16]uint8 — x[j] = d·(qs[j]&15) + m,
//	        x[j+16] = d·(qs[j]>>4) + m
//	Q5_0:   d f16, qh uint32, qs [16]uint8 — the fifth bit of element j is
//	        bit j of qh; x = d·(q - 16)
//	Q5_1:   d f16, m f16, qh uint32, qs [16]uint8 — x = d·q + m
//	IQ4_NL: d f16, qs [16]uint8 — x[j] = d·kvaluesIQ4NL[qs[j]&15],
//	        x[j+16] = d·kvaluesIQ4NL[qs[j]>>4] (see iq4nl.go)
//
// Quantization follows ggml's quantize_row_*_ref: one scale (and minimum)
// per block from the block's extremes, then round to nearest. Every float
// operation is written as ggml's C evaluates it in single precision, with
// explicit float32 conversions where Go could otherwise fuse a multiply and
// an add, so the bytes match ggml's reference bit for bit.

// Byte sizes of the legacy blocks (geometry.go).
const (
	q4_1Bytes = BytesQ4_1
	q5_0Bytes = BytesQ5_0
	q5_1Bytes = BytesQ5_1
)

// blockMinMax returns the smallest and largest of x as ggml's Q4_1/Q5_1
// reference finds them (NaNs never win a comparison).
func blockMinMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

// QuantizeRowQ4_1 quantizes src (a multiple of 32 long) into dst
// (len(src)/32·20 bytes) as ggml's quantize_row_q4_1_ref does: d is the
// block's range over 15, m its minimum, q = (x-m)/d rounded half up.
func QuantizeRowQ4_1(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[:nb*q4_1Bytes]
	for b := 0; b < nb; b++ {
		x := src[b*QK : b*QK+QK]
		lo, hi := blockMinMax(x)
		d := (hi - lo) / 15
		var id float32
		if d != 0 {
			id = 1 / d
		}
		o := dst[b*q4_1Bytes : (b+1)*q4_1Bytes]
		binary.LittleEndian.PutUint16(o, F32ToF16(d))
		binary.LittleEndian.PutUint16(o[2:], F32ToF16(lo))
		for j := 0; j < QK/2; j++ {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+QK/2] - lo) * id)
			q0 := uint8(min(15, int8(x0+0.5)))
			q1 := uint8(min(15, int8(x1+0.5)))
			o[4+j] = q0 | q1<<4
		}
	}
}

// DequantizeRowQ4_1 expands Q4_1 blocks in src into dst (a multiple of 32 long).
func DequantizeRowQ4_1(dst []float32, src []byte) {
	nb := len(dst) / QK
	_ = src[:nb*q4_1Bytes]
	for b := 0; b < nb; b++ {
		o := src[b*q4_1Bytes : (b+1)*q4_1Bytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		m := F16ToF32(binary.LittleEndian.Uint16(o[2:]))
		y := dst[b*QK : b*QK+QK]
		for j := 0; j < QK/2; j++ {
			y[j] = float32(float32(o[4+j]&15)*d) + m
			y[j+QK/2] = float32(float32(o[4+j]>>4)*d) + m
		}
	}
}

// QuantizeRowQ5_0 quantizes src (a multiple of 32 long) into dst
// (len(src)/32·22 bytes) as ggml's quantize_row_q5_0_ref does: the value of
// largest magnitude maps to -16 exactly.
func QuantizeRowQ5_0(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[:nb*q5_0Bytes]
	for b := 0; b < nb; b++ {
		x := src[b*QK : b*QK+QK]
		var amax, mx float32
		for _, v := range x {
			if a := abs32(v); amax < a {
				amax, mx = a, v
			}
		}
		d := mx / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		o := dst[b*q5_0Bytes : (b+1)*q5_0Bytes]
		binary.LittleEndian.PutUint16(o, F32ToF16(d))
		var qh uint32
		for j := 0; j < QK/2; j++ {
			q0 := uint8(min(31, int8(float32(x[j]*id)+16.5)))
			q1 := uint8(min(31, int8(float32(x[j+QK/2]*id)+16.5)))
			o[6+j] = q0&15 | (q1&15)<<4
			qh |= uint32(q0>>4&1) << j
			qh |= uint32(q1>>4&1) << (j + QK/2)
		}
		binary.LittleEndian.PutUint32(o[2:], qh)
	}
}

// DequantizeRowQ5_0 expands Q5_0 blocks in src into dst (a multiple of 32 long).
func DequantizeRowQ5_0(dst []float32, src []byte) {
	nb := len(dst) / QK
	_ = src[:nb*q5_0Bytes]
	for b := 0; b < nb; b++ {
		o := src[b*q5_0Bytes : (b+1)*q5_0Bytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		qh := binary.LittleEndian.Uint32(o[2:])
		y := dst[b*QK : b*QK+QK]
		for j := 0; j < QK/2; j++ {
			h0 := int32(qh>>j&1) << 4
			h1 := int32(qh>>(j+QK/2)&1) << 4
			y[j] = float32((int32(o[6+j]&15)|h0)-16) * d
			y[j+QK/2] = float32((int32(o[6+j]>>4)|h1)-16) * d
		}
	}
}

// QuantizeRowQ5_1 quantizes src (a multiple of 32 long) into dst
// (len(src)/32·24 bytes) as ggml's quantize_row_q5_1_ref does: d is the
// block's range over 31, m its minimum.
func QuantizeRowQ5_1(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[:nb*q5_1Bytes]
	for b := 0; b < nb; b++ {
		x := src[b*QK : b*QK+QK]
		lo, hi := blockMinMax(x)
		d := (hi - lo) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		o := dst[b*q5_1Bytes : (b+1)*q5_1Bytes]
		binary.LittleEndian.PutUint16(o, F32ToF16(d))
		binary.LittleEndian.PutUint16(o[2:], F32ToF16(lo))
		var qh uint32
		for j := 0; j < QK/2; j++ {
			// ggml converts without clamping; a value rounding to 32 keeps
			// only its low five bits, as there.
			q0 := uint8(float32((x[j]-lo)*id) + 0.5)
			q1 := uint8(float32((x[j+QK/2]-lo)*id) + 0.5)
			o[8+j] = q0&15 | (q1&15)<<4
			qh |= uint32(q0>>4&1) << j
			qh |= uint32(q1>>4&1) << (j + QK/2)
		}
		binary.LittleEndian.PutUint32(o[4:], qh)
	}
}

// DequantizeRowQ5_1 expands Q5_1 blocks in src into dst (a multiple of 32 long).
func DequantizeRowQ5_1(dst []float32, src []byte) {
	nb := len(dst) / QK
	_ = src[:nb*q5_1Bytes]
	for b := 0; b < nb; b++ {
		o := src[b*q5_1Bytes : (b+1)*q5_1Bytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		m := F16ToF32(binary.LittleEndian.Uint16(o[2:]))
		qh := binary.LittleEndian.Uint32(o[4:])
		y := dst[b*QK : b*QK+QK]
		for j := 0; j < QK/2; j++ {
			h0 := uint32(qh>>j&1) << 4
			h1 := uint32(qh>>(j+QK/2)&1) << 4
			y[j] = float32(float32(uint32(o[8+j]&15)|h0)*d) + m
			y[j+QK/2] = float32(float32(uint32(o[8+j]>>4)|h1)*d) + m
		}
	}
}

// abs32 is fabsf.
func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }
