package tensor

import "fmt"

// Q4_0x8 and Q8_0x8 are Q4_0 and Q8_0 matrices rearranged in memory so
// that eight rows are read as one stream: the layout decoding multiplies
// fastest (llama.cpp repacks Q4_0 the same way at load for its AVX2 and
// AVX-512 products). They are in-memory layouts only: no file format stores
// them (package gguf refuses both), the bytes are as many as the plain
// format's, and PackRows8 and UnpackRows8 convert a whole matrix, losslessly.
//
// For each group of eight rows (rows 8g … 8g+7, nb blocks each) the group's
// blocks follow one another, block b of the group taking 8·(plain block
// bytes) at byte offset g·8·rowBytes + b·8·blockBytes:
//
//	[0, 16)       the eight rows' float16 scales, row j's at 2j
//	[16, …)       the quant bytes in pieces of four: piece p (bytes 4p … 4p+3
//	              of a plain block's quants) of row j at 16 + 32p + 4j
//
// so one 32-byte load holds the same four quant bytes of the eight rows.
// Rows after the last whole group (rows mod 8 of them) keep the plain
// layout, at the end, where the plain matrix has them. A row of a packed
// matrix cannot be read alone: Dequantize refuses these dtypes.
const (
	Q4_0x8 DType = 1<<16 | 1<<8 | Q4_0
	Q8_0x8 DType = 1<<16 | 1<<8 | Q8_0
)

// PackGroup is the number of rows a packed group interleaves.
const PackGroup = 8

func init() {
	dtypes[Q4_0x8] = dtypeInfo{"Q4_0x8", QK, BytesQ4_0}
	dtypes[Q8_0x8] = dtypeInfo{"Q8_0x8", QK, BytesQ8_0}
}

// Packed returns the eight-row layout of plain dtype d (Q4_0 → Q4_0x8,
// Q8_0 → Q8_0x8), and whether d has one.
func Packed(d DType) (DType, bool) {
	switch d {
	case Q4_0:
		return Q4_0x8, true
	case Q8_0:
		return Q8_0x8, true
	}
	return 0, false
}

// Plain returns the plain dtype of a packed one (Q4_0x8 → Q4_0), and
// whether d is packed.
func Plain(d DType) (DType, bool) {
	switch d {
	case Q4_0x8:
		return Q4_0, true
	case Q8_0x8:
		return Q8_0, true
	}
	return 0, false
}

// IsPacked reports whether d is one of the in-memory eight-row layouts.
func IsPacked(d DType) bool { _, ok := Plain(d); return ok }

// PackRows8 writes the rows×cols matrix src of plain dtype d (Q4_0 or
// Q8_0) into dst in d's eight-row layout. dst and src must not overlap.
func PackRows8(d DType, dst, src []byte, rows, cols int) error {
	return repack(d, dst, src, rows, cols, true)
}

// UnpackRows8 is PackRows8's inverse: src holds the packed matrix of plain
// dtype d, dst receives the plain rows.
func UnpackRows8(d DType, dst, src []byte, rows, cols int) error {
	return repack(d, dst, src, rows, cols, false)
}

func repack(d DType, dst, src []byte, rows, cols int, pack bool) error {
	if _, ok := Packed(d); !ok {
		return fmt.Errorf("tensor: %s has no eight-row layout", d)
	}
	rb, err := d.RowBytes(cols)
	if err != nil {
		return err
	}
	if rows < 0 || len(src) < rows*rb || len(dst) < rows*rb {
		return fmt.Errorf("tensor: repacking %d×%d %s: %d source and %d destination bytes, need %d", rows, cols, d, len(src), len(dst), rows*rb)
	}
	bb := d.BlockBytes()
	nb := rb / bb
	pieces := (bb - 2) / 4
	g8 := rows / PackGroup * PackGroup
	for g := 0; g < g8; g += PackGroup {
		grp := g * rb // the group's first byte, in both layouts
		for b := range nb {
			pk := grp + b*PackGroup*bb // packed block b of the group
			for j := range PackGroup {
				pl := grp + j*rb + b*bb // row g+j's plain block b
				move(dst, src, pl, pk+2*j, 2, pack)
				for p := range pieces {
					move(dst, src, pl+2+4*p, pk+16+32*p+4*j, 4, pack)
				}
			}
		}
	}
	copy(dst[g8*rb:rows*rb], src[g8*rb:rows*rb])
	return nil
}

// move copies n bytes between plain offset pl and packed offset pk, in the
// direction pack says.
func move(dst, src []byte, pl, pk, n int, pack bool) {
	if pack {
		copy(dst[pk:pk+n], src[pl:pl+n])
	} else {
		copy(dst[pl:pl+n], src[pk:pk+n])
	}
}
