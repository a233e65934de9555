package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
)

// scaleField is a float16 scale inside a block: its byte offset and name.
type scaleField struct {
	off  int
	name string
}

// blockScales lists the float16 scales of each block format (the fields
// ggml's ggml_validate_row_data checks).
var blockScales = map[DType][]scaleField{
	Q4_0: {{0, "d"}}, Q4_1: {{0, "d"}, {2, "m"}}, Q5_0: {{0, "d"}}, Q5_1: {{0, "d"}, {2, "m"}},
	Q8_0: {{0, "d"}}, IQ4_NL: {{0, "d"}},
	Q2_K: {{80, "d"}, {82, "dmin"}}, Q3_K: {{108, "d"}}, Q4_K: {{0, "d"}, {2, "dmin"}},
	Q5_K: {{0, "d"}, {2, "dmin"}}, Q6_K: {{208, "d"}},
}

// ValidateBlocks checks that data is a whole number of blocks of dtype d and
// that every block scale is finite: a NaN or infinite scale would turn the
// block's every value into NaN or ±Inf at run time. Plain dtypes (F32, F16,
// ...) only get the size check. The error names the first bad block.
func ValidateBlocks(d DType, data []byte) error {
	bb := d.BlockBytes()
	if bb == 0 {
		return fmt.Errorf("unknown dtype %s", d)
	}
	if len(data)%bb != 0 {
		return fmt.Errorf("%s: %d bytes is not a whole number of %d-byte blocks", d, len(data), bb)
	}
	if d == Q8_K {
		for b := 0; b < len(data); b += bb {
			f := math.Float32frombits(binary.LittleEndian.Uint32(data[b:]))
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return fmt.Errorf("%s: block %d has scale d = %v", d, b/bb, f)
			}
		}
		return nil
	}
	fields := blockScales[d]
	for b := 0; b < len(data); b += bb {
		for _, f := range fields {
			// a float16 with all exponent bits set is an infinity or a NaN
			if h := binary.LittleEndian.Uint16(data[b+f.off:]); h&0x7c00 == 0x7c00 {
				return fmt.Errorf("%s: block %d has scale %s = %v (float16 %#04x)", d, b/bb, f.name, F16ToF32(h), h)
			}
		}
	}
	return nil
}
