package gptq

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/herd-llm/herd/tensor"
)

// Sub is the grid of one sub-block of a row: the values
// Scale·(q − Zero) + Min for the integers q in 0..QMax, computed in single
// precision in that order, which is how each of llama.cpp's block formats
// (and the AutoGPTQ layout) dequantizes, so a weight GPTQ rounds onto the
// grid is stored exactly.
type Sub struct {
	Scale, Min float32
	Zero, QMax int32
}

// Value is the grid point of integer q.
func (s Sub) Value(q int32) float64 {
	return float64(float32(s.Scale*float32(q-s.Zero)) + s.Min)
}

// Nearest is the integer whose grid point is nearest x (halves to even, as
// torch.round), clamped to the grid.
func (s Sub) Nearest(x float64) int32 {
	if s.Scale == 0 || math.IsNaN(x) {
		return max(0, min(s.QMax, s.Zero))
	}
	v := math.RoundToEven((x-float64(s.Min))/float64(s.Scale)) + float64(s.Zero)
	return int32(max(0, min(float64(s.QMax), v)))
}

// A Grid is the set of values a quantization format lets one group of a
// row take, and how its parameters are chosen from the weights.
type Grid interface {
	// GroupSize is the number of columns sharing one Fit for rows of cols
	// columns.
	GroupSize(cols int) int
	// SubSize is the number of columns sharing one Sub for rows of cols
	// columns (it divides the group size).
	SubSize(cols int) int
	// Fit chooses the grids of one group of one row from x (its current
	// values, GroupSize long): it fills subs (GroupSize/SubSize) and
	// returns the group's header bytes, which Encode needs (nil when the
	// format has none beyond the subs).
	Fit(x []float32, subs []Sub) []byte
}

// Uniform is GPTQ's own quantizer (the reference implementation's
// Quantizer, the grid of the AutoGPTQ layout): Bits-bit integers, one
// scale and zero point per Group columns (-1: the whole row), symmetric
// (zero in the middle) or asymmetric (zero from the minimum). The scale is
// rounded to float16 before the zero point is derived from it, because the
// layout stores it as float16; the grid is then exactly what is stored.
type Uniform struct {
	Bits  int
	Group int
	Sym   bool
}

// GroupSize implements Grid.
func (u Uniform) GroupSize(cols int) int {
	if u.Group <= 0 {
		return cols
	}
	return u.Group
}

// SubSize implements Grid: one grid per group.
func (u Uniform) SubSize(cols int) int { return u.GroupSize(cols) }

// Fit implements Grid with GPTQ's find_params: the range of x widened to
// hold 0 (made symmetric about 0 when Sym), [-1, 1] for an all-zero group.
func (u Uniform) Fit(x []float32, subs []Sub) []byte {
	maxq := int32(1)<<u.Bits - 1
	var lo, hi float32
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	if u.Sym {
		hi = max(-lo, hi)
		if lo < 0 {
			lo = -hi
		}
	}
	if lo == 0 && hi == 0 {
		lo, hi = -1, 1
	}
	scale := tensor.F16ToF32(tensor.F32ToF16((hi - lo) / float32(maxq)))
	if scale == 0 { // a range below float16's smallest step
		scale = tensor.F16ToF32(1)
	}
	zero := (maxq + 1) / 2
	if !u.Sym {
		zero = int32(max(0, min(float64(maxq), math.RoundToEven(float64(-lo/scale)))))
	}
	subs[0] = Sub{Scale: scale, Zero: zero, QMax: maxq}
	return nil
}

// Block is the grid of one of llama.cpp's block formats (Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): a group is one block, and Fit runs ggml's
// reference quantizer on the block's current values and keeps its scales
// (GPTQ then chooses the integers). Encode packs the integers beside them.
type Block struct{ Type tensor.DType }

// NewBlock returns the grid of dt, or an error for a type GPTQ cannot
// write.
func NewBlock(dt tensor.DType) (Block, error) {
	if _, ok := blockSubs[dt]; !ok {
		return Block{}, fmt.Errorf("gptq: no grid for %s (have Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", dt)
	}
	return Block{dt}, nil
}

// GroupSize implements Grid: one block.
func (b Block) GroupSize(int) int { return b.Type.BlockSize() }

// SubSize implements Grid.
func (b Block) SubSize(int) int { return blockSubs[b.Type] }

// blockSubs is the sub-block length of each supported type.
var blockSubs = map[tensor.DType]int{
	tensor.Q4_0: 32, tensor.Q4_1: 32, tensor.Q5_0: 32, tensor.Q5_1: 32, tensor.Q8_0: 32,
	tensor.Q2_K: 16, tensor.Q3_K: 16, tensor.Q4_K: 32, tensor.Q5_K: 32, tensor.Q6_K: 16,
}

// Fit implements Grid.
func (b Block) Fit(x []float32, subs []Sub) []byte {
	o := make([]byte, b.Type.BlockBytes())
	if err := tensor.Quantize(b.Type, o, x); err != nil {
		panic(err) // x is one whole block of a supported type
	}
	f16 := func(off int) float32 { return tensor.F16ToF32(binary.LittleEndian.Uint16(o[off:])) }
	switch b.Type {
	case tensor.Q4_0:
		subs[0] = Sub{Scale: f16(0), Zero: 8, QMax: 15}
	case tensor.Q4_1:
		subs[0] = Sub{Scale: f16(0), Min: f16(2), QMax: 15}
	case tensor.Q5_0:
		subs[0] = Sub{Scale: f16(0), Zero: 16, QMax: 31}
	case tensor.Q5_1:
		subs[0] = Sub{Scale: f16(0), Min: f16(2), QMax: 31}
	case tensor.Q8_0:
		subs[0] = Sub{Scale: f16(0), Zero: 128, QMax: 255}
	case tensor.Q4_K, tensor.Q5_K:
		d, dmin := f16(0), f16(2)
		qmax := int32(15)
		if b.Type == tensor.Q5_K {
			qmax = 31
		}
		for j := range 8 {
			s, m := scaleMinK4(j, o[4:16])
			subs[j] = Sub{Scale: float32(d * float32(s)), Min: -float32(dmin * float32(m)), QMax: qmax}
		}
	case tensor.Q6_K:
		d := f16(208)
		for j := range 16 {
			subs[j] = Sub{Scale: float32(d * float32(int8(o[192+j]))), Zero: 32, QMax: 63}
		}
	case tensor.Q2_K:
		d, dmin := f16(80), f16(82)
		for j := range 16 {
			subs[j] = Sub{Scale: float32(d * float32(o[j]&15)), Min: -float32(dmin * float32(o[j]>>4)), QMax: 3}
		}
	case tensor.Q3_K:
		d := f16(108)
		for j := range 16 {
			subs[j] = Sub{Scale: float32(d * float32(q3Scale(o[96:108], j))), Zero: 4, QMax: 7}
		}
	}
	return o
}

// q3Scale decodes the six-bit sub-block scale j of a Q3_K block, biased
// by 32.
func q3Scale(sc []byte, j int) int32 {
	var lo byte
	if j < 8 {
		lo = sc[j] & 15
	} else {
		lo = sc[j-8] >> 4
	}
	hi := sc[8+j%4] >> (2 * (j / 4)) & 3
	return int32(lo|hi<<4) - 32
}

// pack2 packs 256 two-bit values as the k-quants do: byte l of each
// 32-byte run holds values l, l+32, l+64 and l+96 of its 128.
func pack2(qs []byte, q func(i int) byte) {
	for j := 0; j < 256; j += 128 {
		for l := range 32 {
			qs[j/4+l] = q(j+l) | q(j+l+32)<<2 | q(j+l+64)<<4 | q(j+l+96)<<6
		}
	}
}

// scaleMinK4 decodes the six-bit scale and minimum of sub-block j of a
// Q4_K/Q5_K block's 12 packed scale bytes (ggml's get_scale_min_k4).
func scaleMinK4(j int, q []byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&15 | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// Encode writes one block of b's type into dst from its header (Fit's
// result, whose scales it keeps) and the integers q (one block long).
func (b Block) Encode(dst, header []byte, q []int32) {
	copy(dst, header)
	switch b.Type {
	case tensor.Q4_0, tensor.Q4_1:
		o := dst[2:]
		if b.Type == tensor.Q4_1 {
			o = dst[4:]
		}
		for j := range 16 {
			o[j] = byte(q[j]) | byte(q[j+16])<<4
		}
	case tensor.Q5_0, tensor.Q5_1:
		hOff := 2
		if b.Type == tensor.Q5_1 {
			hOff = 4
		}
		var qh uint32
		for j := range 16 {
			q0, q1 := uint32(q[j]), uint32(q[j+16])
			dst[hOff+4+j] = byte(q0&15 | (q1&15)<<4)
			qh |= (q0>>4&1)<<j | (q1>>4&1)<<(j+16)
		}
		binary.LittleEndian.PutUint32(dst[hOff:], qh)
	case tensor.Q8_0:
		for j := range 32 {
			dst[2+j] = byte(int8(q[j] - 128))
		}
	case tensor.Q4_K:
		o := dst[16:]
		for j := 0; j < 256; j += 64 {
			for l := range 32 {
				o[j/2+l] = byte(q[j+l]) | byte(q[j+l+32])<<4
			}
		}
	case tensor.Q2_K:
		pack2(dst[16:80], func(i int) byte { return byte(q[i]) })
	case tensor.Q3_K:
		hm := dst[:32]
		clear(hm)
		for j := range 256 {
			if q[j] > 3 {
				hm[j%32] |= 1 << (j / 32)
			}
		}
		pack2(dst[32:96], func(i int) byte { return byte(q[i] & 3) })
	case tensor.Q5_K:
		encodeQ5K(dst, q)
	case tensor.Q6_K:
		encodeQ6K(dst, q)
	}
}

// encodeQ5K packs the 5-bit integers of a Q5_K block (fifth bits in qh).
func encodeQ5K(dst []byte, q []int32) {
	qh, ql := dst[16:48], dst[48:176]
	clear(qh)
	m1, m2 := byte(1), byte(2)
	for n := 0; n < 256; n += 64 {
		for j := range 32 {
			l1, l2 := byte(q[n+j]), byte(q[n+j+32])
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

// encodeQ6K packs the 6-bit integers of a Q6_K block (low nibbles in ql,
// high two bits in qh).
func encodeQ6K(dst []byte, q []int32) {
	ql, qh := dst[:128], dst[128:192]
	for j := 0; j < 256; j += 128 {
		for l := range 32 {
			q1, q2, q3, q4 := byte(q[j+l]), byte(q[j+l+32]), byte(q[j+l+64]), byte(q[j+l+96])
			ql[j/2+l] = q1&15 | (q3&15)<<4
			ql[j/2+l+32] = q2&15 | (q4&15)<<4
			qh[j/4+l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
		}
	}
}

// Bytes encodes a result quantized onto grid b as b's type: Rows rows of
// Cols elements, as GGUF stores a weight.
func (b Block) Bytes(res *Result) ([]byte, error) {
	if res.Group != b.Type.BlockSize() {
		return nil, fmt.Errorf("gptq: a result in groups of %d is not %s", res.Group, b.Type)
	}
	rb, err := b.Type.RowBytes(res.Cols)
	if err != nil {
		return nil, err
	}
	out := make([]byte, rb*res.Rows)
	bb, nb := b.Type.BlockBytes(), res.Cols/res.Group
	for r := range res.Rows {
		for k := range nb {
			h := res.Headers[r*nb+k]
			if len(h) != bb {
				return nil, fmt.Errorf("gptq: row %d block %d has no %s header", r, k, b.Type)
			}
			o := out[r*rb+k*bb : r*rb+(k+1)*bb]
			b.Encode(o, h, res.Q[r*res.Cols+k*res.Group:r*res.Cols+(k+1)*res.Group])
		}
	}
	return out, nil
}
