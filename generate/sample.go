// Package generate turns a model's logits into text: samplers and the decode
// loop that feeds a prompt, samples continuations and streams their pieces.
package generate

import (
	"math"
	"math/rand/v2"
	"sort"
)

// SamplerConfig chooses how a token is drawn from the logits. The filters run
// in llama.cpp's order: repetition penalty, top-k, top-p, min-p, temperature.
type SamplerConfig struct {
	Temperature   float32 // 0 means greedy (argmax)
	TopK          int     // keep the K most likely tokens; 0 keeps all
	TopP          float32 // keep the smallest set whose probability reaches P; 0 or 1 keeps all
	MinP          float32 // drop tokens less likely than MinP × the most likely; 0 keeps all
	RepeatPenalty float32 // CTRL-style penalty on tokens among the last RepeatLastN; 0 or 1 is off
	RepeatLastN   int     // window of the repetition penalty (default 64)
	Seed          uint64  // the random stream; the same seed gives the same text
}

// Sampler draws tokens from logits. It is not safe for concurrent use.
type Sampler struct {
	cfg  SamplerConfig
	rng  *rand.Rand
	cand []candidate
}

type candidate struct {
	id int
	p  float32 // logit, then probability
}

// NewSampler returns a sampler seeded with cfg.Seed.
func NewSampler(cfg SamplerConfig) *Sampler {
	if cfg.RepeatLastN == 0 {
		cfg.RepeatLastN = 64
	}
	return &Sampler{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// Config returns the sampler's settings.
func (s *Sampler) Config() SamplerConfig { return s.cfg }

// Argmax returns the index of the largest logit (the first of equals).
func Argmax(logits []float32) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return best
}

// Sample picks the next token. history holds the tokens so far (for the
// repetition penalty); logits are modified in place by the penalty.
func (s *Sampler) Sample(logits []float32, history []int) int {
	c := s.cfg
	if c.RepeatPenalty > 0 && c.RepeatPenalty != 1 {
		seen := map[int]bool{}
		for _, t := range history[max(0, len(history)-c.RepeatLastN):] {
			if t < 0 || t >= len(logits) || seen[t] {
				continue
			}
			seen[t] = true
			if logits[t] > 0 {
				logits[t] /= c.RepeatPenalty
			} else {
				logits[t] *= c.RepeatPenalty
			}
		}
	}
	if c.Temperature <= 0 {
		return Argmax(logits)
	}
	cand := s.cand[:0]
	for i, v := range logits {
		cand = append(cand, candidate{i, v})
	}
	s.cand = cand
	sort.Slice(cand, func(i, j int) bool {
		if cand[i].p != cand[j].p {
			return cand[i].p > cand[j].p
		}
		return cand[i].id < cand[j].id
	})
	if c.TopK > 0 && c.TopK < len(cand) {
		cand = cand[:c.TopK]
	}
	// probabilities at temperature 1 decide top-p and min-p, as llama.cpp does
	softmax(cand, 1)
	if c.TopP > 0 && c.TopP < 1 {
		var cum float32
		for i := range cand {
			cum += cand[i].p
			if cum >= c.TopP {
				cand = cand[:i+1]
				break
			}
		}
	}
	if c.MinP > 0 {
		floor := cand[0].p * c.MinP
		n := 1
		for n < len(cand) && cand[n].p >= floor {
			n++
		}
		cand = cand[:n]
	}
	// back to logits for the kept set, then temperature
	for i := range cand {
		cand[i].p = logits[cand[i].id]
	}
	softmax(cand, c.Temperature)
	r := s.rng.Float32()
	var cum float32
	for _, k := range cand {
		cum += k.p
		if r < cum {
			return k.id
		}
	}
	return cand[len(cand)-1].id
}

// softmax turns the logits of cand (sorted, largest first) into probabilities at temperature t.
func softmax(cand []candidate, t float32) {
	mx := cand[0].p
	var sum float64
	for i := range cand {
		e := math.Exp(float64((cand[i].p - mx) / t))
		cand[i].p = float32(e)
		sum += e
	}
	for i := range cand {
		cand[i].p = float32(float64(cand[i].p) / sum)
	}
}
