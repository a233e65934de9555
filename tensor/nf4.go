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

// NF4DQ is NF4 with QLoRA's double quantization of the block scales: a
// super-block of 256 weights holds a float16 scale d, then four 8-bit
// codes q (one per block of 64: the block's absmax is d·q/255), then the
// 128 bytes of 4-bit codes of the four blocks laid out as in NF4: 134 bytes
// per 256 weights, 4.19 bits per weight. QLoRA quantizes the scales of 256
// blocks together to 8-bit floats; herd's super-block is four blocks, so
// that rows of 256 (every LLaMA width) suffice. Like NF4, herd's own dtype.
const NF4DQ DType = 1<<16 + 1

// NF4DQBlock is the number of weights per NF4DQ super-block.
const NF4DQBlock = 4 * NF4Block

const nf4dqBytes = 2 + 4 + 4*NF4Block/2

func init() {
	dtypes[NF4DQ] = dtypeInfo{"NF4_DQ", NF4DQBlock, nf4dqBytes}
	dequantizers[NF4DQ] = DequantizeRowNF4DQ
	quantizers[NF4DQ] = QuantizeRowNF4DQ
	blockScales[NF4DQ] = []scaleField{{0, "d"}}
}

// QuantizeRowNF4DQ packs src (a multiple of 256 elements) into NF4DQ
// super-blocks.
func QuantizeRowNF4DQ(dst []byte, src []float32) {
	for b := 0; b < len(src)/NF4DQBlock; b++ {
		x := src[b*NF4DQBlock : (b+1)*NF4DQBlock]
		o := dst[b*nf4dqBytes : (b+1)*nf4dqBytes]
		var amax [4]float32
		var top float32
		for s := range 4 {
			for _, v := range x[s*NF4Block : (s+1)*NF4Block] {
				amax[s] = max(amax[s], float32(math.Abs(float64(v))))
			}
			top = max(top, amax[s])
		}
		dh := F32ToF16(top)
		binary.LittleEndian.PutUint16(o, dh)
		d := F16ToF32(dh)
		for s := range 4 {
			// the smallest code whose scale still covers the block's absmax
			// when it can, so that no weight falls outside [-1, 1]
			q := 0
			if d > 0 {
				q = int(math.Ceil(float64(amax[s]) / float64(d) * 255))
				q = min(255, max(0, q))
			}
			o[2+s] = byte(q)
			sc := d * float32(q) / 255
			inv := float32(0)
			if sc > 0 {
				inv = 1 / sc
			}
			blk := x[s*NF4Block : (s+1)*NF4Block]
			codes := o[6+s*NF4Block/2 : 6+(s+1)*NF4Block/2]
			for j := range NF4Block / 2 {
				codes[j] = nearestNF4(min(1, max(-1, blk[j]*inv))) | nearestNF4(min(1, max(-1, blk[j+NF4Block/2]*inv)))<<4
			}
		}
	}
}

// DequantizeRowNF4DQ expands NF4DQ super-blocks into dst (a multiple of
// 256 elements).
func DequantizeRowNF4DQ(dst []float32, src []byte) {
	for b := 0; b < len(dst)/NF4DQBlock; b++ {
		s := src[b*nf4dqBytes : (b+1)*nf4dqBytes]
		d := F16ToF32(binary.LittleEndian.Uint16(s))
		for k := range 4 {
			sc := d * float32(s[2+k]) / 255
			codes := s[6+k*NF4Block/2 : 6+(k+1)*NF4Block/2]
			y := dst[b*NF4DQBlock+k*NF4Block : b*NF4DQBlock+(k+1)*NF4Block]
			for j := range NF4Block / 2 {
				y[j] = nf4Levels[codes[j]&15] * sc
				y[j+NF4Block/2] = nf4Levels[codes[j]>>4] * sc
			}
		}
	}
}
