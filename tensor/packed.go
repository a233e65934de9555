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
//
// Q4_Kx8 is Q4_K's: rows a multiple of eight, no plain tail, and each
// group's super-block b (1184 bytes, at g·8·rowBytes + 1184·b, so 148
// bytes a row-block where the plain format has 144) holds
//
//	[0, 16)       the eight rows' d, float16, row j's at 2j
//	[16, 32)      their dmin
//	[32, 96)      the sub-block scales as bytes: scale s of row j at 32 + 8s + j
//	[96, 160)     the sub-block mins as bytes, by pairs: min 2u+k of row j at 96 + 16u + 2j + k
//	[160, 1184)   the 128 quant bytes in pieces of four: piece p of row j at 160 + 32p + 4j
//
// (the six-bit scales unpacked from the plain format's twelve bytes, which
// UnpackRows8 packs again exactly). Q6_Kx8 is Q6_K's, rows a multiple of
// eight too, each group super-block 1680 bytes (8·210):
//
//	[0, 16)       the eight rows' d, float16
//	[16, 144)     the int8 sub-block scales by pairs: scale 2u+k of row j at 16 + 16u + 2j + k
//	[144, 1680)   sixteen chunks of 96 bytes in the order the product reads
//	              them: chunk 8h+t holds the eight rows' ql pieces 16h+t and
//	              16h+8+t and qh piece 8h+t (pieces of four bytes of ql's 128
//	              and qh's 64 bytes a row), row j's four bytes at 4j of each 32
const (
	Q4_0x8 DType = 1<<16 | 1<<8 | Q4_0
	Q8_0x8 DType = 1<<16 | 1<<8 | Q8_0
	Q4_Kx8 DType = 1<<16 | 1<<8 | Q4_K
	Q6_Kx8 DType = 1<<16 | 1<<8 | Q6_K
	F16x32 DType = 1<<16 | 1<<8 | F16
)

// F16x32 is F16's packed layout, for the float products that read a whole
// group of weight rows as one stream and sum each row in one lane of a
// vector: rows a multiple of F16Group, no plain tail, and group g (rows 32g
// … 32g+31) at byte g·32·2·cols holds the group's columns one after
// another, column p's 32 half-floats at 64p, row j's at 64p + 2j.
//
// F16Group is the number of rows an F16x32 group interleaves.
const F16Group = 32

// BytesQ4_Kx8 is the size of one packed Q4_K group super-block (eight rows).
const BytesQ4_Kx8 = 1184

// PackGroup is the number of rows a packed group interleaves.
const PackGroup = 8

func init() {
	dtypes[Q4_0x8] = dtypeInfo{"Q4_0x8", QK, BytesQ4_0}
	dtypes[Q8_0x8] = dtypeInfo{"Q8_0x8", QK, BytesQ8_0}
	dtypes[Q4_Kx8] = dtypeInfo{"Q4_Kx8", QKK, BytesQ4_Kx8 / PackGroup}
	dtypes[Q6_Kx8] = dtypeInfo{"Q6_Kx8", QKK, BytesQ6_K}
	dtypes[F16x32] = dtypeInfo{"F16x32", 1, 2}
}

// Packed returns the eight-row layout of plain dtype d (Q4_0 → Q4_0x8,
// Q8_0 → Q8_0x8), and whether d has one.
func Packed(d DType) (DType, bool) {
	switch d {
	case Q4_0:
		return Q4_0x8, true
	case Q8_0:
		return Q8_0x8, true
	case Q4_K:
		return Q4_Kx8, true
	case Q6_K:
		return Q6_Kx8, true
	case F16:
		return F16x32, true
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
	case Q4_Kx8:
		return Q4_K, true
	case Q6_Kx8:
		return Q6_K, true
	case F16x32:
		return F16, true
	}
	return 0, false
}

// IsPacked reports whether d is one of the in-memory packed layouts.
func IsPacked(d DType) bool { _, ok := Plain(d); return ok }

// PackRows8 writes the rows×cols matrix src of plain dtype d (Q4_0, Q8_0,
// Q4_K or Q6_K, for the k-quants rows a multiple of eight; F16, rows a
// multiple of F16Group) into dst in d's packed layout. dst and src must
// not overlap.
func PackRows8(d DType, dst, src []byte, rows, cols int) error {
	return repack(d, dst, src, rows, cols, true)
}

// UnpackRows8 is PackRows8's inverse: src holds the packed matrix of plain
// dtype d, dst receives the plain rows.
func UnpackRows8(d DType, dst, src []byte, rows, cols int) error {
	return repack(d, dst, src, rows, cols, false)
}

func repack(d DType, dst, src []byte, rows, cols int, pack bool) error {
	pd, ok := Packed(d)
	if !ok {
		return fmt.Errorf("tensor: %s has no eight-row layout", d)
	}
	rb, err := d.RowBytes(cols)
	if err != nil {
		return err
	}
	prb, _ := pd.RowBytes(cols)
	plainN, packedN := rows*rb, rows*prb
	if !pack {
		plainN, packedN = packedN, plainN
	}
	if rows < 0 || len(src) < plainN || len(dst) < packedN {
		return fmt.Errorf("tensor: repacking %d×%d %s: %d source and %d destination bytes, need %d and %d", rows, cols, d, len(src), len(dst), plainN, packedN)
	}
	if d == F16 {
		if rows%F16Group != 0 {
			return fmt.Errorf("tensor: %d rows of F16: the F16x32 layout takes a multiple of %d", rows, F16Group)
		}
		repackF16(dst, src, rows, cols, pack)
		return nil
	}
	if d == Q4_K || d == Q6_K {
		if rows%PackGroup != 0 {
			return fmt.Errorf("tensor: %d rows of %s: the eight-row layout takes a multiple of %d", rows, d, PackGroup)
		}
		if d == Q4_K {
			repackQ4K(dst, src, rows, cols, pack)
		} else {
			repackQ6K(dst, src, rows, cols, pack)
		}
		return nil
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

// repackF16 converts between F16 and F16x32 (rows a multiple of 32).
func repackF16(dst, src []byte, rows, cols int, pack bool) {
	d, s := U16s(dst[:2*rows*cols]), U16s(src[:2*rows*cols])
	for g := 0; g < rows*cols; g += F16Group * cols { // the group's first element, in both layouts
		for p0 := 0; p0 < cols; p0 += 64 { // 64 columns of the 32 rows at a time, in cache
			p1 := min(cols, p0+64)
			for j := range F16Group {
				row := s[g+j*cols:]
				if !pack {
					row = d[g+j*cols:]
				}
				for p := p0; p < p1; p++ {
					if pack {
						d[g+32*p+j] = row[p]
					} else {
						row[p] = s[g+32*p+j]
					}
				}
			}
		}
	}
}

// repackQ4K converts between Q4_K and Q4_Kx8 (rows a multiple of eight).
func repackQ4K(dst, src []byte, rows, cols int, pack bool) {
	nb := cols / QKK
	rb := nb * BytesQ4_K
	for g := 0; g < rows; g += PackGroup {
		for b := range nb {
			pk := g*nb*BytesQ4_Kx8/PackGroup + b*BytesQ4_Kx8 // packed super-block b of the group
			for j := range PackGroup {
				pl := (g+j)*rb + b*BytesQ4_K
				move(dst, src, pl, pk+2*j, 2, pack)      // d
				move(dst, src, pl+2, pk+16+2*j, 2, pack) // dmin
				for p := range 32 {
					move(dst, src, pl+16+4*p, pk+160+32*p+4*j, 4, pack)
				}
				if pack {
					var sc, mn [8]uint8
					for s := range 8 {
						sc[s], mn[s] = scaleMinK4(s, src[pl+4:pl+16])
					}
					for s := range 8 {
						dst[pk+32+8*s+j] = sc[s]
						dst[pk+96+16*(s/2)+2*j+s%2] = mn[s]
					}
					continue
				}
				var sc, mn [8]uint8
				for s := range 8 {
					sc[s] = src[pk+32+8*s+j]
					mn[s] = src[pk+96+16*(s/2)+2*j+s%2]
				}
				packScaleMinK4(dst[pl+4:pl+16], &sc, &mn)
			}
		}
	}
}

// packScaleMinK4 writes eight six-bit scales and mins into the twelve
// bytes scaleMinK4 reads them from.
func packScaleMinK4(q []byte, sc, mn *[8]uint8) {
	for j := range 4 {
		q[j] = sc[j]&63 | (sc[j+4]>>4)<<6
		q[j+4] = mn[j]&63 | (mn[j+4]>>4)<<6
		q[j+8] = sc[j+4]&15 | (mn[j+4]&15)<<4
	}
}

// repackQ6K converts between Q6_K and Q6_Kx8 (rows a multiple of eight).
func repackQ6K(dst, src []byte, rows, cols int, pack bool) {
	nb := cols / QKK
	rb := nb * BytesQ6_K
	for g := 0; g < rows; g += PackGroup {
		for b := range nb {
			pk := g*rb + b*PackGroup*BytesQ6_K // packed super-block b of the group
			for j := range PackGroup {
				pl := (g+j)*rb + b*BytesQ6_K
				move(dst, src, pl+208, pk+2*j, 2, pack) // d
				for s := range 16 {
					move(dst, src, pl+192+s, pk+16+16*(s/2)+2*j+s%2, 1, pack)
				}
				for p := range 32 { // ql
					h, r := p/16, p%16
					move(dst, src, pl+4*p, pk+144+96*(8*h+r%8)+32*(r/8)+4*j, 4, pack)
				}
				for p := range 16 { // qh
					move(dst, src, pl+128+4*p, pk+144+96*p+64+4*j, 4, pack)
				}
			}
		}
	}
}
