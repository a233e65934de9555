package gptq

import (
	"encoding/binary"
	"fmt"

	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/tensor"
)

// The AutoGPTQ / GPTQ-for-LLaMA checkpoint layout stores each quantized
// nn.Linear (weight Out×In) of a Hugging Face model as four tensors:
//
//	qweight  int32 [In·bits/32, Out]  the integers, packed down each column:
//	                                  integer c of output o is bits
//	                                  c·bits … c·bits+bits-1 of the
//	                                  little-endian bit stream of column o
//	                                  (for 2, 4 and 8 bits: word c/(32/bits),
//	                                  shift bits·(c mod 32/bits); the 3-bit
//	                                  packing of GPTQ-for-LLaMA is the same
//	                                  stream across three words)
//	qzeros   int32 [groups, Out·bits/32]  zero points, packed along each row
//	                                  the same way; in the original ("gptq",
//	                                  v1) format stored minus one
//	scales   float16 [groups, Out]
//	g_idx    int32 [In]               the group of each input column
//
// and the weight is w[o][c] = scales[g][o]·(q[o][c] − zero[g][o]) with
// g = g_idx[c]. quantize_config.json gives bits, group_size, sym, desc_act.

// QLinear is one linear layer in the AutoGPTQ layout, unpacked.
type QLinear struct {
	Out, In, Bits int
	GIdx          []int32   // In: the group of each input column
	Q             []int32   // Out×In integers, row-major as the weight
	Scales        []float32 // Groups×Out (float16 values)
	Zeros         []int32   // Groups×Out: the true zero points
}

// Groups is the number of groups (rows of scales).
func (q *QLinear) Groups() int { return len(q.Scales) / q.Out }

// Weights dequantizes the layer into Out×In floats, computed as the
// grids' Sub.Value (single precision, scale·(q − zero)).
func (q *QLinear) Weights() []float32 {
	w := make([]float32, q.Out*q.In)
	for o := range q.Out {
		for c := range q.In {
			g := int(q.GIdx[c])
			s := Sub{Scale: q.Scales[g*q.Out+o], Zero: q.Zeros[g*q.Out+o]}
			w[o*q.In+c] = float32(s.Value(q.Q[o*q.In+c]))
		}
	}
	return w
}

// FromResult is the AutoGPTQ form of a matrix GPTQ quantized onto a
// Uniform grid of bits bits.
func FromResult(res *Result, bits int) (*QLinear, error) {
	if res.Sub != res.Group {
		return nil, fmt.Errorf("gptq: the AutoGPTQ layout has one grid per group, the result %d per group", res.Group/res.Sub)
	}
	groups := res.Cols / res.Group
	q := &QLinear{Out: res.Rows, In: res.Cols, Bits: bits, GIdx: make([]int32, res.Cols), Q: res.Q,
		Scales: make([]float32, groups*res.Rows), Zeros: make([]int32, groups*res.Rows)}
	for c := range q.GIdx {
		q.GIdx[c] = int32(c / res.Group)
	}
	for o := range res.Rows {
		for g := range groups {
			s := res.Subs[o*groups+g]
			if s.Min != 0 || s.QMax != int32(1)<<bits-1 {
				return nil, fmt.Errorf("gptq: row %d group %d is not a %d-bit uniform grid", o, g, bits)
			}
			q.Scales[g*res.Rows+o], q.Zeros[g*res.Rows+o] = s.Scale, s.Zero
		}
	}
	return q, nil
}

// packStream packs n values of bits bits each (value k at bit k·bits of a
// little-endian stream) into words; get returns value k.
func packStream(n, bits int, get func(k int) uint32) []uint32 {
	words := make([]uint32, n*bits/32)
	for k := range n {
		v, off := uint64(get(k)&(1<<bits-1)), k*bits
		w, sh := off/32, off%32
		words[w] |= uint32(v << sh)
		if sh+bits > 32 {
			words[w+1] |= uint32(v >> (32 - sh))
		}
	}
	return words
}

// unpackStream is packStream's inverse: value k of a stream.
func unpackStream(words func(w int) uint32, k, bits int) int32 {
	off := k * bits
	w, sh := off/32, off%32
	v := uint64(words(w)) >> sh
	if sh+bits > 32 {
		v |= uint64(words(w+1)) << (32 - sh)
	}
	return int32(v & (1<<bits - 1))
}

func checkBits(bits int) error {
	switch bits {
	case 2, 3, 4, 8:
		return nil
	}
	return fmt.Errorf("gptq: %d bits: the AutoGPTQ layout has 2, 3, 4 and 8", bits)
}

// Tensors packs the layer as prefix.qweight, .qzeros, .scales and .g_idx;
// v2 stores the zero points as they are, v1 minus one.
func (q *QLinear) Tensors(prefix string, v2 bool) ([]safetensors.Tensor, error) {
	if err := checkBits(q.Bits); err != nil {
		return nil, err
	}
	if q.In*q.Bits%32 != 0 || q.Out*q.Bits%32 != 0 {
		return nil, fmt.Errorf("gptq: %s: %d×%d does not pack into 32-bit words at %d bits", prefix, q.Out, q.In, q.Bits)
	}
	groups := q.Groups()
	qw := make([]uint32, q.In*q.Bits/32*q.Out)
	for o := range q.Out {
		col := packStream(q.In, q.Bits, func(c int) uint32 { return uint32(q.Q[o*q.In+c]) })
		for w, v := range col {
			qw[w*q.Out+o] = v
		}
	}
	off := int32(1)
	if v2 {
		off = 0
	}
	var qz []uint32
	for g := range groups {
		qz = append(qz, packStream(q.Out, q.Bits, func(o int) uint32 { return uint32(q.Zeros[g*q.Out+o] - off) })...)
	}
	sc, err := safetensors.FromFloat32(prefix+".scales", safetensors.F16, []int64{int64(groups), int64(q.Out)}, q.Scales)
	if err != nil {
		return nil, err
	}
	gi := make([]uint32, len(q.GIdx))
	for i, v := range q.GIdx {
		gi[i] = uint32(v)
	}
	return []safetensors.Tensor{
		i32Tensor(prefix+".qweight", []int64{int64(q.In * q.Bits / 32), int64(q.Out)}, qw),
		i32Tensor(prefix+".qzeros", []int64{int64(groups), int64(q.Out * q.Bits / 32)}, qz),
		sc,
		i32Tensor(prefix+".g_idx", []int64{int64(q.In)}, gi),
	}, nil
}

func i32Tensor(name string, shape []int64, v []uint32) safetensors.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return safetensors.Tensor{Name: name, DType: safetensors.I32, Shape: shape, Data: b}
}

// ReadQLinear unpacks the layer prefix of f (bits per integer; v2: zero
// points stored as they are), checking every shape against out×in and
// every g_idx against the number of groups.
func ReadQLinear(f *safetensors.File, prefix string, out, in, bits int, v2 bool) (*QLinear, error) {
	if err := checkBits(bits); err != nil {
		return nil, err
	}
	get := func(suffix string, dt safetensors.DType, dims ...int64) (*safetensors.Tensor, error) {
		t, ok := f.Tensor(prefix + suffix)
		if !ok {
			return nil, fmt.Errorf("%s: no tensor %s%s", f.Path, prefix, suffix)
		}
		if t.DType != dt || len(t.Shape) != len(dims) {
			return nil, fmt.Errorf("%s: %s%s is %s %v, want %s of %d dimensions", f.Path, prefix, suffix, t.DType, t.Shape, dt, len(dims))
		}
		for i, d := range dims {
			if d >= 0 && t.Shape[i] != d {
				return nil, fmt.Errorf("%s: %s%s has shape %v, want %v (-1: any)", f.Path, prefix, suffix, t.Shape, dims)
			}
		}
		return t, nil
	}
	if in*bits%32 != 0 || out*bits%32 != 0 {
		return nil, fmt.Errorf("%s: %s: %d×%d does not pack at %d bits", f.Path, prefix, out, in, bits)
	}
	sc, err := get(".scales", safetensors.F16, -1, int64(out))
	if err != nil {
		return nil, err
	}
	groups := int(sc.Shape[0])
	if groups <= 0 || groups > in {
		return nil, fmt.Errorf("%s: %s.scales: %d groups for %d columns", f.Path, prefix, groups, in)
	}
	qw, err := get(".qweight", safetensors.I32, int64(in*bits/32), int64(out))
	if err != nil {
		return nil, err
	}
	qz, err := get(".qzeros", safetensors.I32, int64(groups), int64(out*bits/32))
	if err != nil {
		return nil, err
	}
	gi, err := get(".g_idx", safetensors.I32, int64(in))
	if err != nil {
		return nil, err
	}
	q := &QLinear{Out: out, In: in, Bits: bits, GIdx: make([]int32, in), Q: make([]int32, out*in),
		Zeros: make([]int32, groups*out)}
	if q.Scales, err = sc.Float32(); err != nil {
		return nil, err
	}
	word := func(t *safetensors.Tensor, i int) uint32 { return binary.LittleEndian.Uint32(t.Data[4*i:]) }
	for c := range in {
		g := int32(word(gi, c))
		if g < 0 || int(g) >= groups {
			return nil, fmt.Errorf("%s: %s.g_idx[%d] = %d, outside the %d groups", f.Path, prefix, c, g, groups)
		}
		q.GIdx[c] = g
	}
	for o := range out {
		for c := range in {
			q.Q[o*in+c] = unpackStream(func(w int) uint32 { return word(qw, w*out+o) }, c, bits)
		}
	}
	off := int32(1)
	if v2 {
		off = 0
	}
	rowWords := out * bits / 32
	for g := range groups {
		for o := range out {
			q.Zeros[g*out+o] = unpackStream(func(w int) uint32 { return word(qz, g*rowWords+w) }, o, bits) + off
		}
	}
	return q, nil
}

// GGUFType returns the llama.cpp type that holds the layer exactly, if
// one does: groups of 32 contiguous columns with the zero point in the
// middle at 4, 5 (not in this layout) or 8 bits are Q4_0 / Q8_0 blocks.
func (q *QLinear) GGUFType() (tensor.DType, bool) {
	var dt tensor.DType
	switch q.Bits {
	case 4:
		dt = tensor.Q4_0
	case 8:
		dt = tensor.Q8_0
	default:
		return 0, false
	}
	mid := int32(1) << (q.Bits - 1)
	if q.In%32 != 0 {
		return 0, false
	}
	for c, g := range q.GIdx {
		if int(g) != c/32 {
			return 0, false
		}
	}
	for _, z := range q.Zeros {
		if z != mid {
			return 0, false
		}
	}
	return dt, true
}

// Encode writes the layer as dt's blocks when GGUFType says it fits,
// otherwise as F16 of the dequantized weights.
func (q *QLinear) Encode() (tensor.DType, []byte, error) {
	dt, exact := q.GGUFType()
	if !exact {
		w := q.Weights()
		out := make([]byte, 2*len(w))
		if err := tensor.Quantize(tensor.F16, out, w); err != nil {
			return 0, nil, err
		}
		return tensor.F16, out, nil
	}
	b := Block{dt}
	bb := dt.BlockBytes()
	rb := q.In / 32 * bb
	out := make([]byte, rb*q.Out)
	hdr := make([]byte, bb)
	for o := range q.Out {
		for k := range q.In / 32 {
			binary.LittleEndian.PutUint16(hdr, tensor.F32ToF16(q.Scales[k*q.Out+o]))
			b.Encode(out[o*rb+k*bb:o*rb+(k+1)*bb], hdr, q.Q[o*q.In+k*32:o*q.In+k*32+32])
		}
	}
	return dt, out, nil
}
