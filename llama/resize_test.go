package llama

import (
	"strings"
	"testing"

	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// TestResizeVocab checks that the new rows are the mean of the old ones and
// that the old tokens' logits do not change, for float and quantized
// weights, tied and untied heads.
func TestResizeVocab(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.Q8_0} {
		for _, tied := range []bool{false, true} {
			c := testConfig()
			c.TiedEmbeddings = tied
			m := randomModel(t, c, dt)
			tokens := []int{1, 5, 36, 0, 17}
			logits := func() [][]float32 {
				var s State
				cache := m.NewKVCache(c.ContextLen)
				out, err := m.Forward(&s, cache, tokens, 0, true)
				if err != nil {
					t.Fatal(err)
				}
				rows := make([][]float32, len(tokens))
				for i := range rows {
					rows[i] = append([]float32(nil), out[i*m.Config.VocabSize:(i+1)*m.Config.VocabSize]...)
				}
				return rows
			}
			before := logits()
			old := c.VocabSize
			if err := m.ResizeVocab(old + 9); err != nil {
				t.Fatal(err)
			}
			if m.Config.VocabSize != old+9 || m.Embed.Out != old+9 || m.Output.Out != old+9 || (m.Output == m.Embed) != tied {
				t.Fatalf("%s tied=%v: vocab %d embed %d output %d", dt, tied, m.Config.VocabSize, m.Embed.Out, m.Output.Out)
			}
			after := logits()
			for i := range before {
				for v := range old {
					if before[i][v] != after[i][v] {
						t.Fatalf("%s tied=%v: position %d token %d: logit %g before, %g after", dt, tied, i, v, before[i][v], after[i][v])
					}
				}
			}
			// New rows: the mean of the old rows, to the dtype's precision.
			tol := map[tensor.DType]float64{tensor.F32: 1e-6, tensor.F16: 1e-3, tensor.Q8_0: 2e-3}[dt]
			row := make([]float32, c.Dim)
			for _, w := range []*nn.Linear{m.Embed, m.Output} {
				mean := make([]float64, c.Dim)
				for r := range old {
					w.Row(row, r)
					for i, x := range row {
						mean[i] += float64(x) / float64(old)
					}
				}
				for r := old; r < old+9; r++ {
					w.Row(row, r)
					for i, x := range row {
						if d := float64(x) - mean[i]; d > tol || d < -tol {
							t.Fatalf("%s %s: row %d element %d = %g, mean %g", dt, w.Name, r, i, x, mean[i])
						}
					}
				}
			}
		}
	}
}

func TestResizeVocabErrors(t *testing.T) {
	m := randomModel(t, testConfig(), tensor.F32)
	if err := m.ResizeVocab(10); err == nil || !strings.Contains(err.Error(), "shrinking") {
		t.Errorf("shrinking: %v", err)
	}
	if err := m.ResizeVocab(m.Config.VocabSize); err != nil {
		t.Errorf("same size: %v", err)
	}
}
