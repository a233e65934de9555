package tensor

import (
	"encoding/binary"
	"math"
)

// NF4 is QLoRA's 4-bit NormalFloat (Dettmers et al. 2023): blocks of 64
// weights, each stored as the index of the nearest of 16 levels placed at
// quantiles of a standard normal distribution, times the block's absolute
// maximum. A block is the float16 absmax then 32 bytes of codes, two per
// byte (element j in the low nibble of byte j, element j+32 in the high
// one): 34 bytes for 64 weights, 4.25 bits per weight. It is herd's own
// dtype, for a frozen base in QLoRA fine-tuning; the value is outside
// ggml's type ids and never written to a GGUF file.
const NF4 DType = 1 << 16

// NF4Block is the number of weights per NF4 block.
const NF4Block = 64

// nf4Levels are the 16 NormalFloat levels of the QLoRA paper (Appendix E,
// and bitsandbytes' NF4 table), ascending, with an exact 0.
var nf4Levels = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

func init() {
	dtypes[NF4] = dtypeInfo{"NF4", NF4Block, 2 + NF4Block/2}
	dequantizers[NF4] = DequantizeRowNF4
	quantizers[NF4] = QuantizeRowNF4
	blockScales[NF4] = []scaleField{{0, "d"}}
}

// nearestNF4 is the index of the level nearest x (x in [-1, 1]).
func nearestNF4(x float32) byte {
	lo, hi := 0, 15
	for hi-lo > 1 { // binary search for the bracketing pair
		mid := (lo + hi) / 2
		if x < nf4Levels[mid] {
			hi = mid
		} else {
			lo = mid
		}
	}
	if x-nf4Levels[lo] <= nf4Levels[hi]-x {
		return byte(lo)
	}
	return byte(hi)
}

// QuantizeRowNF4 packs src (a multiple of 64 elements) into NF4 blocks.
func QuantizeRowNF4(dst []byte, src []float32) {
	const bb = 2 + NF4Block/2
	for b := 0; b < len(src)/NF4Block; b++ {
		x := src[b*NF4Block : (b+1)*NF4Block]
		o := dst[b*bb : (b+1)*bb]
		var amax float32
		for _, v := range x {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := F32ToF16(amax)
		binary.LittleEndian.PutUint16(o, d)
		inv := float32(0)
		if ad := F16ToF32(d); ad > 0 {
			inv = 1 / ad
		}
		for j := range NF4Block / 2 {
			o[2+j] = nearestNF4(x[j]*inv) | nearestNF4(x[j+NF4Block/2]*inv)<<4
		}
	}
}

// DequantizeRowNF4 expands NF4 blocks into dst (a multiple of 64 elements).
func DequantizeRowNF4(dst []float32, src []byte) {
	const bb = 2 + NF4Block/2
	for b := 0; b < len(dst)/NF4Block; b++ {
		s := src[b*bb : (b+1)*bb]
		d := F16ToF32(binary.LittleEndian.Uint16(s))
		y := dst[b*NF4Block : (b+1)*NF4Block]
		for j := range NF4Block / 2 {
			y[j] = nf4Levels[s[2+j]&15] * d
			y[j+NF4Block/2] = nf4Levels[s[2+j]>>4] * d
		}
	}
}
