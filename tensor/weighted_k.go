package tensor

import "encoding/binary"

// The k-quants with an importance matrix (ggml's quantize_row_q*_K_impl):
// per super-block σ² = 2·Σx²/256, value weights qw[j]·sqrt(σ² + x[j]²)
// (Q6_K: qw[j] itself), sub-block scales by the weighted searches, then
// the sub-block scales themselves quantized by a search weighted with each
// sub-block's total weight (make_qp_quants, or make_qx_quants for Q3_K's
// signed scales) instead of the reference's scaling by the largest.

// makeQPQuants is ggml's make_qp_quants: non-negative levels 0..nmax for
// x ≈ scale·L, the scale searched over nine candidates around nmax/max
// for the least qw-weighted squared error, then refined by moving single
// levels. It returns the scale.
func makeQPQuants(x []float32, L []uint8, nmax int32, qw []float32) float32 {
	var mx float32
	for _, v := range x {
		mx = max(mx, v)
	}
	if mx < groupMaxEps {
		clear(L[:len(x)])
		return 0
	}
	fn := float32(nmax)
	iscale := fn / mx
	for i, v := range x {
		L[i] = uint8(nearestInt(float32(iscale * v)))
	}
	scale := 1 / iscale
	var best float32
	for i, v := range x {
		diff := v - float32(scale*float32(L[i]))
		best += float32(float32(qw[i]*diff) * diff)
	}
	for is := -4; is <= 4; is++ {
		if is == 0 {
			continue
		}
		isc := float32(float32(0.1*float32(is))+fn) / mx
		sc := 1 / isc
		var mse float32
		for i, v := range x {
			l := min(nmax, nearestInt(float32(isc*v)))
			diff := v - float32(sc*float32(l))
			mse += float32(float32(qw[i]*diff) * diff)
		}
		if mse < best {
			best, iscale = mse, isc
		}
	}
	var sumlx, suml2 float32
	for i, v := range x {
		l := min(nmax, nearestInt(float32(iscale*v)))
		L[i] = uint8(l)
		fl := float32(l)
		sumlx += float32(float32(qw[i]*v) * fl)
		suml2 += float32(float32(qw[i]*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w, li := qw[i], float32(L[i])
			slx := sumlx - float32(float32(w*v)*li)
			sl2 := suml2 - float32(float32(w*li)*li)
			if slx > 0 && sl2 > 0 {
				nl := min(nmax, nearestInt(float32(v*sl2)/slx))
				if nl != int32(L[i]) {
					fl := float32(nl)
					slx += float32(float32(w*v) * fl)
					sl2 += float32(float32(w*fl) * fl)
					if float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = uint8(nl)
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
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// superSigma2 is 2·Σx²/256 over one super-block.
func superSigma2(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return float32(2*s) / QKK
}

// quantizeK4W is the weighted Q4_K (nmax 15) / Q5_K (nmax 31) block.
func quantizeK4W(o []byte, x, qw []float32, L *[QKK]uint8, nmax int32) {
	sigma2 := superSigma2(x)
	var w [32]float32
	var laux [32]uint8
	var scales, mins, sw [QKK / 32]float32
	var Ls, Lm [QKK / 32]uint8
	for j := 0; j < QKK/32; j++ {
		blockWeights(w[:], qw[32*j:32*j+32], x[32*j:32*j+32], sigma2)
		var sum float32
		for _, v := range w {
			sum += v
		}
		sw[j] = sum
		scales[j] = makeQKX3Quants(x[32*j:32*j+32], w[:], L[32*j:32*j+32], laux[:], nmax, &mins[j], -0.9, 0.05, 36, false)
	}
	dBlock := makeQPQuants(scales[:], Ls[:], 63, sw[:])
	mBlock := makeQPQuants(mins[:], Lm[:], 63, sw[:])
	sc := o[4:16]
	clear(sc)
	for j := 0; j < QKK/32; j++ {
		ls, lm := min(63, Ls[j]), min(63, Lm[j])
		if j < 4 {
			sc[j] = ls
			sc[j+4] = lm
		} else {
			sc[j+4] = ls&15 | (lm&15)<<4
			sc[j-4] |= (ls >> 4) << 6
			sc[j] |= (lm >> 4) << 6
		}
	}
	binary.LittleEndian.PutUint16(o, F32ToF16(dBlock))
	binary.LittleEndian.PutUint16(o[2:], F32ToF16(mBlock))
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

// quantizeQ3KW is ggml's quantize_row_q3_K_impl for one super-block.
func quantizeQ3KW(o []byte, x, qw []float32, L *[QKK]int8) {
	sigma2 := superSigma2(x)
	var w [16]float32
	var scales, sw [QKK / 16]float32
	var Ls [QKK / 16]int8
	for j := 0; j < QKK/16; j++ {
		blockWeights(w[:], qw[16*j:16*j+16], x[16*j:16*j+16], sigma2)
		var sum float32
		for _, v := range w {
			sum += v
		}
		sw[j] = sum
		scales[j] = makeQXQuants(x[16*j:16*j+16], L[16*j:16*j+16], 4, w[:])
	}
	sc := o[96:108]
	clear(sc)
	dBlock := makeQXQuants(scales[:], Ls[:], 32, sw[:])
	for j := 0; j < QKK/16; j++ {
		l := int32(Ls[j])
		if j < 8 {
			sc[j] = byte(l & 15)
		} else {
			sc[j-8] |= byte(l&15) << 4
		}
		sc[8+j%4] |= byte(l>>4) << (2 * (j / 4))
	}
	binary.LittleEndian.PutUint16(o[108:], F32ToF16(dBlock))
	q3KLevels(o, x, L)
}

// quantizeQ2KW is ggml's quantize_row_q2_K_impl for one super-block
// (σ² = Σx²/256 here, without the other k-quants' factor 2).
func quantizeQ2KW(o []byte, x, qw []float32) {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	sigma2 := s / QKK
	var w [16]float32
	var L [QKK]uint8
	var laux [16]uint8
	var scales, mins, sw [QKK / 16]float32
	var Ls, Lm [QKK / 16]uint8
	for j := 0; j < QKK/16; j++ {
		blockWeights(w[:], qw[16*j:16*j+16], x[16*j:16*j+16], sigma2)
		for _, v := range w {
			sw[j] += v
		}
		scales[j] = makeQKX3Quants(x[16*j:16*j+16], w[:], L[16*j:16*j+16], laux[:], 3, &mins[j], -0.9, 0.05, 36, false)
	}
	dm := makeQPQuants(scales[:], Ls[:], 15, sw[:])
	mm := makeQPQuants(mins[:], Lm[:], 15, sw[:])
	binary.LittleEndian.PutUint16(o[80:], F32ToF16(dm))
	binary.LittleEndian.PutUint16(o[82:], F32ToF16(mm))
	dm = F16ToF32(binary.LittleEndian.Uint16(o[80:]))
	mm = F16ToF32(binary.LittleEndian.Uint16(o[82:]))
	for j := 0; j < QKK/16; j++ {
		o[j] = Ls[j] | Lm[j]<<4
	}
	for j := 0; j < QKK/16; j++ {
		d := float32(dm * float32(o[j]&15))
		if d == 0 {
			continue
		}
		m := float32(mm * float32(o[j]>>4))
		for i := 0; i < 16; i++ {
			L[16*j+i] = uint8(clampInt(nearestInt((x[16*j+i]+m)/d), 0, 3))
		}
	}
	pack2(o[16:80], L[:])
}

// kquantWeighted quantizes a row of k-quant type d with weights qw; it
// reports false for a type it does not handle.
func kquantWeighted(d DType, dst []byte, src, qw []float32) bool {
	nb := len(src) / QKK
	switch d {
	case Q6_K:
		quantizeQ6K(dst, src, qw)
	case Q4_K, Q5_K:
		var L [QKK]uint8
		for b := 0; b < nb; b++ {
			x, w := src[b*QKK:(b+1)*QKK], qw[b*QKK:(b+1)*QKK]
			if d == Q4_K {
				o := dst[b*q4kBytes : (b+1)*q4kBytes]
				quantizeK4W(o, x, w, &L, 15)
				packQ4K(o, &L)
			} else {
				o := dst[b*q5kBytes : (b+1)*q5kBytes]
				quantizeK4W(o, x, w, &L, 31)
				packQ5K(o, &L)
			}
		}
	case Q2_K:
		for b := 0; b < nb; b++ {
			quantizeQ2KW(dst[b*q2kBytes:(b+1)*q2kBytes], src[b*QKK:(b+1)*QKK], qw[b*QKK:(b+1)*QKK])
		}
	case Q3_K:
		var L [QKK]int8
		for b := 0; b < nb; b++ {
			quantizeQ3KW(dst[b*q3kBytes:(b+1)*q3kBytes], src[b*QKK:(b+1)*QKK], qw[b*QKK:(b+1)*QKK], &L)
		}
	default:
		return false
	}
	return true
}
