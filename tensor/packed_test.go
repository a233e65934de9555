package tensor

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestPackRows8RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range []DType{Q4_0, Q8_0, Q4_K, Q6_K} {
		for _, rows := range []int{0, 1, 7, 8, 9, 16, 23, 40} {
			for _, cols := range []int{32, 96, 256, 768} {
				if (d == Q4_K || d == Q6_K) && (rows%8 != 0 || cols%256 != 0) {
					continue
				}
				rb, _ := d.RowBytes(cols)
				src := make([]byte, rows*rb)
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				pd, _ := Packed(d)
				prb, _ := pd.RowBytes(cols)
				pk, back := make([]byte, rows*prb), make([]byte, len(src))
				if err := PackRows8(d, pk, src, rows, cols); err != nil {
					t.Fatal(err)
				}
				if err := UnpackRows8(d, back, pk, rows, cols); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(back, src) {
					t.Fatalf("%s %dx%d: unpack(pack(w)) != w", d, rows, cols)
				}
				g8 := rows / 8 * 8
				if d != Q4_K && d != Q6_K && !bytes.Equal(pk[g8*rb:], src[g8*rb:]) {
					t.Fatalf("%s %dx%d: the rows after the last group are not kept plain", d, rows, cols)
				}
			}
		}
	}
}

// TestPackRows8Layout checks the documented offsets on a matrix whose
// every byte names its row, block and position.
func TestPackRows8Layout(t *testing.T) {
	for _, d := range []DType{Q4_0, Q8_0} {
		const rows, cols = 16, 64 // two groups of two blocks
		bb := d.BlockBytes()
		rb, _ := d.RowBytes(cols)
		src := make([]byte, rows*rb)
		tag := func(row, blk, pos int) byte { return byte(row*7 + blk*61 + pos*3) }
		for row := range rows {
			for blk := range cols / 32 {
				for pos := range bb {
					src[row*rb+blk*bb+pos] = tag(row, blk, pos)
				}
			}
		}
		pk := make([]byte, len(src))
		if err := PackRows8(d, pk, src, rows, cols); err != nil {
			t.Fatal(err)
		}
		for g := range rows / 8 {
			for blk := range cols / 32 {
				base := g*8*rb + blk*8*bb
				for j := range 8 {
					row := 8*g + j
					for k := range 2 {
						if got := pk[base+2*j+k]; got != tag(row, blk, k) {
							t.Fatalf("%s: scale byte %d of row %d block %d = %d", d, k, row, blk, got)
						}
					}
					for q := range bb - 2 {
						p, i := q/4, q%4
						if got := pk[base+16+32*p+4*j+i]; got != tag(row, blk, 2+q) {
							t.Fatalf("%s: quant byte %d of row %d block %d at %d = %d", d, q, row, blk, base+16+32*p+4*j+i, got)
						}
					}
				}
			}
		}
	}
}

func TestPackedDTypes(t *testing.T) {
	for _, d := range []DType{Q4_0x8, Q8_0x8, Q4_Kx8, Q6_Kx8} {
		p, ok := Plain(d)
		if !ok || !IsPacked(d) || d.BlockSize() != p.BlockSize() || d != Q4_Kx8 && d.BlockBytes() != p.BlockBytes() {
			t.Errorf("%s: plain %s %v, sizes differ", d, p, ok)
		}
		if _, err := ParseDType(d.String()); err == nil {
			t.Errorf("ParseDType(%q) accepts an in-memory layout", d)
		}
		if CanDequantize(d) || CanQuantize(d) {
			t.Errorf("%s: rows of a packed matrix are not independent, yet Dequantize or Quantize accepts it", d)
		}
	}
	if err := PackRows8(Q5_K, make([]byte, 176), make([]byte, 176), 1, 256); err == nil {
		t.Error("PackRows8(Q5_K) succeeded")
	}
	if err := PackRows8(Q4_K, make([]byte, 148*9), make([]byte, 144*9), 9, 256); err == nil {
		t.Error("PackRows8(Q4_K) of 9 rows succeeded")
	}
	if err := PackRows8(Q4_0, make([]byte, 10), make([]byte, 18*8), 8, 32); err == nil {
		t.Error("PackRows8 into a short buffer succeeded")
	}
}

// TestPackQ4KLayout: the documented offsets of Q4_Kx8, the scales and mins
// those scaleMinK4 reads from the plain block.
func TestPackQ4KLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const rows, cols = 8, 512
	src := make([]byte, rows*2*BytesQ4_K)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	pk := make([]byte, rows*2*BytesQ4_Kx8/8)
	if err := PackRows8(Q4_K, pk, src, rows, cols); err != nil {
		t.Fatal(err)
	}
	for b := range 2 {
		base := b * BytesQ4_Kx8
		for j := range 8 {
			pl := src[j*2*BytesQ4_K+b*BytesQ4_K:]
			if !bytes.Equal(pk[base+2*j:base+2*j+2], pl[0:2]) || !bytes.Equal(pk[base+16+2*j:base+18+2*j], pl[2:4]) {
				t.Fatalf("block %d row %d: d or dmin misplaced", b, j)
			}
			for s := range 8 {
				sc, mn := scaleMinK4(s, pl[4:16])
				if pk[base+32+8*s+j] != sc || pk[base+96+16*(s/2)+2*j+s%2] != mn {
					t.Fatalf("block %d row %d sub-block %d: scale %d min %d, want %d %d", b, j, s, pk[base+32+8*s+j], pk[base+96+16*(s/2)+2*j+s%2], sc, mn)
				}
			}
			for q := range 128 {
				if pk[base+160+32*(q/4)+4*j+q%4] != pl[16+q] {
					t.Fatalf("block %d row %d: quant byte %d misplaced", b, j, q)
				}
			}
		}
	}
}

// TestPackF16x32 checks F16x32's documented offsets (column p of row j of
// group g at element 32·(g·cols+p)+j), the round trip, and the refusal of
// a row count that is not a multiple of F16Group.
func TestPackF16x32(t *testing.T) {
	for _, cols := range []int{1, 3, 64, 65, 200} {
		for _, rows := range []int{0, 32, 96} {
			src := make([]uint16, rows*cols)
			for r := range rows {
				for p := range cols {
					src[r*cols+p] = uint16(r*1000 + p) // names its row and column
				}
			}
			raw := BytesOfU16(src)
			pk, back := make([]byte, len(raw)), make([]byte, len(raw))
			if err := PackRows8(F16, pk, raw, rows, cols); err != nil {
				t.Fatal(err)
			}
			got := U16s(pk)
			for g := 0; g < rows/F16Group; g++ {
				for p := range cols {
					for j := range F16Group {
						if v := got[32*(g*cols+p)+j]; v != uint16((32*g+j)*1000+p) {
							t.Fatalf("%dx%d: group %d column %d row %d holds %d", rows, cols, g, p, j, v)
						}
					}
				}
			}
			if err := UnpackRows8(F16, back, pk, rows, cols); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, raw) {
				t.Fatalf("%dx%d: unpack(pack(w)) != w", rows, cols)
			}
		}
	}
	if err := PackRows8(F16, make([]byte, 2*40*8), make([]byte, 2*40*8), 40, 8); err == nil {
		t.Error("PackRows8(F16) of 40 rows succeeded")
	}
	if pd, ok := Packed(F16); !ok || pd != F16x32 || !IsPacked(F16x32) || pd.String() != "F16x32" {
		t.Errorf("Packed(F16) = %s, %v", pd, ok)
	}
	if pl, ok := Plain(F16x32); !ok || pl != F16 {
		t.Errorf("Plain(F16x32) = %s, %v", pl, ok)
	}
}
