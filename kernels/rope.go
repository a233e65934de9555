package kernels

import (
	"fmt"
	"math"
)

// ropeTable fills cos[i], sin[i] for i < headDim/2 with the rotation of pair i
// at position pos, in llama2.c's float32 arithmetic:
// freq = 1/powf(theta, 2i/headDim), angle = pos·freq.
func ropeTable(cos, sin []float32, headDim, pos int, theta float32) {
	for i := range cos {
		e := float32(2*i) / float32(headDim)
		freq := 1 / float32(math.Pow(float64(theta), float64(e)))
		val := float32(pos) * freq
		s, c := math.Sincos(float64(val))
		cos[i], sin[i] = float32(c), float32(s)
	}
}

func ropeCheck(fn string, x []float32, nHeads, headDim int) {
	if headDim%2 != 0 || len(x) < nHeads*headDim {
		panic(fmt.Sprintf("kernels.%s: len(x) = %d, nHeads = %d, headDim = %d (must be even)", fn, len(x), nHeads, headDim))
	}
}

// RoPEInterleaved applies rotary position embedding in place to x, one
// position's nHeads vectors of headDim, rotating the pairs (2i, 2i+1) of each
// head by pos·theta^(-2i/headDim): the Meta, GGUF and llama2.c layout.
func RoPEInterleaved(x []float32, nHeads, headDim, pos int, theta float32) {
	ropeCheck("RoPEInterleaved", x, nHeads, headDim)
	half := headDim / 2
	var buf [256]float32
	cs := buf[:]
	if 2*half > len(buf) {
		cs = make([]float32, 2*half)
	}
	cos, sin := cs[:half], cs[half:2*half]
	ropeTable(cos, sin, headDim, pos, theta)
	for h := range nHeads {
		v := x[h*headDim : (h+1)*headDim]
		for i := range half {
			v0, v1 := v[2*i], v[2*i+1]
			// The conversions keep each product rounded (no fused
			// multiply-add), as llama2.c's C computes it.
			v[2*i] = float32(v0*cos[i]) - float32(v1*sin[i])
			v[2*i+1] = float32(v0*sin[i]) + float32(v1*cos[i])
		}
	}
}

// RoPEHalf applies rotary position embedding in place to x, one position's
// nHeads vectors of headDim, rotating the pairs (i, i+headDim/2) of each head
// by pos·theta^(-2i/headDim): the Hugging Face layout.
func RoPEHalf(x []float32, nHeads, headDim, pos int, theta float32) {
	ropeCheck("RoPEHalf", x, nHeads, headDim)
	half := headDim / 2
	var buf [256]float32
	cs := buf[:]
	if 2*half > len(buf) {
		cs = make([]float32, 2*half)
	}
	cos, sin := cs[:half], cs[half:2*half]
	ropeTable(cos, sin, headDim, pos, theta)
	for h := range nHeads {
		lo := x[h*headDim : h*headDim+half]
		hi := x[h*headDim+half : (h+1)*headDim]
		for i := range half {
			v0, v1 := lo[i], hi[i]
			lo[i] = float32(v0*cos[i]) - float32(v1*sin[i])
			hi[i] = float32(v0*sin[i]) + float32(v1*cos[i])
		}
	}
}
