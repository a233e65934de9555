package kernels

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/herd-llm/herd/tensor"
)

// Quantized weights are multiplied as ggml multiplies them: each row of X is
// first quantized to the activation format the weight type pairs with, and
// every block product is an exact integer sum scaled by the block scales.
//
//	weights                    activations
//	Q8_0, IQ4_NL               Q8_0
//	Q4_0, Q5_0                 Q8_0 + an aux record per block (k·Σq and the scale)
//	Q4_1, Q5_1                 Q8_0 + s = d·Σq rounded to float16 (ggml's Q8_1)
//	Q2_K … Q6_K                Q8_K (256 per block, float32 scale, sums of 16)
//
// One kernel per weight type computes a run of weight rows against one to
// four activation rows, and the arithmetic of each (weight row, activation
// row) pair is the same whatever the number of activation rows in the call,
// so a row of Y does not depend on the other rows of X (batch invariance).

// Activation layouts.
const (
	actQ8_0 = iota // Q8_0 blocks (34 bytes)
	actAux         // Q8_0 blocks, and per block 36 aux bytes: k·Σq in the first of eight int32 lanes (the others zero), then the scale as float32
	actQ8_1        // Q8_0 blocks, and per block 4 aux bytes: float16(d·Σq) as float32
	actQ8_K        // Q8_K blocks (292 bytes)
)

// Byte sizes of the blocks the kernels read (package tensor's).
const (
	q4_1Bytes  = tensor.BytesQ4_1
	q5_0Bytes  = tensor.BytesQ5_0
	q5_1Bytes  = tensor.BytesQ5_1
	iq4nlBytes = tensor.BytesIQ4_NL
	q2kBytes   = tensor.BytesQ2_K
	q3kBytes   = tensor.BytesQ3_K
	q4kBytes   = tensor.BytesQ4_K
	q5kBytes   = tensor.BytesQ5_K
	q6kBytes   = tensor.BytesQ6_K
	q8kBytes   = tensor.BytesQ8_K
	qkk        = tensor.QKK
	auxBytes   = 4 * q4AuxInts
)

// quantKernel computes y[t·ystride+r] = W[r]·X[t] for r < rows and t < nt
// (1 <= nt <= 4): rows weight rows at w, nt activation rows of nb blocks at
// x (row stride xstride bytes) with their aux records at aux (row stride
// auxstride bytes; unused by layouts without aux).
type quantKernel func(y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb int, nt int)

// qformat describes how MatMul multiplies one quantized weight dtype.
type qformat struct {
	block  int // elements per weight block: 32 or 256
	wbytes int // bytes per weight block
	act    int // activation layout
	auxK   int32
	kern   quantKernel // the dispatched kernel
	gen    quantKernel // its pure-Go twin
	// tile multiplies eight activation rows at once (tile.go), where the
	// path has a tile kernel computing exactly what kern computes (nil:
	// none); tileGen is its pure-Go twin.
	tile, tileGen tileKernel
	// plain is the plain format of an eight-row layout (tensor.Q4_0x8:
	// Q4_0), zero for the plain formats. The kernels of a packed format
	// are called on whole groups of eight rows, and the rows after the
	// last group, which keep the plain layout, go to plain's kernels.
	plain tensor.DType
	// asmPacked is set by a path with assembly kernels for this packed
	// format: only then is packing worth the copy (PackedLayout).
	asmPacked bool
}

// unit is the number of rows the kernels of f must be given together
// (except the rows after the last whole unit).
func (f *qformat) unit() int {
	if f.plain != 0 {
		return tensor.PackGroup
	}
	return 1
}

// xbytes returns the bytes of one quantized activation row of nb blocks,
// and of its aux records.
func (f *qformat) xbytes(nb int) (xrow, arow int) {
	switch f.act {
	case actQ8_K:
		return nb * q8kBytes, 0
	case actAux:
		return nb * q8Bytes, nb * auxBytes
	case actQ8_1:
		return nb * q8Bytes, nb * 4
	}
	return nb * q8Bytes, 0
}

// formats lists the quantized dtypes MatMul multiplies; init in
// quant_generic.go and dispatch_amd64.go fills the kernels.
var formats = map[tensor.DType]*qformat{
	tensor.Q8_0:   {block: qk, wbytes: q8Bytes, act: actQ8_0},
	tensor.Q4_0:   {block: qk, wbytes: q4Bytes, act: actAux, auxK: 8},
	tensor.Q5_0:   {block: qk, wbytes: q5_0Bytes, act: actAux, auxK: 16},
	tensor.Q4_1:   {block: qk, wbytes: q4_1Bytes, act: actQ8_1},
	tensor.Q5_1:   {block: qk, wbytes: q5_1Bytes, act: actQ8_1},
	tensor.IQ4_NL: {block: qk, wbytes: iq4nlBytes, act: actQ8_0},
	tensor.Q2_K:   {block: qkk, wbytes: q2kBytes, act: actQ8_K},
	tensor.Q3_K:   {block: qkk, wbytes: q3kBytes, act: actQ8_K},
	tensor.Q4_K:   {block: qkk, wbytes: q4kBytes, act: actQ8_K},
	tensor.Q5_K:   {block: qkk, wbytes: q5kBytes, act: actQ8_K},
	tensor.Q6_K:   {block: qkk, wbytes: q6kBytes, act: actQ8_K},
	tensor.Q4_0x8: {block: qk, wbytes: q4Bytes, act: actAux, auxK: 8, plain: tensor.Q4_0},
	tensor.Q8_0x8: {block: qk, wbytes: q8Bytes, act: actQ8_0, plain: tensor.Q8_0},
	tensor.Q4_Kx8: {block: qkk, wbytes: tensor.BytesQ4_Kx8 / tensor.PackGroup, act: actQ8_K, plain: tensor.Q4_K},
	tensor.Q6_Kx8: {block: qkk, wbytes: q6kBytes, act: actQ8_K, plain: tensor.Q6_K},
}

// PackedLayout returns the in-memory layout (tensor.Q4_0x8, Q8_0x8) in
// which the active CPU path multiplies weights of dtype dt fastest, and
// whether there is one; a model converts its matrices with
// tensor.PackRows8 once, at load (llama.Model.PackForInference).
func PackedLayout(dt tensor.DType) (tensor.DType, bool) {
	if dt == tensor.F16 {
		return tensor.F16x32, f16x32K != nil
	}
	p, ok := tensor.Packed(dt)
	if !ok || formats[p] == nil || !formats[p].asmPacked {
		return 0, false
	}
	return p, true
}

// actBuf holds nt rows of X quantized for one weight format.
type actBuf struct {
	xq, aux    []byte
	xrow, arow int
}

// quantizeActs quantizes the nt rows of x (cols each) into the layout of f,
// using pooled buffers that release puts back.
func quantizeActs(f *qformat, x []float32, cols, nt int) (a actBuf, release func()) {
	nb := cols / f.block
	a.xrow, a.arow = f.xbytes(nb)
	xp := byteScratch.get(nt * a.xrow)
	a.xq = *xp
	var ap *[]byte
	if a.arow > 0 {
		ap = byteScratch.get(nt * a.arow)
		a.aux = *ap
	}
	release = func() {
		byteScratch.put(xp)
		if ap != nil {
			byteScratch.put(ap)
		}
	}
	// quantizing is a few operations an element: chunks of 2^16 elements
	// are worth sharing
	ParallelFor(nt, max(1, (1<<16)/max(cols, 1)), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			xr := x[t*cols : (t+1)*cols]
			xq := a.xq[t*a.xrow : (t+1)*a.xrow]
			switch f.act {
			case actQ8_K:
				quantQ8_KImpl(xq, xr)
			case actQ8_0:
				quantQ8_0Impl(xq, xr)
			case actAux:
				quantQ8_0Impl(xq, xr)
				auxPrep(a.aux[t*a.arow:(t+1)*a.arow], xq, f.auxK)
			case actQ8_1:
				quantQ8_0Impl(xq, xr)
				q8_1Prep(a.aux[t*a.arow:(t+1)*a.arow], xq, xr)
			}
		}
	})
	return a, release
}

// auxPrep fills the aux records (actAux) of the Q8_0 activation blocks xq:
// k·Σq in the first of eight int32 lanes, the other seven zero, then the
// block's scale as float32.
func auxPrep(aux []byte, xq []byte, k int32) {
	for b := range len(xq) / q8Bytes {
		blk := xq[b*q8Bytes : (b+1)*q8Bytes]
		var s int32
		for _, q := range blk[2:] {
			s += int32(int8(q))
		}
		a := aux[b*auxBytes : (b+1)*auxBytes]
		clear(a[4:32])
		binary.LittleEndian.PutUint32(a, uint32(k*s))
		binary.LittleEndian.PutUint32(a[32:], math.Float32bits(tensor.F16ToF32(binary.LittleEndian.Uint16(blk))))
	}
}

// q8_1Prep fills the aux values (actQ8_1) of the Q8_0 activation blocks xq
// quantized from x: s = d·Σq with d = amax/127 unrounded, stored rounded to
// float16 as ggml's block_q8_1 does, widened to float32.
func q8_1Prep(aux []byte, xq []byte, x []float32) {
	for b := range len(xq) / q8Bytes {
		var amax float32
		for _, v := range x[b*qk : (b+1)*qk] {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		var s int32
		for _, q := range xq[b*q8Bytes+2 : (b+1)*q8Bytes] {
			s += int32(int8(q))
		}
		v := tensor.F16ToF32(tensor.F32ToF16(amax / 127 * float32(s)))
		binary.LittleEndian.PutUint32(aux[4*b:], math.Float32bits(v))
	}
}

// quantRowBlock is the number of weight rows a batched product keeps in
// cache while every row of X passes over them.
const quantRowBlock = 16

// matMulQuant computes Y = X·Wᵀ for quantized weights of format f.
func matMulQuant(f *qformat, y []float32, w []byte, rows, cols int, x []float32, nt int) {
	nb := cols / f.block
	wrow := nb * f.wbytes
	a, release := quantizeActs(f, x, cols, nt)
	defer release()
	// ParallelFor hands out units of rows (eight for a packed format)
	u := f.unit()
	units := (rows + u - 1) / u
	span := func(lo, hi int) (int, int) { return lo * u, min(hi*u, rows) }
	if nt == 1 {
		ParallelFor(units, max(1, matVecGrain(cols)/u), func(lo, hi int) {
			lo, hi = span(lo, hi)
			f.kern(y[lo:hi], 0, w[lo*wrow:hi*wrow], hi-lo, a.xq, 0, a.aux, 0, nb, 1)
		})
		return
	}
	// eight activation rows at a time through the tile kernel, where the
	// format has one, the rest four at a time
	ntile := 0
	var tiles []byte
	if f.tile != nil && nt >= tileRows {
		ntile = nt / tileRows
		tp := byteScratch.get(ntile * nb * tileBlock)
		defer byteScratch.put(tp)
		tiles = *tp
		ParallelFor(ntile, max(1, (1<<16)/max(cols*tileRows, 1)), func(lo, hi int) {
			for g := lo; g < hi; g++ {
				packTile(tiles[g*nb*tileBlock:], a, g*tileRows, nb, f.act)
			}
		})
	}
	ParallelFor(units, max(quantRowBlock, matGrain/max(cols*nt, 1))/u, func(lo, hi int) {
		lo, hi = span(lo, hi)
		for r0 := lo; r0 < hi; r0 += quantRowBlock {
			r1 := min(hi, r0+quantRowBlock)
			if ntile > 0 {
				f.tile(y[r0:], rows, w[r0*wrow:r1*wrow], r1-r0, tiles, nb, ntile)
			}
			for t := ntile * tileRows; t < nt; t += 4 {
				n := min(4, nt-t)
				var aux []byte
				if a.aux != nil {
					aux = a.aux[t*a.arow:]
				}
				f.kern(y[t*rows+r0:], rows, w[r0*wrow:r1*wrow], r1-r0, a.xq[t*a.xrow:], a.xrow, aux, a.arow, nb, n)
			}
		}
	})
}

// checkKernel panics unless the slices passed to a quantKernel are long
// enough; the assembly kernels read and write through raw pointers.
func checkKernel(f *qformat, y []float32, ystride int, w []byte, rows int, x []byte, xstride int, aux []byte, auxstride int, nb, nt int) {
	xrow, arow := f.xbytes(nb)
	if nt < 1 || nt > 4 || rows < 0 || len(y) < (nt-1)*ystride+rows || len(w) < rows*nb*f.wbytes ||
		len(x) < (nt-1)*xstride+xrow || (arow > 0 && len(aux) < (nt-1)*auxstride+arow) {
		panic(fmt.Sprintf("kernels: quantized kernel called with nt=%d rows=%d nb=%d and short slices", nt, rows, nb))
	}
}

// QuantizeQ8_0 quantizes x (a multiple of 32 long) into len(x)/32 Q8_0 blocks
// of 34 bytes in dst, as the activation side of a Q8_0 or Q4_0 dot product.
// Rounding is to nearest even, as ggml's SIMD paths do (tensor.QuantizeRowQ8_0
// rounds halves away from zero); the two agree except on exact halves.
func QuantizeQ8_0(dst []byte, x []float32) {
	if len(x)%qk != 0 || len(dst) < len(x)/qk*q8Bytes {
		panic(fmt.Sprintf("kernels.QuantizeQ8_0: %d values (need a multiple of %d) into %d bytes", len(x), qk, len(dst)))
	}
	quantQ8_0Impl(dst, x)
}
