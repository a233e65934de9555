package tensor

// The block geometry of ggml's formats, written once: the dtype table
// below, the row quantizers of this package and the kernels (package
// kernels reads its block sizes from here).
const (
	QK  = 32  // elements per block of the legacy formats (Q4_0 … Q8_1) and IQ4_NL
	QKK = 256 // elements per super-block of the k-quants (Q2_K … Q8_K)

	BytesQ4_0   = 18  // float16 scale, 16 bytes of 4-bit values
	BytesQ4_1   = 20  // float16 scale and minimum, 16 bytes of 4-bit values
	BytesQ5_0   = 22  // float16 scale, 4 bytes of fifth bits, 16 of 4-bit values
	BytesQ5_1   = 24  // float16 scale and minimum, 4 + 16 bytes
	BytesQ8_0   = 34  // float16 scale, 32 int8 values
	BytesQ8_1   = 36  // float16 scale and sum, 32 int8 values
	BytesIQ4_NL = 18  // float16 scale, 16 bytes of 4-bit indices into kvaluesIQ4NL
	BytesQ2_K   = 84  // per QKK elements
	BytesQ3_K   = 110 // per QKK elements
	BytesQ4_K   = 144 // per QKK elements
	BytesQ5_K   = 176 // per QKK elements
	BytesQ6_K   = 210 // per QKK elements
	BytesQ8_K   = 292 // per QKK elements: float32 scale, 256 int8, 16 int16 sums
)

// Q3KScale decodes sub-block scale j (0..15) of a Q3_K block's 12 scale
// bytes sc, less its bias of 32: the low four bits from the first eight
// bytes, the high two from the last four.
func Q3KScale(sc []byte, j int) int32 {
	var lo byte
	if j < 8 {
		lo = sc[j] & 15
	} else {
		lo = sc[j-8] >> 4
	}
	hi := sc[8+j%4] >> (2 * (j / 4)) & 3
	return int32(lo|hi<<4) - 32
}
