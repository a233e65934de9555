package kernels

import (
	"encoding/binary"
	"math"

	"github.com/herd-llm/herd/tensor"
)

func convF16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = tensor.F16ToF32(h)
	}
}

func convBF16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = tensor.BF16ToF32(h)
	}
}

// quantQ8_0Generic quantizes x to Q8_0 blocks like ggml's SIMD paths: the
// scale is amax/127 and values round to nearest even.
func quantQ8_0Generic(dst []byte, x []float32) {
	for b := range len(x) / qk {
		xb := x[b*qk : (b+1)*qk]
		o := dst[b*q8Bytes : (b+1)*q8Bytes]
		var amax float32
		for _, v := range xb {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(o, tensor.F32ToF16(d))
		for i, v := range xb {
			o[2+i] = byte(int8(math.RoundToEven(float64(v * id))))
		}
	}
}
