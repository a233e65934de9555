package llama

import (
	"math"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// TestForwardLayer walks a model layer by layer with EmbedTokens and
// ForwardLayer (two sequences at once) and checks the logits against the
// float64 reference forward pass, and that Observe sees every product's
// input.
func TestForwardLayer(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	seqs := [][]int{{1, 5, 9, 36, 2}, {17, 3, 3, 8, 30}}
	n := len(seqs[0])
	x := make([]float32, 2*n*c.Dim)
	if err := m.EmbedTokens(x, append(append([]int(nil), seqs[0]...), seqs[1]...)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, wp := range l.Matrices() {
			w := *wp
			w.Observe = func(in []float32, nt int) {
				if len(in) != nt*w.In {
					t.Errorf("%s: observed %d floats for %d rows of %d", w.Name, len(in), nt, w.In)
				}
				seen[w.Name] += nt
			}
		}
	}
	var s State
	for li := range m.Layers {
		if err := m.ForwardLayer(&s, li, x, n); err != nil {
			t.Fatal(err)
		}
	}
	for name, rows := range seen {
		if rows != 2*n {
			t.Errorf("%s observed %d rows, want %d", name, rows, 2*n)
		}
	}
	if len(seen) != 7*c.NLayers {
		t.Errorf("%d matrices observed, want %d", len(seen), 7*c.NLayers)
	}
	row := make([]float32, c.Dim)
	for q, toks := range seqs {
		want := refForward(m, toks)
		for p := range toks {
			h := x[(q*n+p)*c.Dim : (q*n+p+1)*c.Dim]
			var ss float64
			for _, v := range h {
				ss += float64(v) * float64(v)
			}
			inv := 1 / math.Sqrt(ss/float64(c.Dim)+float64(c.NormEps))
			got := make([]float32, c.VocabSize)
			for v := range got {
				m.Output.Row(row, v)
				var d float64
				for k, w := range row {
					d += float64(w) * float64(h[k]) * inv * float64(m.OutNorm[k])
				}
				got[v] = float32(d)
			}
			if e := maxRelErr(got, want[p]); e > 1e-4 {
				t.Errorf("sequence %d position %d: logits differ from the reference by %.3g", q, p, e)
			}
		}
	}
	if err := m.ForwardLayer(&s, 0, x[:7], n); err == nil {
		t.Error("a partial sequence: no error")
	}
}
