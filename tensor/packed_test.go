package tensor

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestPackRows8RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range []DType{Q4_0, Q8_0} {
		for _, rows := range []int{0, 1, 7, 8, 9, 16, 23, 40} {
			for _, cols := range []int{32, 96, 256} {
				rb, _ := d.RowBytes(cols)
				src := make([]byte, rows*rb)
				for i := range src {
					src[i] = byte(r.Uint32())
				}
				pk, back := make([]byte, len(src)), make([]byte, len(src))
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
				if !bytes.Equal(pk[g8*rb:], src[g8*rb:]) {
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
	for _, d := range []DType{Q4_0x8, Q8_0x8} {
		p, ok := Plain(d)
		if !ok || !IsPacked(d) || d.BlockBytes() != p.BlockBytes() || d.BlockSize() != p.BlockSize() {
			t.Errorf("%s: plain %s %v, sizes differ", d, p, ok)
		}
		if _, err := ParseDType(d.String()); err == nil {
			t.Errorf("ParseDType(%q) accepts an in-memory layout", d)
		}
		if CanDequantize(d) || CanQuantize(d) {
			t.Errorf("%s: rows of a packed matrix are not independent, yet Dequantize or Quantize accepts it", d)
		}
	}
	if err := PackRows8(Q4_K, make([]byte, 144), make([]byte, 144), 1, 256); err == nil {
		t.Error("PackRows8(Q4_K) succeeded")
	}
	if err := PackRows8(Q4_0, make([]byte, 10), make([]byte, 18*8), 8, 32); err == nil {
		t.Error("PackRows8 into a short buffer succeeded")
	}
}
