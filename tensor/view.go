package tensor

import "unsafe"

// F32s reinterprets b (little-endian float32s, 4-byte aligned) as a float32
// slice without copying. len(b) must be a multiple of 4.
func F32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// U16s reinterprets b (2-byte aligned) as a uint16 slice without copying.
func U16s(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

// BytesOfF32 reinterprets a float32 slice as its bytes without copying.
func BytesOfF32(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(f)*4)
}

// BytesOfU16 reinterprets a uint16 slice as its bytes without copying.
func BytesOfU16(h []uint16) []byte {
	if len(h) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), len(h)*2)
}
