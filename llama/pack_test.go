package llama

import (
	"math"
	"testing"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// TestPackForInference: a model whose Q4_0 and Q8_0 matrices were packed
// into the eight-row layouts computes the plain model's logits, bit for bit
// where the plain kernels sum as the packed ones do (a whole prompt at once
// and token by token, through the tile and the one-row kernels); the
// embedding stays plain, the output matrix (37 rows: four groups and five
// plain rows) is packed.
func TestPackForInference(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.Q4_0, tensor.Q8_0} {
		t.Run(dt.String(), func(t *testing.T) {
			c := testConfig()
			plain, packed := randomModel(t, c, dt), randomModel(t, c, dt)
			n := packed.PackForInference()
			_, asm := kernels.PackedLayout(dt)
			if want := map[bool]int{true: 7*c.NLayers + 1, false: 0}[asm]; n != want {
				t.Fatalf("PackForInference converted %d matrices, want %d (%s path)", n, want, kernels.CPUPath())
			}
			if !asm {
				t.Skipf("the %s path has no packed layout for %s", kernels.CPUPath(), dt)
			}
			if packed.Embed.DType != dt || !tensor.IsPacked(packed.Output.DType) || !tensor.IsPacked(packed.Layers[1].Down.DType) {
				t.Fatalf("dtypes after packing: embed %s, output %s, down %s", packed.Embed.DType, packed.Output.DType, packed.Layers[1].Down.DType)
			}
			exact := !(dt == tensor.Q8_0 && kernels.CPUPath() == kernels.PathAVX512)
			tokens := []int{1, 5, 9, 36, 0, 17, 17, 3, 22, 11, 4, 8, 2, 30, 31, 7}
			wa, wi := promptAndSteps(t, plain, tokens)
			ga, gi := promptAndSteps(t, packed, tokens)
			for name, pair := range map[string][2][]float32{"batched": {ga, wa}, "token by token": {gi, wi}} {
				got, want := pair[0], pair[1]
				for i := range want {
					if exact && math.Float32bits(got[i]) != math.Float32bits(want[i]) ||
						math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("%s: logit %d of position %d = %g, plain %g", name, i%c.VocabSize, i/c.VocabSize, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestPackForInferenceTied: a tied output matrix is the embedding, read
// a row at a time, and stays plain.
func TestPackForInferenceTied(t *testing.T) {
	c := testConfig()
	c.TiedEmbeddings = true
	m := randomModel(t, c, tensor.Q4_0)
	m.PackForInference()
	if m.Output != m.Embed || m.Embed.DType != tensor.Q4_0 {
		t.Fatalf("tied output: %s, embedding %s", m.Output.DType, m.Embed.DType)
	}
}

// TestPackForInferenceKQuants: Q4_K and Q6_K matrices whose rows are a
// multiple of eight are packed (their products within float32 rounding of
// the plain model's: the same sums added in another order); the output
// matrix of 37 rows stays plain.
func TestPackForInferenceKQuants(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.Q4_K, tensor.Q6_K} {
		t.Run(dt.String(), func(t *testing.T) {
			c := Config{Dim: 256, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 512, VocabSize: 37, ContextLen: 16,
				RopeTheta: 10000, NormEps: 1e-5}
			plain, packed := randomModel(t, c, dt), randomModel(t, c, dt)
			n := packed.PackForInference()
			if _, asm := kernels.PackedLayout(dt); !asm {
				if n != 0 {
					t.Fatalf("converted %d matrices without packed kernels", n)
				}
				t.Skipf("the %s path has no packed layout for %s", kernels.CPUPath(), dt)
			}
			if n != 7*c.NLayers || packed.Output.DType != dt {
				t.Fatalf("converted %d matrices (want %d), output %s", n, 7*c.NLayers, packed.Output.DType)
			}
			tokens := []int{1, 5, 9, 36, 0, 17, 17, 3, 22}
			var s State
			want, err := plain.Forward(&s, plain.NewKVCache(c.ContextLen), tokens, 0, true)
			if err != nil {
				t.Fatal(err)
			}
			want = append([]float32(nil), want...)
			got, err := packed.Forward(&s, packed.NewKVCache(c.ContextLen), tokens, 0, true)
			if err != nil {
				t.Fatal(err)
			}
			if e := maxRelErr(got, func() []float64 {
				w := make([]float64, len(want))
				for i, v := range want {
					w[i] = float64(v)
				}
				return w
			}()); e > 1e-4 {
				t.Fatalf("packed logits differ from plain by %.3g (relative to the largest)", e)
			}
		})
	}
}

// TestPackForInferenceNoMmap: with NoMmap the matrices that are not
// repacked (F32 here; the whole model on the pure-Go path) move into the
// arena unchanged, the embedding stays where it was, and the logits are the
// unmoved model's bit for bit.
func TestPackForInferenceNoMmap(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.Q4_0} {
		t.Run(dt.String(), func(t *testing.T) {
			c := testConfig()
			plain, moved := randomModel(t, c, dt), randomModel(t, c, dt)
			defer moved.Close()
			embed, down := &moved.Embed.Data[0], &moved.Layers[1].Down.Data[0]
			moved.NoMmap = true
			moved.PackForInference()
			if &moved.Embed.Data[0] != embed {
				t.Fatal("NoMmap moved the embedding")
			}
			if &moved.Layers[1].Down.Data[0] == down {
				t.Fatalf("NoMmap left the %s down matrix in place", moved.Layers[1].Down.DType)
			}
			if _, packs := kernels.PackedLayout(dt); !packs && moved.Layers[1].Down.DType != dt {
				t.Fatalf("NoMmap changed the down matrix's type to %s", moved.Layers[1].Down.DType)
			}
			tokens := []int{1, 5, 9, 36, 0, 17, 17, 3}
			logits := func(m *Model) []float32 {
				var s State
				all, err := m.Forward(&s, m.NewKVCache(c.ContextLen), tokens, 0, true)
				if err != nil {
					t.Fatal(err)
				}
				return append([]float32(nil), all...)
			}
			want, got := logits(plain), logits(moved)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("logit %d = %g, unmoved %g", i, got[i], want[i])
				}
			}
		})
	}
}

// TestPackForInferenceF16: on the assembly paths an F16 model's matrices
// whose rows come in whole groups of 32 are packed into F16x32 (a row sum
// in one chain of multiply-adds instead of sixteen lanes, so the logits
// agree with the plain model's within rounding), the others stay F16, and
// the packed model's logits are the same bit for bit whether the prompt
// goes through at once (the tiles) or token by token (the mat-vec).
func TestPackForInferenceF16(t *testing.T) {
	c := Config{Dim: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 96, VocabSize: 70, ContextLen: 16,
		RopeTheta: 10000, NormEps: 1e-5} // K and V 32 rows, the output 70: not packed
	plain, packed := randomModel(t, c, tensor.F16), randomModel(t, c, tensor.F16)
	defer packed.Close()
	n := packed.PackForInference()
	_, asm := kernels.PackedLayout(tensor.F16)
	if want := map[bool]int{true: 7 * c.NLayers, false: 0}[asm]; n != want {
		t.Fatalf("PackForInference converted %d matrices, want %d (%s path)", n, want, kernels.CPUPath())
	}
	if !asm {
		t.Skipf("the %s path has no packed layout for F16", kernels.CPUPath())
	}
	if packed.Layers[0].Wq.DType != tensor.F16x32 || packed.Layers[1].Down.DType != tensor.F16x32 ||
		packed.Output.DType != tensor.F16 || packed.Embed.DType != tensor.F16 {
		t.Fatalf("dtypes after packing: wq %s, down %s, output %s, embed %s", packed.Layers[0].Wq.DType,
			packed.Layers[1].Down.DType, packed.Output.DType, packed.Embed.DType)
	}
	tokens := []int{1, 5, 9, 36, 0, 17, 17, 3, 22, 11, 4, 8, 2, 30, 31, 7}
	wa, _ := promptAndSteps(t, plain, tokens)
	ga, gi := promptAndSteps(t, packed, tokens)
	for i := range wa {
		if math.Float32bits(ga[i]) != math.Float32bits(gi[i]) {
			t.Fatalf("logit %d of position %d: %g for the whole prompt, %g token by token", i%c.VocabSize, i/c.VocabSize, ga[i], gi[i])
		}
		if math.Abs(float64(ga[i]-wa[i])) > 1e-4*(1+math.Abs(float64(wa[i]))) {
			t.Fatalf("logit %d of position %d = %g, plain F16 %g", i%c.VocabSize, i/c.VocabSize, ga[i], wa[i])
		}
	}
}

// promptAndSteps returns m's logits for every position of tokens computed
// as one prompt (all) and one token at a time (inc).
func promptAndSteps(t *testing.T, m *Model, tokens []int) (all, inc []float32) {
	t.Helper()
	var s State
	all, err := m.Forward(&s, m.NewKVCache(m.Config.ContextLen), tokens, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	all = append([]float32(nil), all...)
	cache := m.NewKVCache(m.Config.ContextLen)
	for p := range tokens {
		got, err := m.Forward(&s, cache, tokens[p:p+1], p, false)
		if err != nil {
			t.Fatal(err)
		}
		inc = append(inc, got...)
	}
	return all, inc
}
