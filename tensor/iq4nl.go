package tensor

import "encoding/binary"

// IQ4_NL: 32-element blocks of a float16 scale and 16 bytes of 4-bit
// indices into a fixed non-linear table of levels (ggml's kvalues_iq4nl),
// x = d·kvaluesIQ4NL[index]. Quantization is ggml's quantize_iq4_nl without
// an importance matrix (what llama.cpp's quantizer writes): weights x², the
// scale searched over 15 candidates, then the indices re-picked for the
// final scale.

const iq4nlBytes = BytesIQ4_NL

// kvaluesIQ4NL are IQ4_NL's 16 levels, ascending.
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// bestIndexIQ4NL returns the index of the level nearest to x, ties to the
// upper level, as ggml's best_index_int8 does.
func bestIndexIQ4NL(x float32) int {
	val := &kvaluesIQ4NL
	if x <= float32(val[0]) {
		return 0
	}
	if x >= float32(val[15]) {
		return 15
	}
	ml, mu := 0, 15
	for mu-ml > 1 {
		mav := (ml + mu) / 2
		if x < float32(val[mav]) {
			mu = mav
		} else {
			ml = mav
		}
	}
	if x-float32(val[mu-1]) < float32(val[mu])-x {
		return mu - 1
	}
	return mu
}

// QuantizeRowIQ4_NL quantizes src (a multiple of 32 long) into dst
// (len(src)/32·18 bytes) as ggml's quantize_iq4_nl does without an
// importance matrix.
func QuantizeRowIQ4_NL(dst []byte, src []float32) {
	nb := len(src) / QK
	_ = dst[:nb*iq4nlBytes]
	var L [QK]uint8
	for b := 0; b < nb; b++ {
		x := src[b*QK : (b+1)*QK]
		o := dst[b*iq4nlBytes : (b+1)*iq4nlBytes]
		var amax, mx float32
		for _, v := range x {
			if a := abs32(v); a > amax {
				amax, mx = a, v
			}
		}
		var d float32 // an all-zero block keeps d = 0 (its indices still pick the level nearest 0)
		if amax >= groupMaxEps {
			d = searchIQ4NLScale(x, mx)
		}
		binary.LittleEndian.PutUint16(o, F32ToF16(d))
		var id float32
		if d != 0 {
			id = 1 / d
		}
		for j, v := range x {
			L[j] = uint8(bestIndexIQ4NL(float32(id * v)))
		}
		for j := 0; j < QK/2; j++ {
			o[2+j] = L[j] | L[j+QK/2]<<4
		}
	}
}

// DequantizeRowIQ4_NL expands IQ4_NL blocks in src into dst (a multiple of 32 long).
func DequantizeRowIQ4_NL(dst []float32, src []byte) {
	nb := len(dst) / QK
	_ = src[:nb*iq4nlBytes]
	for b := 0; b < nb; b++ {
		o := src[b*iq4nlBytes : (b+1)*iq4nlBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(o))
		y := dst[b*QK : (b+1)*QK]
		for j, q := range o[2:iq4nlBytes] {
			y[j] = d * float32(kvaluesIQ4NL[q&15])
			y[j+QK/2] = d * float32(kvaluesIQ4NL[q>>4])
		}
	}
}

// searchIQ4NLScale is the scale search of ggml's quantize_row_iq4_nl_impl
// for one block whose value of largest magnitude is mx: start from
// -mx/kvalues[0], then try (itry + kvalues[0])/mx for itry in -7..7,
// keeping the x²-weighted least-squares scale of the best candidate.
func searchIQ4NLScale(x []float32, mx float32) float32 {
	const ntry = 7
	d := -mx / float32(kvaluesIQ4NL[0])
	id := 1 / d
	var sumqx, sumq2 float32
	for _, v := range x {
		q := float32(kvaluesIQ4NL[bestIndexIQ4NL(float32(id*v))])
		w := float32(v * v)
		sumqx += float32(float32(w*q) * v)
		sumq2 += float32(float32(w*q) * q)
	}
	d = 0
	if sumq2 > 0 {
		d = sumqx / sumq2
	}
	best := float32(d * sumqx)
	for itry := -ntry; itry <= ntry; itry++ {
		id = float32(itry+int(kvaluesIQ4NL[0])) / mx
		sumqx, sumq2 = 0, 0
		for _, v := range x {
			q := float32(kvaluesIQ4NL[bestIndexIQ4NL(float32(id*v))])
			w := float32(v * v)
			sumqx += float32(float32(w*q) * v)
			sumq2 += float32(float32(w*q) * q)
		}
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			d = sumqx / sumq2
			best = float32(d * sumqx)
		}
	}
	return d
}
