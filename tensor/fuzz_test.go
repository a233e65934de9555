package tensor

import (
	"encoding/binary"
	"math"
	"os"
	"testing"
)

// FuzzDequantize feeds arbitrary bytes to every block dequantizer (and the
// validator): none may panic, whatever the scales and quants hold. Seeds
// are blocks herd quantized from a real model's weights (stories260K's
// token embedding, when the repository's copy is present) plus edge cases.
func FuzzDequantize(f *testing.F) {
	seed := ramp(1, 512)
	if data, err := os.ReadFile("../format/llama2c/testdata/stories260K.bin"); err == nil && len(data) >= 28+4*512 {
		for i := range seed {
			seed[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[28+4*i:]))
		}
	}
	for i, d := range blockTypes {
		rb, _ := d.RowBytes(512)
		q := make([]byte, rb)
		if err := Quantize(d, q, seed); err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), q)
	}
	f.Add(uint8(0), []byte{0xff, 0x7f})
	f.Add(uint8(5), make([]byte, 3*84))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		d := blockTypes[int(which)%len(blockTypes)]
		n := len(data) / d.BlockBytes() * d.BlockSize()
		dst := make([]float32, n)
		if err := Dequantize(d, dst, data); err != nil {
			t.Fatalf("%s: %d bytes for %d elements: %v", d, len(data), n, err)
		}
		_ = ValidateBlocks(d, data)
		// short input must be an error, not a panic
		if n > 0 {
			if err := Dequantize(d, make([]float32, n+d.BlockSize()), data); err == nil {
				t.Fatalf("%s: short input accepted", d)
			}
		}
	})
}

// FuzzQuantize quantizes arbitrary float32 rows (NaNs, infinities,
// subnormals, huge values) with every reference quantizer: none may panic,
// and finite input yields blocks that expand to finite values.
func FuzzQuantize(f *testing.F) {
	f.Add(uint8(0), make([]byte, 4*256))
	f.Add(uint8(6), []byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0x7f})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		d := blockTypes[int(which)%len(blockTypes)]
		x := make([]float32, 256)
		finite := true
		for i := range x {
			if 4*i+4 <= len(data) {
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
			}
			// values beyond ±2^60 overflow the float16 scales by design
			if math.IsNaN(float64(x[i])) || math.IsInf(float64(x[i]), 0) || math.Abs(float64(x[i])) > 1<<60 {
				finite = false
			}
		}
		rb, _ := d.RowBytes(len(x))
		q := make([]byte, rb)
		if err := Quantize(d, q, x); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(d, y, q); err != nil {
			t.Fatal(err)
		}
		if !finite {
			return
		}
		var amax float64
		for _, v := range x {
			amax = max(amax, math.Abs(float64(v)))
		}
		if amax > 60000 || amax < 1e-6 { // float16 scale range
			return
		}
		for i, v := range y {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s: finite input %g at %d dequantizes to %g", d, x[i], i, v)
			}
		}
	})
}
