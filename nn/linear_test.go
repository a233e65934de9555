package nn

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// quantized builds a random out×in weight in dtype dt.
func quantized(t *testing.T, r *rand.Rand, dt tensor.DType, out, in int) []byte {
	t.Helper()
	rb, err := dt.RowBytes(in)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, rb*out)
	row := make([]float32, in)
	for i := 0; i < out; i++ {
		for j := range row {
			row[j] = float32(r.NormFloat64())
		}
		if err := tensor.Quantize(dt, data[i*rb:(i+1)*rb], row); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

// TestForwardDequantFallback checks Linear.Forward for quantized weights
// against a float64 product with the dequantized matrix, for one token and
// for a batch, over several row tiles. A dtype without a kernel goes
// through the dequantizing fallback and must agree to float32 rounding; a
// dtype with a kernel quantizes the activations (Q8_0/Q8_1/Q8_K, as ggml
// does), which costs up to about a percent of the sum of |products|.
func TestForwardDequantFallback(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	in := 256
	out := 2*(1<<18)/in + 3 // three tiles of the fallback, the last one short
	for _, dt := range []tensor.DType{tensor.Q4_K, tensor.NF4, tensor.Q6_K, tensor.Q2_K, tensor.Q5_1, tensor.IQ4_NL} {
		if testing.Short() && dt != tensor.Q4_K && dt != tensor.NF4 {
			continue
		}
		rel := 1e-5
		if kernels.Supports(dt) {
			rel = 2e-2
		}
		data := quantized(t, r, dt, out, in)
		l, err := NewLinear("w", dt, out, in, data)
		if err != nil {
			t.Fatal(err)
		}
		w := make([]float32, out*in)
		if err := tensor.Dequantize(dt, w, data); err != nil {
			t.Fatal(err)
		}
		for _, nt := range []int{1, 5} {
			x := make([]float32, nt*in)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			y := make([]float32, nt*out)
			l.Forward(y, x, nt)
			for tk := 0; tk < nt; tk++ {
				for o := 0; o < out; o++ {
					var ref, mag float64
					for c := 0; c < in; c++ {
						p := float64(w[o*in+c]) * float64(x[tk*in+c])
						ref += p
						mag += math.Abs(p)
					}
					if got := float64(y[tk*out+o]); math.Abs(got-ref) > rel*mag+1e-6 {
						t.Fatalf("%s nt=%d: y[%d][%d] = %g, want %g", dt, nt, tk, o, got, ref)
					}
				}
			}
		}
	}
}

func TestNewLinearRefusesNonFiniteScales(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	data := quantized(t, r, tensor.Q4_K, 4, 512)
	if _, err := NewLinear("w", tensor.Q4_K, 4, 512, data); err != nil {
		t.Fatal(err)
	}
	// block 1 of row 2: d = NaN
	binary.LittleEndian.PutUint16(data[2*2*144+144:], 0x7e00)
	_, err := NewLinear("blk.0.attn_q.weight", tensor.Q4_K, 4, 512, data)
	if err == nil || !strings.Contains(err.Error(), "blk.0.attn_q.weight: row 2: Q4_K: block 1 has scale d = NaN") {
		t.Fatalf("NaN scale: %v", err)
	}
	if _, err := NewLinear("w", tensor.Q4_K, 4, 512, data[:len(data)-144]); err == nil {
		t.Fatal("a missing block was accepted")
	}
}
