// Package generate turns a model's logits into text: samplers and the decode
// loop that feeds a prompt, samples continuations and streams their pieces.
package generate

import (
	"math"
	"math/rand/v2"
	"slices"
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
	tmp  []candidate
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
	// probabilities at temperature 1 decide top-k, top-p and min-p, as in llama.cpp
	cand := s.cand[:0]
	for i, v := range logits {
		cand = append(cand, candidate{i, v})
	}
	s.cand = cand
	if c.TopK > 0 && c.TopK < len(cand) {
		cand = topK(cand, c.TopK)
	}
	softmax(cand, 1)
	if c.MinP > 0 {
		var pmax float32
		for _, k := range cand {
			pmax = max(pmax, k.p)
		}
		cand = filter(cand, pmax*c.MinP)
	}
	if c.TopP > 0 && c.TopP < 1 {
		var total float32
		for _, k := range cand {
			total += k.p
		}
		// a token below (1-P)/(n-1) of the mass can never be inside the
		// nucleus, so only the others need sorting
		if n := len(cand); n > 1 {
			cand = filter(cand, (1-c.TopP)*total/float32(n-1))
		}
		if c.TopK <= 0 || c.TopK >= len(logits) { // topK leaves them sorted
			cand = s.sortByProb(cand)
		}
		var cum float32
		for i := range cand {
			cum += cand[i].p
			if cum >= c.TopP*total {
				cand = cand[:i+1]
				break
			}
		}
	}
	// the kept tokens' logits at the sampling temperature
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

// byProb orders candidates most likely first, lower id first among equals.
func byProb(a, b candidate) int {
	switch {
	case a.p > b.p:
		return -1
	case a.p < b.p:
		return 1
	}
	return a.id - b.id
}

// sortByProb orders candidates given in id order by descending
// probability, lower id first among equals: a stable LSD radix sort on the
// float bits (positive floats order as their bits do), linear in the count.
func (s *Sampler) sortByProb(cand []candidate) []candidate {
	if len(cand) < 256 {
		slices.SortFunc(cand, byProb)
		return cand
	}
	if cap(s.tmp) < len(cand) {
		s.tmp = make([]candidate, len(cand))
	}
	src, dst := cand, s.tmp[:len(cand)]
	for shift := 0; shift < 32; shift += 8 {
		var count [257]int
		for _, k := range src {
			count[(^math.Float32bits(k.p)>>shift)&0xff+1]++
		}
		for i := 1; i < 257; i++ {
			count[i] += count[i-1]
		}
		for _, k := range src {
			b := (^math.Float32bits(k.p) >> shift) & 0xff
			dst[count[b]] = k
			count[b]++
		}
		src, dst = dst, src
	}
	return src // after four passes the sorted data is back in cand
}

// topK keeps the k candidates of largest logit (in descending order).
func topK(cand []candidate, k int) []candidate {
	// a min-heap of the best k seen so far
	h := cand[:k]
	slices.SortFunc(h, byProb)
	slices.Reverse(h) // ascending: h[0] is the weakest kept
	for _, x := range cand[k:] {
		if byProb(x, h[0]) < 0 {
			// replace the weakest and restore order by insertion (k is small)
			i := 0
			for i+1 < k && byProb(x, h[i+1]) < 0 {
				h[i] = h[i+1]
				i++
			}
			h[i] = x
		}
	}
	slices.Reverse(h)
	return h
}

// filter keeps the candidates whose probability is at least floor, in order.
func filter(cand []candidate, floor float32) []candidate {
	out := cand[:0]
	for _, k := range cand {
		if k.p >= floor {
			out = append(out, k)
		}
	}
	return out
}

// softmax turns the logits of cand into probabilities at temperature t.
func softmax(cand []candidate, t float32) {
	mx := cand[0].p
	for _, k := range cand {
		mx = max(mx, k.p)
	}
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
