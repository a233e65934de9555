package generate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/herd-llm/herd/llama"
)

// BenchResult is one llama-bench style test: a prompt-processing run (pp N)
// or a generation run (tg N), repeated.
type BenchResult struct {
	Test     string    `json:"test"`       // "pp512" or "tg128"
	Tokens   int       `json:"n_tokens"`   // tokens per repetition
	Samples  []float64 `json:"samples_ts"` // tokens/s of each repetition
	Mean     float64   `json:"avg_ts"`
	StdDev   float64   `json:"stddev_ts"`
	Threads  int       `json:"n_threads"`
	Duration []float64 `json:"samples_ns"` // nanoseconds of each repetition
}

// Bench measures prompt processing of pp tokens in one batch and generation
// of tg tokens one at a time, each repeated reps times after one warm-up,
// on random token ids as llama-bench does. pp or tg of 0 skips that test.
func Bench(m *llama.Model, pp, tg, reps, threads int) ([]BenchResult, error) {
	if reps <= 0 {
		return nil, fmt.Errorf("bench: repetitions must be positive")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	toks := func(n int) []int {
		t := make([]int, n)
		for i := range t {
			t[i] = rng.IntN(m.Config.VocabSize)
		}
		return t
	}
	var out []BenchResult
	var state llama.State
	run := func(name string, n int, once func() error) error {
		r := BenchResult{Test: fmt.Sprintf("%s%d", name, n), Tokens: n, Threads: threads}
		for i := -1; i < reps; i++ {
			start := time.Now()
			if err := once(); err != nil {
				return err
			}
			d := time.Since(start)
			if i >= 0 { // i == -1 is the warm-up
				r.Duration = append(r.Duration, float64(d.Nanoseconds()))
				r.Samples = append(r.Samples, float64(n)/d.Seconds())
			}
		}
		r.Mean, r.StdDev = meanSD(r.Samples)
		out = append(out, r)
		return nil
	}
	if pp > 0 {
		cache := m.NewKVCache(pp)
		prompt := toks(pp)
		if err := run("pp", pp, func() error {
			cache.Len = 0
			_, err := m.Forward(&state, cache, prompt, 0, false)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if tg > 0 {
		cache := m.NewKVCache(tg)
		gen := toks(tg)
		if err := run("tg", tg, func() error {
			cache.Len = 0
			for i, t := range gen {
				if _, err := m.Forward(&state, cache, []int{t}, i, false); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func meanSD(x []float64) (float64, float64) {
	var s float64
	for _, v := range x {
		s += v
	}
	mean := s / float64(len(x))
	if len(x) < 2 {
		return mean, 0
	}
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss / float64(len(x)-1))
}
