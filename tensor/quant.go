package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Block layouts (little-endian, as ggml stores them):
//
//	Q8_0: d float16, qs [32]int8            — x[i] = d·qs[i]
//	Q4_0: d float16, qs [16]uint8 (nibbles) — x[j] = d·((qs[j]&15)-8),
//	      x[j+16] = d·((qs[j]>>4)-8), j < 16
//
// The other block formats are in legacy.go (Q4_1, Q5_0, Q5_1), kquant.go
// (Q2_K…Q6_K, Q8_K) and iq4nl.go (IQ4_NL).

// roundHalfAway rounds to the nearest integer, halves away from zero (C's roundf).
func roundHalfAway(x float32) float32 { return float32(math.Round(float64(x))) }

// QuantizeRowQ8_0 quantizes src (a multiple of 32 long) into dst
// (len(src)/32·34 bytes) with ggml's reference round-to-nearest.
func QuantizeRowQ8_0(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[:nb*34]
	for b := 0; b < nb; b++ {
		x := src[b*QK : b*QK+QK]
		var amax float32
		for _, v := range x {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax = a
			}
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		o := dst[b*34 : b*34+34]
		binary.LittleEndian.PutUint16(o, F32ToF16(d))
		for i, v := range x {
			o[2+i] = byte(int8(roundHalfAway(v * id)))
		}
	}
}

// DequantizeRowQ8_0 expands Q8_0 blocks in src into dst (a multiple of 32 long).
func DequantizeRowQ8_0(dst []float32, src []byte) {
	nb := len(dst) / QK
	_ = src[:nb*34]
	for b := 0; b < nb; b++ {
		o := src[b*34 : b*34+34]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		for i := 0; i < QK; i++ {
			dst[b*QK+i] = d * float32(int8(o[2+i]))
		}
	}
}

// QuantizeRowQ4_0 quantizes src (a multiple of 32 long) into dst
// (len(src)/32·18 bytes) with ggml's reference: the scale is the signed
// value of largest magnitude divided by -8, so that value maps to -8 exactly.
func QuantizeRowQ4_0(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[:nb*18]
	for b := 0; b < nb; b++ {
		x := src[b*QK : b*QK+QK]
		var amax, max float32
		for _, v := range x {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax, max = a, v
			}
		}
		d := max / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		o := dst[b*18 : b*18+18]
		binary.LittleEndian.PutUint16(o, F32ToF16(d))
		for j := 0; j < QK/2; j++ {
			x0 := float32(x[j]*id) + 8.5
			x1 := float32(x[j+QK/2]*id) + 8.5
			q0 := uint8(min(15, int8(x0)))
			q1 := uint8(min(15, int8(x1)))
			o[2+j] = q0 | q1<<4
		}
	}
}

// DequantizeRowQ4_0 expands Q4_0 blocks in src into dst (a multiple of 32 long).
func DequantizeRowQ4_0(dst []float32, src []byte) {
	nb := len(dst) / QK
	_ = src[:nb*18]
	for b := 0; b < nb; b++ {
		o := src[b*18 : b*18+18]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		for j := 0; j < QK/2; j++ {
			dst[b*QK+j] = d * float32(int(o[2+j]&15)-8)
			dst[b*QK+j+QK/2] = d * float32(int(o[2+j]>>4)-8)
		}
	}
}

// Dequantize expands a row of n elements of dtype d from src into dst[:n].
func Dequantize(d DType, dst []float32, src []byte) error {
	n := len(dst)
	need, err := d.RowBytes(n)
	if err != nil {
		return err
	}
	if len(src) < need {
		return fmt.Errorf("%s: %d bytes for %d elements, need %d", d, len(src), n, need)
	}
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	default:
		f, ok := dequantizers[d]
		if !ok {
			return fmt.Errorf("dequantize: unsupported dtype %s", d)
		}
		f(dst, src)
	}
	return nil
}

// dequantizers and quantizers map the block dtypes to their row functions.
var (
	dequantizers = map[DType]func([]float32, []byte){
		Q4_0: DequantizeRowQ4_0, Q4_1: DequantizeRowQ4_1, Q5_0: DequantizeRowQ5_0, Q5_1: DequantizeRowQ5_1,
		Q8_0: DequantizeRowQ8_0, Q2_K: DequantizeRowQ2_K, Q3_K: DequantizeRowQ3_K, Q4_K: DequantizeRowQ4_K,
		Q5_K: DequantizeRowQ5_K, Q6_K: DequantizeRowQ6_K, Q8_K: DequantizeRowQ8_K, IQ4_NL: DequantizeRowIQ4_NL,
	}
	quantizers = map[DType]func([]byte, []float32){
		Q4_0: QuantizeRowQ4_0, Q4_1: QuantizeRowQ4_1, Q5_0: QuantizeRowQ5_0, Q5_1: QuantizeRowQ5_1,
		Q8_0: QuantizeRowQ8_0, Q2_K: QuantizeRowQ2_K, Q3_K: QuantizeRowQ3_K, Q4_K: QuantizeRowQ4_K,
		Q5_K: QuantizeRowQ5_K, Q6_K: QuantizeRowQ6_K, Q8_K: QuantizeRowQ8_K, IQ4_NL: QuantizeRowIQ4_NL,
	}
)

// CanDequantize reports whether Dequantize expands dtype d: F32, F16, BF16
// and every block format herd knows.
func CanDequantize(d DType) bool {
	_, ok := dequantizers[d]
	return ok || d == F32 || d == F16 || d == BF16
}

// CanQuantize reports whether Quantize writes dtype d.
func CanQuantize(d DType) bool {
	_, ok := quantizers[d]
	return ok || d == F32 || d == F16 || d == BF16
}

// IsQuantized reports whether d is a block format (more than one element
// per block).
func (d DType) IsQuantized() bool { return d.BlockSize() > 1 }

// Quantize packs the float32 row src into dtype d, writing d.RowBytes(len(src)) bytes to dst.
func Quantize(d DType, dst []byte, src []float32) error {
	need, err := d.RowBytes(len(src))
	if err != nil {
		return err
	}
	if len(dst) < need {
		return fmt.Errorf("%s: %d bytes for %d elements, need %d", d, len(dst), len(src), need)
	}
	switch d {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	default:
		f, ok := quantizers[d]
		if !ok {
			return fmt.Errorf("quantize: unsupported dtype %s", d)
		}
		f(dst, src)
	}
	return nil
}
