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
			logits := func(m *Model) (all, inc []float32) {
				var s State
				all, err := m.Forward(&s, m.NewKVCache(c.ContextLen), tokens, 0, true)
				if err != nil {
					t.Fatal(err)
				}
				all = append([]float32(nil), all...)
				cache := m.NewKVCache(c.ContextLen)
				for p := range tokens {
					got, err := m.Forward(&s, cache, tokens[p:p+1], p, false)
					if err != nil {
						t.Fatal(err)
					}
					inc = append(inc, got...)
				}
				return all, inc
			}
			wa, wi := logits(plain)
			ga, gi := logits(packed)
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
