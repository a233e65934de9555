// Package tensor holds herd's element types and their block layouts: the
// dtype enumeration (numbered as ggml numbers them, so a GGUF type id is a
// DType), the per-dtype block geometry, half-precision conversions, and row
// quantization and dequantization for the block formats herd computes with.
package tensor

import "fmt"

// DType is an element type. The numeric values are ggml's type ids, so the
// value stored in a GGUF tensor-info record converts directly.
type DType uint32

// The dtypes herd knows. Values follow ggml's enum ggml_type.
const (
	F32    DType = 0
	F16    DType = 1
	Q4_0   DType = 2
	Q4_1   DType = 3
	Q5_0   DType = 6
	Q5_1   DType = 7
	Q8_0   DType = 8
	Q8_1   DType = 9
	Q2_K   DType = 10
	Q3_K   DType = 11
	Q4_K   DType = 12
	Q5_K   DType = 13
	Q6_K   DType = 14
	Q8_K   DType = 15
	IQ4_NL DType = 20
	I8     DType = 24
	I16    DType = 25
	I32    DType = 26
	I64    DType = 27
	F64    DType = 28
	BF16   DType = 30
)

type dtypeInfo struct {
	name       string
	blockSize  int // elements per block
	blockBytes int // bytes per block
}

var dtypes = map[DType]dtypeInfo{
	F32:    {"F32", 1, 4},
	F16:    {"F16", 1, 2},
	Q4_0:   {"Q4_0", QK, BytesQ4_0},
	Q4_1:   {"Q4_1", QK, BytesQ4_1},
	Q5_0:   {"Q5_0", QK, BytesQ5_0},
	Q5_1:   {"Q5_1", QK, BytesQ5_1},
	Q8_0:   {"Q8_0", QK, BytesQ8_0},
	Q8_1:   {"Q8_1", QK, BytesQ8_1},
	Q2_K:   {"Q2_K", QKK, BytesQ2_K},
	Q3_K:   {"Q3_K", QKK, BytesQ3_K},
	Q4_K:   {"Q4_K", QKK, BytesQ4_K},
	Q5_K:   {"Q5_K", QKK, BytesQ5_K},
	Q6_K:   {"Q6_K", QKK, BytesQ6_K},
	Q8_K:   {"Q8_K", QKK, BytesQ8_K},
	IQ4_NL: {"IQ4_NL", QK, BytesIQ4_NL},
	I8:     {"I8", 1, 1},
	I16:    {"I16", 1, 2},
	I32:    {"I32", 1, 4},
	I64:    {"I64", 1, 8},
	F64:    {"F64", 1, 8},
	BF16:   {"BF16", 1, 2},
}

// Known reports whether d is a dtype herd knows the layout of.
func (d DType) Known() bool { _, ok := dtypes[d]; return ok }

// String returns ggml's name for the dtype, or "type(N)" for an unknown one.
func (d DType) String() string {
	if i, ok := dtypes[d]; ok {
		return i.name
	}
	return fmt.Sprintf("type(%d)", uint32(d))
}

// ParseDType maps a name such as "f16" or "Q8_0" (any case) to its DType.
func ParseDType(s string) (DType, error) {
	for d, i := range dtypes {
		if equalFold(i.name, s) && !IsPacked(d) {
			return d, nil
		}
	}
	return 0, fmt.Errorf("unknown dtype %q", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// BlockSize is the number of elements in one block (1 for plain types).
func (d DType) BlockSize() int { return dtypes[d].blockSize }

// BlockBytes is the number of bytes one block occupies.
func (d DType) BlockBytes() int { return dtypes[d].blockBytes }

// RowBytes returns the byte size of n elements of dtype d. It fails when d is
// unknown or n is not a whole number of blocks.
func (d DType) RowBytes(n int) (int, error) {
	i, ok := dtypes[d]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %d", uint32(d))
	}
	if n < 0 || n%i.blockSize != 0 {
		return 0, fmt.Errorf("%s: row of %d elements is not a multiple of the block size %d", i.name, n, i.blockSize)
	}
	return n / i.blockSize * i.blockBytes, nil
}

// Bytes returns the byte size of a tensor of n elements, each row of rowLen
// elements (rowLen must divide into whole blocks). It guards against overflow.
func (d DType) Bytes(n int64, rowLen int) (int64, error) {
	rb, err := d.RowBytes(rowLen)
	if err != nil {
		return 0, err
	}
	if rowLen == 0 {
		return 0, nil
	}
	if n%int64(rowLen) != 0 {
		return 0, fmt.Errorf("%s: %d elements is not a whole number of rows of %d", d, n, rowLen)
	}
	rows := n / int64(rowLen)
	if rb != 0 && rows > (1<<62)/int64(rb) {
		return 0, fmt.Errorf("%s: tensor of %d elements is too large", d, n)
	}
	return rows * int64(rb), nil
}
