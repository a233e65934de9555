package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Importance-weighted quantization: ggml's quantize_q4_0 … quantize_q5_1,
// quantize_iq4_nl and the k-quants Q2_K…Q6_K (weighted_k.go) when llama-quantize gives them an importance matrix
// (the per-column mean squared activations of llama-imatrix). Each value's
// weight in the block's error is qw[j]·sqrt(σ² + x[j]²), σ² the mean
// square of the row (legacy types) or twice the block's (IQ4_NL); the
// scale (and minimum) is then searched for the least weighted error
// (make_qx_quants for the symmetric types, make_qkx3_quants for the ones
// with a minimum). Written, like the reference quantizers, in ggml's
// single-precision evaluation order. A nil weight vector is the reference
// quantizer (what ggml does without an importance matrix).

// weightAt is the weight of x[i]: qw[i], or x[i]² without weights.
func weightAt(qw, x []float32, i int) float32 {
	if qw != nil {
		return qw[i]
	}
	return float32(x[i] * x[i])
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// rowSigma2 is Σx²/n over a whole row, summed in order.
func rowSigma2(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s / float32(len(x))
}

// blockWeights fills w with qw[j]·sqrt(sigma2 + x[j]²).
func blockWeights(w, qw, x []float32, sigma2 float32) {
	for j, v := range x {
		w[j] = float32(qw[j] * sqrt32(float32(sigma2+float32(v*v))))
	}
}

// makeQKX3Quants is ggml's make_qkx3_quants: asymmetric levels 0..nmax
// for x ≈ scale·L − min, the scale searched over nstep+1 candidates
// (rmin + rdelta·is + nmax)/(max − min) each refined by weighted least
// squares, keeping the least weighted squared (or absolute) error.
func makeQKX3Quants(x, weights []float32, L, laux []uint8, nmax int32, theMin *float32,
	rmin, rdelta float32, nstep int, useMAD bool) float32 {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weightAt(weights, x, 0)
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		lo, hi = min(lo, x[i]), max(hi, x[i])
		w := weightAt(weights, x, i)
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi <= lo {
		clear(L[:n])
		*theMin = -lo
		return 0
	}
	fn := float32(nmax)
	iscale := fn / (hi - lo)
	scale := 1 / iscale
	var best float32
	for i, v := range x {
		l := clampInt(nearestInt(float32(iscale*(v-lo))), 0, nmax)
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+lo) - v
		best += float32(weightAt(weights, x, i) * errOf(diff, useMAD))
	}
	if nstep < 1 {
		*theMin = -lo
		return scale
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(rmin+float32(rdelta*float32(is))+fn) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			t := float32(iscale * (v - lo))
			var l int32
			if t > 0 {
				l = nearestInt(min(t, fn))
			}
			laux[i] = uint8(l)
			w := weightAt(weights, x, i)
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(float32(w*fl) * fl)
			sumXL += float32(float32(w*fl) * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var cur float32
			for i, v := range x {
				diff := float32(float32(thisScale*float32(laux[i]))+thisMin) - v
				cur += float32(weightAt(weights, x, i) * errOf(diff, useMAD))
			}
			if cur < best {
				copy(L[:n], laux[:n])
				best, scale, lo = cur, thisScale, thisMin
			}
		}
	}
	*theMin = -lo
	return scale
}

// QuantizeRowWeighted quantizes one row src of dtype d with importance
// weights qw (len(src) of them) as llama-quantize does with an imatrix;
// nil qw, or a type ggml quantizes without weights (Q8_0 and the plain
// types), is Quantize.
func QuantizeRowWeighted(d DType, dst []byte, src, qw []float32) error {
	if qw == nil {
		return Quantize(d, dst, src)
	}
	if len(qw) != len(src) {
		return fmt.Errorf("quantize %s: %d importance weights for a row of %d", d, len(qw), len(src))
	}
	need, err := d.RowBytes(len(src))
	if err != nil {
		return err
	}
	if len(dst) < need {
		return fmt.Errorf("%s: %d bytes for %d elements, need %d", d, len(dst), len(src), need)
	}
	switch d {
	case Q4_0, Q5_0:
		legacySym(d, dst, src, qw)
	case Q4_1, Q5_1:
		legacyMin(d, dst, src, qw)
	case IQ4_NL:
		iq4nlWeighted(dst, src, qw)
	default:
		if !kquantWeighted(d, dst, src, qw) {
			return Quantize(d, dst, src)
		}
	}
	return nil
}

// legacySym is ggml's quantize_row_q4_0_impl / q5_0_impl.
func legacySym(d DType, dst []byte, src, qw []float32) {
	sigma2 := rowSigma2(src)
	var w [QK]float32
	var L [QK]int8
	nmax, bb := int32(8), 18
	if d == Q5_0 {
		nmax, bb = 16, q5_0Bytes
	}
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		blockWeights(w[:], qw[b*QK:(b+1)*QK], x, sigma2)
		scale := makeQXQuants(x, L[:], nmax, w[:])
		o := dst[b*bb : (b+1)*bb]
		binary.LittleEndian.PutUint16(o, F32ToF16(scale))
		if d == Q4_0 {
			for j := 0; j < QK/2; j++ {
				o[2+j] = uint8(L[j]) | uint8(L[j+QK/2])<<4
			}
			continue
		}
		var qh uint32
		for j := 0; j < QK/2; j++ {
			q0, q1 := uint8(L[j]), uint8(L[j+QK/2])
			o[6+j] = q0&15 | (q1&15)<<4
			qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+QK/2)
		}
		binary.LittleEndian.PutUint32(o[2:], qh)
	}
}

// legacyMin is ggml's quantize_row_q4_1_impl / q5_1_impl.
func legacyMin(d DType, dst []byte, src, qw []float32) {
	sigma2 := rowSigma2(src)
	var w [QK]float32
	var L, laux [QK]uint8
	nmax, bb := int32(15), q4_1Bytes
	if d == Q5_1 {
		nmax, bb = 31, q5_1Bytes
	}
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		blockWeights(w[:], qw[b*QK:(b+1)*QK], x, sigma2)
		var mn float32
		scale := makeQKX3Quants(x, w[:], L[:], laux[:], nmax, &mn, -0.9, 0.05, 36, false)
		o := dst[b*bb : (b+1)*bb]
		binary.LittleEndian.PutUint16(o, F32ToF16(scale))
		binary.LittleEndian.PutUint16(o[2:], F32ToF16(-mn))
		if d == Q4_1 {
			for j := 0; j < QK/2; j++ {
				o[4+j] = L[j] | L[j+QK/2]<<4
			}
			continue
		}
		var qh uint32
		for j := 0; j < QK/2; j++ {
			q0, q1 := L[j], L[j+QK/2]
			o[8+j] = q0&15 | (q1&15)<<4
			qh |= uint32(q0>>4&1)<<j | uint32(q1>>4&1)<<(j+QK/2)
		}
		binary.LittleEndian.PutUint32(o[4:], qh)
	}
}

// iq4nlWeighted is ggml's quantize_iq4_nl with an importance matrix: per
// block, σ² = 2·Σx²/32 and the scale search of QuantizeRowIQ4_NL with the
// weights qw[j]·sqrt(σ² + x[j]²).
func iq4nlWeighted(dst []byte, src, qw []float32) {
	var w [QK]float32
	for b := 0; b < len(src)/QK; b++ {
		x := src[b*QK : (b+1)*QK]
		o := dst[b*iq4nlBytes : (b+1)*iq4nlBytes]
		var s2 float32
		for _, v := range x {
			s2 += float32(v * v)
		}
		s2 = float32(s2 * (2.0 / QK))
		blockWeights(w[:], qw[b*QK:(b+1)*QK], x, s2)
		iq4nlBlock(o, x, w[:])
	}
}
