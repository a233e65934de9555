package tasks

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// TestBatchInvariance scores the shipped multiple-choice tasks one
// continuation at a time from an empty cache and batched (shared prefixes,
// several questions per pass, with pass budgets from one question to all
// of them). On a model whose widths are multiples of 8 every
// log-likelihood is the same bit for bit. On stories260K (feed-forward
// width 172) they agree to 1e-4 relative (the predictions exactly), not bitwise: kernels.SiLUMul
// runs the AVX2 loop over the first multiple of 8 elements of the whole
// batch and a scalar loop over the rest, whose exponentials differ in the
// last bit, so which elements of a row take which path depends on the
// number of rows in the pass.
func TestBatchInvariance(t *testing.T) {
	m, tok := stories(t)
	c := m.Config
	c.FFNDim, c.NLayers = 176, 3
	m8, err := llama.Random(c, tensor.F32, 7)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariance(t, "stories260K", m, tok, 1e-4)
	checkInvariance(t, "random, FFN 176", m8, tok, 0)
}

func checkInvariance(t *testing.T, name string, m *llama.Model, tok tokenizer.Tokenizer, tol float64) {
	specs := []string{"testdata/hellaswag.yaml", "testdata/arc_easy.yaml", "testdata/mmlu.yaml", "testdata/truthfulqa_mc2.yaml", "testdata/winogrande.yaml", "testdata/colors.yaml"}
	var ts []*Task
	for _, s := range specs {
		ts = append(ts, loadTask(t, s))
	}
	for _, shots := range []int{0, 1} {
		if shots > 0 {
			ts = slices.DeleteFunc(ts, func(t *Task) bool { return t.MaxShots == 0 })
			specs = slices.DeleteFunc(specs, func(s string) bool { return strings.Contains(s, "truthfulqa") })
		}
		one, err := Run(m, tok, ts, Options{Shots: shots, OneAtATime: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, budget := range []int{1, 64, 100000} {
			got, err := Run(m, tok, ts, Options{Shots: shots, BatchTokens: budget})
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				for j, s := range got[i].Samples {
					o := one[i].Samples[j]
					for k, ll := range s.LogLikelihoods {
						if d := math.Abs(ll - o.LogLikelihoods[k]); d > tol*math.Abs(ll) || s.Pred != o.Pred {
							t.Errorf("%s: %s %d-shot budget %d %s: batched %v, one at a time %v", name, specs[i], shots, budget, s.Source, s.LogLikelihoods, o.LogLikelihoods)
							break
						}
					}
				}
				for k, mt := range got[i].Metrics {
					o := one[i].Metrics[k]
					if math.Abs(mt.Value-o.Value) > tol || math.Abs(mt.Stderr-o.Stderr) > tol || tol == 0 && mt != o {
						t.Errorf("%s: %s %d-shot budget %d: batched %+v, one at a time %+v", name, specs[i], shots, budget, mt, o)
					}
				}
			}
		}
	}
}

// TestSharedPrefix checks the prefix the continuations of a question share.
func TestSharedPrefix(t *testing.T) {
	cases := []struct {
		q    []Req
		want int
	}{
		{[]Req{{[]int{1, 2, 3, 4, 5}, 2}, {[]int{1, 2, 3, 9}, 1}}, 2},
		{[]Req{{[]int{1, 2, 3, 4, 5}, 1}, {[]int{1, 2, 3, 4, 9}, 1}}, 3},
		{[]Req{{[]int{1, 2, 3, 4, 5}, 2}, {[]int{1, 2, 7, 9}, 1}}, 2},
		{[]Req{{[]int{1, 2, 3}, 2}, {[]int{1, 2, 3, 9}, 1}}, 0},
		{[]Req{{[]int{1, 2, 3, 4}, 1}}, 2},
	}
	for _, c := range cases {
		if got := sharedPrefix(c.q); got != c.want {
			t.Errorf("sharedPrefix(%v) = %d, want %d", c.q, got, c.want)
		}
	}
}

// TestWaves checks how questions are grouped into passes: up to the
// budget, except that one sharing a long prefix with a question already
// in the pass waits for the next pass (and takes the prefix from the stem).
func TestWaves(t *testing.T) {
	seq := func(prefix []int, tail ...int) []Req {
		return []Req{{append(append([]int(nil), prefix...), append(tail, 1)...), 1}, {append(append([]int(nil), prefix...), append(tail, 2)...), 1}}
	}
	long := make([]int, 40)
	for i := range long {
		long[i] = i + 3
	}
	short := []int{1, 2, 3}
	qs := [][]Req{seq(short, 5), seq(short, 6), seq(long, 7), seq(long, 8), seq(long, 9)}
	var ends []int
	for i := 0; i < len(qs); i = waveEnd(qs, i, 1000) {
		ends = append(ends, waveEnd(qs, i, 1000))
	}
	if !slices.Equal(ends, []int{3, 4, 5}) {
		t.Errorf("wave ends %v, want [3 4 5]", ends)
	}
	ends = ends[:0]
	for i := 0; i < len(qs); i = waveEnd(qs, i, 10) {
		ends = append(ends, waveEnd(qs, i, 10))
	}
	if !slices.Equal(ends, []int{2, 3, 4, 5}) {
		t.Errorf("budget 10: wave ends %v", ends)
	}
}
