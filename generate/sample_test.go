package generate

import (
	"math"
	"slices"
	"testing"
)

func logits(p ...float64) []float32 {
	l := make([]float32, len(p))
	for i, v := range p {
		l[i] = float32(math.Log(v))
	}
	return l
}

// freq draws n samples and returns the share of each token.
func freq(cfg SamplerConfig, l []float32, n int) []float64 {
	s := NewSampler(cfg)
	f := make([]float64, len(l))
	buf := make([]float32, len(l))
	for i := 0; i < n; i++ {
		copy(buf, l)
		f[s.Sample(buf, nil)]++
	}
	for i := range f {
		f[i] /= float64(n)
	}
	return f
}

func near(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if math.Abs(got[i]-want[i]) > tol {
			t.Errorf("%s: token %d drawn %.3f of the time, want %.3f", what, i, got[i], want[i])
		}
	}
}

func TestSamplerDistributions(t *testing.T) {
	l := logits(0.5, 0.3, 0.15, 0.05)
	const n = 40000
	near(t, "temperature 1", freq(SamplerConfig{Temperature: 1, Seed: 1}, l, n), []float64{0.5, 0.3, 0.15, 0.05}, 0.015)
	// top-k 2 renormalises the two best
	near(t, "top-k 2", freq(SamplerConfig{Temperature: 1, TopK: 2, Seed: 2}, l, n), []float64{0.625, 0.375, 0, 0}, 0.015)
	// top-p 0.75: 0.5 < 0.75 ≤ 0.8, so tokens 0 and 1
	near(t, "top-p 0.75", freq(SamplerConfig{Temperature: 1, TopP: 0.75, Seed: 3}, l, n), []float64{0.625, 0.375, 0, 0}, 0.015)
	// top-p 0.95: 0.95 reached with the third token
	near(t, "top-p 0.95", freq(SamplerConfig{Temperature: 1, TopP: 0.95, Seed: 4}, l, n), []float64{0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}, 0.015)
	// min-p 0.5: floor 0.25 keeps tokens 0 and 1
	near(t, "min-p 0.5", freq(SamplerConfig{Temperature: 1, MinP: 0.5, Seed: 5}, l, n), []float64{0.625, 0.375, 0, 0}, 0.015)
	// temperature 0.5 squares the probabilities before renormalising
	sq := []float64{0.25, 0.09, 0.0225, 0.0025}
	var z float64
	for _, v := range sq {
		z += v
	}
	for i := range sq {
		sq[i] /= z
	}
	near(t, "temperature 0.5", freq(SamplerConfig{Temperature: 0.5, Seed: 6}, l, n), sq, 0.015)
	// top-k 1 is greedy at any temperature
	near(t, "top-k 1", freq(SamplerConfig{Temperature: 5, TopK: 1, Seed: 7}, l, 200), []float64{1, 0, 0, 0}, 0)
}

func TestSamplerGreedyAndPenalty(t *testing.T) {
	s := NewSampler(SamplerConfig{})
	if got := s.Sample([]float32{0.1, 3, 3, -1}, nil); got != 1 {
		t.Errorf("greedy picked %d, want the first of the largest (1)", got)
	}
	s = NewSampler(SamplerConfig{RepeatPenalty: 1.2})
	if got := s.Sample([]float32{2, 1.9}, []int{0}); got != 1 {
		t.Errorf("penalty: picked %d: 2/1.2 < 1.9 should lose", got)
	}
	if got := s.Sample([]float32{-1, -1.1}, []int{0}); got != 1 {
		t.Errorf("penalty on a negative logit: picked %d: -1·1.2 < -1.1 should lose", got)
	}
	// outside the window the penalty does not apply
	s = NewSampler(SamplerConfig{RepeatPenalty: 1.2, RepeatLastN: 1})
	if got := s.Sample([]float32{2, 1.9}, []int{0, 1}); got != 0 {
		t.Errorf("penalty window: picked %d", got)
	}
}

func TestSamplerSeeded(t *testing.T) {
	l := logits(0.2, 0.2, 0.2, 0.2, 0.2)
	draw := func(seed uint64) []int {
		s := NewSampler(SamplerConfig{Temperature: 1, TopP: 0.9, Seed: seed})
		var out []int
		for i := 0; i < 64; i++ {
			out = append(out, s.Sample(append([]float32(nil), l...), nil))
		}
		return out
	}
	a, b, c := draw(9), draw(9), draw(10)
	same := func(x, y []int) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("the same seed drew different tokens")
	}
	if same(a, c) {
		t.Error("different seeds drew the same 64 tokens")
	}
}

func TestTopKOrder(t *testing.T) {
	cand := []candidate{{0, 1}, {1, 5}, {2, 3}, {3, 5}, {4, 4}, {5, -1}}
	got := topK(cand, 3)
	want := []int{1, 3, 4}
	for i, k := range got {
		if k.id != want[i] {
			t.Fatalf("topK = %v, want ids %v", got, want)
		}
	}
}

func TestSortByProb(t *testing.T) {
	var s Sampler
	cand := make([]candidate, 1000)
	for i := range cand {
		cand[i] = candidate{i, float32((i*7919)%97) / 97}
	}
	got := s.sortByProb(append([]candidate(nil), cand...))
	want := append([]candidate(nil), cand...)
	slices.SortFunc(want, byProb)
	if !slices.Equal(got, want) {
		t.Error("radix sort differs from the comparison sort")
	}
}
