package tensor

import (
	"encoding/binary"
	"math"
)

// The k-quants: super-blocks of QKK = 256 elements split into sub-blocks of
// 16 or 32, each sub-block with a 4-, 6- or 8-bit scale (and minimum) that
// is itself scaled by float16 super-block factors. Layouts, as ggml's
// ggml-common.h declares the structs (little-endian, no padding):
//
//	Q2_K (84 B):  scales [16]uint8 (low nibble scale, high nibble min, per
//	              16 values), qs [64]uint8 (2-bit), d f16, dmin f16;
//	              x = d·sc·q - dmin·m
//	Q3_K (110 B): hmask [32]uint8 (high bit), qs [64]uint8 (low 2 bits),
//	              scales [12]uint8 (16 six-bit scales), d f16;
//	              x = d·(sc-32)·(q-4)
//	Q4_K (144 B): d f16, dmin f16, scales [12]uint8 (8 six-bit scales and
//	              8 six-bit mins), qs [128]uint8 (nibbles); x = d·sc·q - dmin·m
//	Q5_K (176 B): d f16, dmin f16, scales [12]uint8, qh [32]uint8 (fifth
//	              bits), qs [128]uint8
//	Q6_K (210 B): ql [128]uint8 (low 4 bits), qh [64]uint8 (high 2 bits),
//	              scales [16]int8, d f16; x = d·sc·(q-32)
//	Q8_K (292 B): d f32, qs [256]int8, bsums [16]int16 (sums of 16 quants);
//	              x = d·q — the activation format k-quant dot products use
//
// Quantization is ggml's reference (quantize_row_q*_K_ref, which is what
// llama.cpp's quantizer runs when no importance matrix is given), including
// its scale searches make_qx_quants, make_q3_quants and make_qkx2_quants,
// written with ggml's single-precision evaluation order (and no fused
// multiply-adds) so the bytes match.


// Byte sizes of the k-quant blocks (geometry.go).
const (
	q2kBytes = BytesQ2_K
	q3kBytes = BytesQ3_K
	q4kBytes = BytesQ4_K
	q5kBytes = BytesQ5_K
	q6kBytes = BytesQ6_K
	q8kBytes = BytesQ8_K
)

// groupMaxEps is ggml's GROUP_MAX_EPS: groups whose largest magnitude is
// below it quantize to zeros.
const groupMaxEps = 1e-15

// nearestInt rounds to the nearest integer, halves to even, exactly as
// ggml's nearest_int does (adding 1.5·2²³ and reading the mantissa), which
// is only meaningful for |x| ≤ 4194303 but deterministic everywhere.
func nearestInt(x float32) int32 {
	v := x + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

func clampInt(v, lo, hi int32) int32 { return max(lo, min(hi, v)) }

// makeQXQuants is ggml's make_qx_quants with rmse_type 1 and no importance
// weights (w = x²): symmetric levels -nmax..nmax-1, the scale searched over
// 19 candidates around nmax/max for the least weighted squared error. It
// stores the levels plus nmax in L and returns the scale.
func makeQXQuants(x []float32, L []int8, nmax int32) float32 {
	var mx, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	fn := float32(nmax)
	iscale := -fn / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fn + float32(0.1*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for _, v := range x {
			l := clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1)
			w := float32(v * v)
			fl := float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				l := nearestInt(float32(iscale * v))
				L[i] = int8(nmax + clampInt(l, -nmax, nmax-1))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// makeQ3Quants is ggml's make_q3_quants with do_rmse: symmetric levels
// -nmax..nmax-1 from round to nearest, then up to five passes that move
// single levels while that lowers the x²-weighted squared error. It stores
// the levels plus nmax in L and returns the scale.
func makeQ3Quants(x []float32, L []int8, nmax int32) float32 {
	var mx, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, mx = a, v
		}
	}
	if amax < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	iscale := -float32(nmax) / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(float32(iscale*v)), -nmax, nmax-1)
		L[i] = int8(l)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w := float32(v * v)
			li := float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*li)*li)
				nl := clampInt(nearestInt(float32(v*sl2)/slx), -nmax, nmax-1)
				if nl != int32(L[i]) {
					fl := float32(nl)
					slx += float32(float32(w*v) * fl)
					sl2 += float32(float32(w*fl) * fl)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(nl)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range x {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQKX2Quants is ggml's make_qkx2_quants: asymmetric levels 0..nmax for
// x ≈ scale·L - min (min ≥ 0 returned in *theMin), the scale searched over
// nstep+1 candidates (rmin + rdelta·is + nmax)/(max - min), each refined by
// weighted least squares, keeping the one of least weighted error (absolute
// error when useMAD). laux is scratch of len(x).
func makeQKX2Quants(x, weights []float32, L, laux []uint8, nmax int32, theMin *float32,
	rmin, rdelta float32, nstep int, useMAD bool) float32 {
	n := len(x)
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L[:n])
		*theMin = -lo
		return 0
	}
	fn := float32(nmax)
	iscale := fn / (hi - lo)
	scale := 1 / iscale
	var bestErr float32
	for i, v := range x {
		l := clampInt(nearestInt(float32(iscale*(v-lo))), 0, nmax)
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+lo) - v
		bestErr += float32(weights[i] * errOf(diff, useMAD))
	}
	if nstep < 1 {
		*theMin = -lo
		return scale
	}
	// Each candidate's levels are taken relative to the best minimum so
	// far (lo changes when a candidate wins), so the search is sequential.
	for is := 0; is <= nstep; is++ {
		iscale = float32(rmin+float32(rdelta*float32(is))+fn) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := clampInt(nearestInt(float32(iscale*(v-lo))), 0, nmax)
			laux[i] = uint8(l)
			w := weights[i]
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
				cur += float32(weights[i] * errOf(diff, useMAD))
			}
			if cur < bestErr {
				copy(L[:n], laux[:n])
				bestErr, scale, lo = cur, thisScale, thisMin
			}
		}
	}
	*theMin = -lo
	return scale
}

// errOf is make_qkx2_quants' error of one value: absolute or squared.
func errOf(diff float32, useMAD bool) float32 {
	if useMAD {
		return abs32(diff)
	}
	return float32(diff * diff)
}

// pack2 stores 256 two-bit levels as ggml's Q2_K/Q3_K do: byte l of each
// 32-byte group holds elements l, l+32, l+64 and l+96 of its 128.
func pack2[T int8 | uint8](qs []byte, L []T) {
	for j := 0; j < QKK; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = byte(L[j+l]) | byte(L[j+l+32])<<2 | byte(L[j+l+64])<<4 | byte(L[j+l+96])<<6
		}
	}
}

// QuantizeRowQ2_K quantizes src (a multiple of 256 long) into dst
// (len(src)/256·84 bytes) with ggml's quantize_row_q2_K_ref.
func QuantizeRowQ2_K(dst []byte, src []float32) {
	nb := len(src) / QKK
	_ = dst[:nb*q2kBytes]
	var L [QKK]uint8
	var laux [16]uint8
	var weights [16]float32
	var mins, scales [QKK / 16]float32
	for b := 0; b < nb; b++ {
		x := src[b*QKK : (b+1)*QKK]
		o := dst[b*q2kBytes : (b+1)*q2kBytes]
		var maxScale, maxMin float32
		for j := 0; j < QKK/16; j++ {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				weights[l] = abs32(v)
			}
			scales[j] = makeQKX2Quants(xs, weights[:], L[16*j:16*j+16], laux[:], 3, &mins[j], -0.5, 0.1, 15, true)
			maxScale = max(maxScale, scales[j])
			maxMin = max(maxMin, mins[j])
		}
		sc := o[:16]
		if maxScale > 0 {
			iscale := 15 / maxScale
			for j := range sc {
				sc[j] = uint8(nearestInt(float32(iscale * scales[j])))
			}
			binary.LittleEndian.PutUint16(o[80:], F32ToF16(maxScale/15))
		} else {
			clear(sc)
			binary.LittleEndian.PutUint16(o[80:], 0)
		}
		if maxMin > 0 {
			iscale := 15 / maxMin
			for j := range sc {
				sc[j] |= uint8(nearestInt(float32(iscale*mins[j])) << 4)
			}
			binary.LittleEndian.PutUint16(o[82:], F32ToF16(maxMin/15))
		} else {
			binary.LittleEndian.PutUint16(o[82:], 0)
		}
		dAll := F16ToF32(binary.LittleEndian.Uint16(o[80:]))
		mAll := F16ToF32(binary.LittleEndian.Uint16(o[82:]))
		for j := 0; j < QKK/16; j++ {
			d := float32(dAll * float32(sc[j]&15))
			if d == 0 {
				continue
			}
			dm := float32(mAll * float32(sc[j]>>4))
			for i := 0; i < 16; i++ {
				L[16*j+i] = uint8(clampInt(nearestInt((x[16*j+i]+dm)/d), 0, 3))
			}
		}
		pack2(o[16:80], L[:])
	}
}

// DequantizeRowQ2_K expands Q2_K blocks in src into dst (a multiple of 256 long).
func DequantizeRowQ2_K(dst []float32, src []byte) {
	nb := len(dst) / QKK
	_ = src[:nb*q2kBytes]
	for b := 0; b < nb; b++ {
		o := src[b*q2kBytes : (b+1)*q2kBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o[80:]))
		mn := F16ToF32(binary.LittleEndian.Uint16(o[82:]))
		y := dst[b*QKK : (b+1)*QKK]
		is := 0
		for n := 0; n < QKK; n += 128 {
			q := o[16+n/4 : 16+n/4+32]
			for j := 0; j < 4; j++ {
				shift := 2 * j
				for half := 0; half < 2; half++ {
					sc := o[is]
					is++
					dl := float32(d * float32(sc&15))
					ml := float32(mn * float32(sc>>4))
					yy := y[n+32*j+16*half : n+32*j+16*half+16]
					for l := range yy {
						yy[l] = float32(dl*float32(q[16*half+l]>>shift&3)) - ml
					}
				}
			}
		}
	}
}


// QuantizeRowQ3_K quantizes src (a multiple of 256 long) into dst
// (len(src)/256·110 bytes) with ggml's quantize_row_q3_K_ref.
func QuantizeRowQ3_K(dst []byte, src []float32) {
	nb := len(src) / QKK
	_ = dst[:nb*q3kBytes]
	var L [QKK]int8
	var scales [QKK / 16]float32
	for b := 0; b < nb; b++ {
		x := src[b*QKK : (b+1)*QKK]
		o := dst[b*q3kBytes : (b+1)*q3kBytes]
		var maxScale, amax float32
		for j := 0; j < QKK/16; j++ {
			scales[j] = makeQ3Quants(x[16*j:16*j+16], L[16*j:16*j+16], 4)
			if a := abs32(scales[j]); a > amax {
				amax, maxScale = a, scales[j]
			}
		}
		sc := o[96:108]
		clear(sc)
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := 0; j < QKK/16; j++ {
				l := int32(int8(nearestInt(float32(iscale * scales[j]))))
				l = clampInt(l, -32, 31) + 32
				if j < 8 {
					sc[j] = byte(l & 15)
				} else {
					sc[j-8] |= byte(l&15) << 4
				}
				sc[8+j%4] |= byte(l>>4) << (2 * (j / 4))
			}
			binary.LittleEndian.PutUint16(o[108:], F32ToF16(1/iscale))
		} else {
			binary.LittleEndian.PutUint16(o[108:], 0)
		}
		dAll := F16ToF32(binary.LittleEndian.Uint16(o[108:]))
		for j := 0; j < QKK/16; j++ {
			d := float32(dAll * float32(Q3KScale(sc, j)))
			if d == 0 {
				continue
			}
			for i := 0; i < 16; i++ {
				L[16*j+i] = int8(clampInt(nearestInt(x[16*j+i]/d), -4, 3) + 4)
			}
		}
		hmask := o[:32]
		clear(hmask)
		m, hm := 0, byte(1)
		for j := range L {
			if L[j] > 3 {
				hmask[m] |= hm
				L[j] -= 4
			}
			if m++; m == QKK/8 {
				m, hm = 0, hm<<1
			}
		}
		pack2(o[32:96], L[:])
	}
}

// DequantizeRowQ3_K expands Q3_K blocks in src into dst (a multiple of 256 long).
func DequantizeRowQ3_K(dst []float32, src []byte) {
	nb := len(dst) / QKK
	_ = src[:nb*q3kBytes]
	for b := 0; b < nb; b++ {
		o := src[b*q3kBytes : (b+1)*q3kBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o[108:]))
		hm := o[:32]
		sc := o[96:108]
		y := dst[b*QKK : (b+1)*QKK]
		is := 0
		for n := 0; n < QKK; n += 128 {
			q := o[32+n/4 : 32+n/4+32]
			for j := 0; j < 4; j++ {
				shift := 2 * j
				m := byte(1) << (n/128*4 + j)
				for half := 0; half < 2; half++ {
					dl := float32(d * float32(Q3KScale(sc, is)))
					is++
					yy := y[n+32*j+16*half : n+32*j+16*half+16]
					for l := range yy {
						k := 16*half + l
						v := int32(q[k] >> shift & 3)
						if hm[k]&m == 0 {
							v -= 4
						}
						yy[l] = dl * float32(v)
					}
				}
			}
		}
	}
}

// scaleMinK4 decodes the six-bit scale and minimum of sub-block j (0..7)
// from the 12 packed bytes of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// quantizeK4Scales runs the shared part of ggml's Q4_K and Q5_K reference:
// per 32-value sub-block weights av_x + |x|, a make_qkx2_quants search with
// levels 0..nmax, the sub-block scales and mins packed as six bits into
// o[4:16] under float16 super-scales d (o[0:2]) and dmin (o[2:4]), then the
// levels re-derived from the packed scales into L.
func quantizeK4Scales(o []byte, x []float32, L *[QKK]uint8, nmax int32, rmin, rdelta float32, nstep int) {
	var laux [32]uint8
	var weights [32]float32
	var mins, scales [QKK / 32]float32
	var maxScale, maxMin float32
	for j := 0; j < QKK/32; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j] = makeQKX2Quants(xs, weights[:], L[32*j:32*j+32], laux[:], nmax, &mins[j], rmin, rdelta, nstep, false)
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	sc := o[4:16]
	for j := 0; j < QKK/32; j++ {
		ls := min(63, uint8(nearestInt(float32(invScale*scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*mins[j]))))
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&15 | (lm&15)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	binary.LittleEndian.PutUint16(o, F32ToF16(maxScale/63))
	binary.LittleEndian.PutUint16(o[2:], F32ToF16(maxMin/63))
	dAll := F16ToF32(binary.LittleEndian.Uint16(o))
	mAll := F16ToF32(binary.LittleEndian.Uint16(o[2:]))
	for j := 0; j < QKK/32; j++ {
		s, m := scaleMinK4(j, sc)
		d := float32(dAll * float32(s))
		if d == 0 {
			continue
		}
		dm := float32(mAll * float32(m))
		for i := 0; i < 32; i++ {
			L[32*j+i] = uint8(clampInt(nearestInt((x[32*j+i]+dm)/d), 0, nmax))
		}
	}
}

// QuantizeRowQ4_K quantizes src (a multiple of 256 long) into dst
// (len(src)/256·144 bytes) with ggml's quantize_row_q4_K_ref.
func QuantizeRowQ4_K(dst []byte, src []float32) {
	nb := len(src) / QKK
	_ = dst[:nb*q4kBytes]
	var L [QKK]uint8
	for b := 0; b < nb; b++ {
		x := src[b*QKK : (b+1)*QKK]
		o := dst[b*q4kBytes : (b+1)*q4kBytes]
		quantizeK4Scales(o, x, &L, 15, -1, 0.1, 20)
		q := o[16:]
		for j := 0; j < QKK; j += 64 {
			for l := 0; l < 32; l++ {
				q[j/2+l] = L[j+l] | L[j+l+32]<<4
			}
		}
	}
}

// DequantizeRowQ4_K expands Q4_K blocks in src into dst (a multiple of 256 long).
func DequantizeRowQ4_K(dst []float32, src []byte) {
	nb := len(dst) / QKK
	_ = src[:nb*q4kBytes]
	for b := 0; b < nb; b++ {
		o := src[b*q4kBytes : (b+1)*q4kBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		mn := F16ToF32(binary.LittleEndian.Uint16(o[2:]))
		y := dst[b*QKK : (b+1)*QKK]
		for j := 0; j < QKK/64; j++ {
			s1, m1 := scaleMinK4(2*j, o[4:16])
			s2, m2 := scaleMinK4(2*j+1, o[4:16])
			d1, dm1 := float32(d*float32(s1)), float32(mn*float32(m1))
			d2, dm2 := float32(d*float32(s2)), float32(mn*float32(m2))
			q := o[16+32*j : 16+32*j+32]
			for l, v := range q {
				y[64*j+l] = float32(d1*float32(v&15)) - dm1
				y[64*j+32+l] = float32(d2*float32(v>>4)) - dm2
			}
		}
	}
}

// QuantizeRowQ5_K quantizes src (a multiple of 256 long) into dst
// (len(src)/256·176 bytes) with ggml's quantize_row_q5_K_ref.
func QuantizeRowQ5_K(dst []byte, src []float32) {
	nb := len(src) / QKK
	_ = dst[:nb*q5kBytes]
	var L [QKK]uint8
	for b := 0; b < nb; b++ {
		x := src[b*QKK : (b+1)*QKK]
		o := dst[b*q5kBytes : (b+1)*q5kBytes]
		quantizeK4Scales(o, x, &L, 31, -0.5, 0.1, 15)
		qh := o[16:48]
		ql := o[48:]
		clear(qh)
		m1, m2 := byte(1), byte(2)
		for n := 0; n < QKK; n += 64 {
			for j := 0; j < 32; j++ {
				l1, l2 := L[n+j], L[n+j+32]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[n/2+j] = l1 | l2<<4
			}
			m1 <<= 2
			m2 <<= 2
		}
	}
}

// DequantizeRowQ5_K expands Q5_K blocks in src into dst (a multiple of 256 long).
func DequantizeRowQ5_K(dst []float32, src []byte) {
	nb := len(dst) / QKK
	_ = src[:nb*q5kBytes]
	for b := 0; b < nb; b++ {
		o := src[b*q5kBytes : (b+1)*q5kBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		mn := F16ToF32(binary.LittleEndian.Uint16(o[2:]))
		qh := o[16:48]
		y := dst[b*QKK : (b+1)*QKK]
		for j := 0; j < QKK/64; j++ {
			s1, m1 := scaleMinK4(2*j, o[4:16])
			s2, m2 := scaleMinK4(2*j+1, o[4:16])
			d1, dm1 := float32(d*float32(s1)), float32(mn*float32(m1))
			d2, dm2 := float32(d*float32(s2)), float32(mn*float32(m2))
			u1, u2 := byte(1)<<(2*j), byte(2)<<(2*j)
			ql := o[48+32*j : 48+32*j+32]
			for l, v := range ql {
				q1, q2 := v&15, v>>4
				if qh[l]&u1 != 0 {
					q1 += 16
				}
				if qh[l]&u2 != 0 {
					q2 += 16
				}
				y[64*j+l] = float32(d1*float32(q1)) - dm1
				y[64*j+32+l] = float32(d2*float32(q2)) - dm2
			}
		}
	}
}

// QuantizeRowQ6_K quantizes src (a multiple of 256 long) into dst
// (len(src)/256·210 bytes) with ggml's quantize_row_q6_K_ref.
func QuantizeRowQ6_K(dst []byte, src []float32) {
	nb := len(src) / QKK
	_ = dst[:nb*q6kBytes]
	var L [QKK]int8
	var scales [QKK / 16]float32
	for b := 0; b < nb; b++ {
		x := src[b*QKK : (b+1)*QKK]
		o := dst[b*q6kBytes : (b+1)*q6kBytes]
		var maxScale, maxAbs float32
		for ib := 0; ib < QKK/16; ib++ {
			s := makeQXQuants(x[16*ib:16*ib+16], L[16*ib:16*ib+16], 32)
			scales[ib] = s
			if a := abs32(s); a > maxAbs {
				maxAbs, maxScale = a, s
			}
		}
		if maxAbs < groupMaxEps {
			clear(o)
			continue
		}
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(o[208:], F32ToF16(1/iscale))
		sc := o[192:208]
		for ib := range sc {
			sc[ib] = byte(int8(min(127, nearestInt(float32(iscale*scales[ib])))))
		}
		dAll := F16ToF32(binary.LittleEndian.Uint16(o[208:]))
		for j := 0; j < QKK/16; j++ {
			d := float32(dAll * float32(int8(sc[j])))
			if d == 0 {
				continue
			}
			for i := 0; i < 16; i++ {
				L[16*j+i] = int8(clampInt(nearestInt(x[16*j+i]/d), -32, 31) + 32)
			}
		}
		ql, qh := o[:128], o[128:192]
		for j := 0; j < QKK; j += 128 {
			for l := 0; l < 32; l++ {
				q1, q2, q3, q4 := byte(L[j+l]), byte(L[j+l+32]), byte(L[j+l+64]), byte(L[j+l+96])
				ql[j/2+l] = q1&15 | (q3&15)<<4
				ql[j/2+l+32] = q2&15 | (q4&15)<<4
				qh[j/4+l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
	}
}

// DequantizeRowQ6_K expands Q6_K blocks in src into dst (a multiple of 256 long).
func DequantizeRowQ6_K(dst []float32, src []byte) {
	nb := len(dst) / QKK
	_ = src[:nb*q6kBytes]
	for b := 0; b < nb; b++ {
		o := src[b*q6kBytes : (b+1)*q6kBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o[208:]))
		y := dst[b*QKK : (b+1)*QKK]
		for n := 0; n < QKK; n += 128 {
			ql := o[n/2 : n/2+64]
			qh := o[128+n/4 : 128+n/4+32]
			sc := o[192+n/16 : 192+n/16+8]
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int32(ql[l]&15|(qh[l]&3)<<4) - 32
				q2 := int32(ql[l+32]&15|(qh[l]>>2&3)<<4) - 32
				q3 := int32(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				y[n+l] = float32(d*float32(int8(sc[is]))) * float32(q1)
				y[n+l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
				y[n+l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
				y[n+l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
			}
		}
	}
}

// QuantizeRowQ8_K quantizes src (a multiple of 256 long) into dst
// (len(src)/256·292 bytes) with ggml's quantize_row_q8_K_ref: the value of
// largest magnitude maps to -127, d = 1/iscale as float32, and bsums holds
// the sum of each 16 quants. An all-zero block gets d = 0 and zero quants
// and sums (ggml leaves its sums unwritten there).
func QuantizeRowQ8_K(dst []byte, src []float32) {
	nb := len(src) / QKK
	_ = dst[:nb*q8kBytes]
	for b := 0; b < nb; b++ {
		x := src[b*QKK : (b+1)*QKK]
		o := dst[b*q8kBytes : (b+1)*q8kBytes]
		var mx, amax float32
		for _, v := range x {
			if a := abs32(v); a > amax {
				amax, mx = a, v
			}
		}
		if amax == 0 {
			clear(o)
			continue
		}
		iscale := -127 / mx
		qs := o[4:260]
		for j, v := range x {
			qs[j] = byte(int8(min(127, nearestInt(float32(iscale*v)))))
		}
		for j := 0; j < QKK/16; j++ {
			var sum int32
			for _, q := range qs[16*j : 16*j+16] {
				sum += int32(int8(q))
			}
			binary.LittleEndian.PutUint16(o[260+2*j:], uint16(int16(sum)))
		}
		binary.LittleEndian.PutUint32(o, math.Float32bits(1/iscale))
	}
}

// DequantizeRowQ8_K expands Q8_K blocks in src into dst (a multiple of 256 long).
func DequantizeRowQ8_K(dst []float32, src []byte) {
	nb := len(dst) / QKK
	_ = src[:nb*q8kBytes]
	for b := 0; b < nb; b++ {
		o := src[b*q8kBytes : (b+1)*q8kBytes]
		d := math.Float32frombits(binary.LittleEndian.Uint32(o))
		y := dst[b*QKK : (b+1)*QKK]
		for j, q := range o[4:260] {
			y[j] = d * float32(int8(q))
		}
	}
}
