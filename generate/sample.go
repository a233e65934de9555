// Package generate turns a model's logits into text: samplers and the decode
// loop that feeds a prompt, samples continuations and streams their pieces.
package generate

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
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
	// PresencePenalty and FrequencyPenalty lower the logit of every token
	// already generated (since the last Begin) by presence + frequency × its
	// count, OpenAI's definition; 0 is off. They apply before the
	// repetition penalty.
	PresencePenalty, FrequencyPenalty float32
	Seed                              uint64 // the random stream; the same seed gives the same text
}

// Sampler draws tokens from logits. It is not safe for concurrent use.
type Sampler struct {
	cfg    SamplerConfig
	rng    *rand.Rand
	cand   []candidate
	tmp    []candidate
	counts map[int]int // tokens drawn by Next since Begin (for the penalties)
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

// Begin starts a new generation: the presence and frequency penalties
// count tokens from here on.
func (s *Sampler) Begin() { clear(s.counts) }

// Next is the one decoding step every loop of herd takes (Session.Continue,
// Session.Reply, the Scheduler): it checks that the model's logits are
// finite (a *NonFiniteError when not; pos is the position whose logits
// they are), lowers the tokens generated since Begin by the presence and
// frequency penalties, draws with Sample and counts the token drawn.
// logits are modified in place.
func (s *Sampler) Next(logits []float32, history []int, pos int) (int, error) {
	if err := CheckLogits(logits, pos); err != nil {
		return 0, err
	}
	c := s.cfg
	for t, n := range s.counts {
		logits[t] -= c.PresencePenalty + c.FrequencyPenalty*float32(n)
	}
	next := s.Sample(logits, history)
	if c.PresencePenalty != 0 || c.FrequencyPenalty != 0 {
		if s.counts == nil {
			s.counts = map[int]int{}
		}
		s.counts[next]++
	}
	return next, nil
}

// NonFiniteError says a model produced a NaN or infinite logit: the file's
// weights (or an adapter's) are broken. It fails the generation it belongs
// to, never the process.
type NonFiniteError struct {
	Pos   int     // position (0-based) in the sequence whose logits these are
	Token int     // index of the first non-finite logit
	Value float32 // its value
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("the model produced %v at position %d (the logit of token %d): its weights are not finite", e.Value, e.Pos, e.Token)
}

// CheckLogits returns a *NonFiniteError for the first NaN or ±Inf in
// logits, the logits of position pos.
func CheckLogits(logits []float32, pos int) error {
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return &NonFiniteError{Pos: pos, Token: i, Value: v}
		}
	}
	if len(logits) == 0 {
		return fmt.Errorf("generate: no logits at position %d", pos)
	}
	return nil
}

// Sample picks the next token. history holds the tokens so far (for the
// repetition penalty); logits are modified in place by the penalty. It
// never panics: a NaN logit is never drawn (nor is +Inf preferred over
// it), and when the filters leave nothing the most likely token is taken;
// Next is the entry that refuses non-finite logits instead.
func (s *Sampler) Sample(logits []float32, history []int) int {
	c := s.cfg
	if len(logits) == 0 {
		return 0
	}
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
	cand = dropNaN(cand)
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
	if len(cand) == 0 {
		return Argmax(logits)
	}
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

// dropNaN removes candidates whose probability is not a number (from a NaN
// or infinite logit), in order.
func dropNaN(cand []candidate) []candidate {
	out := cand[:0]
	for _, k := range cand {
		if k.p == k.p {
			out = append(out, k)
		}
	}
	return out
}

// softmax turns the logits of cand into probabilities at temperature t.
func softmax(cand []candidate, t float32) {
	if len(cand) == 0 {
		return
	}
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

// ParamError is a sampling parameter outside its range. Param is the name
// the OpenAI API gives it (temperature, top_p, …).
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Msg }

// Validate checks the sampling parameters against the ranges herd accepts
// everywhere (the OpenAI API's where it has them): temperature in [0, 2],
// top-p and min-p in [0, 1] (0 is off), top-k and the repetition window at
// least 0, a repetition penalty of 0 (off) or more, presence and frequency
// penalties in [-2, 2]. NaN is outside every range. The server and the
// command line call it alike.
func (c SamplerConfig) Validate() error {
	bad := func(param, format string, v ...any) error {
		return &ParamError{Param: param, Msg: fmt.Sprintf(format, v...)}
	}
	in := func(v float32, lo, hi float32) bool { return v >= lo && v <= hi }
	switch {
	case !in(c.Temperature, 0, 2):
		return bad("temperature", "temperature %g is outside [0, 2] (0 is greedy)", c.Temperature)
	case !in(c.TopP, 0, 1):
		return bad("top_p", "top_p %g is outside [0, 1] (0 or 1: off)", c.TopP)
	case !in(c.MinP, 0, 1):
		return bad("min_p", "min_p %g is outside [0, 1] (0: off)", c.MinP)
	case c.TopK < 0:
		return bad("top_k", "top_k %d is negative (0: off)", c.TopK)
	case !(c.RepeatPenalty >= 0) || math.IsInf(float64(c.RepeatPenalty), 0):
		return bad("repeat_penalty", "repeat_penalty %g must be finite and at least 0 (0 or 1: off)", c.RepeatPenalty)
	case c.RepeatLastN < 0:
		return bad("repeat_last_n", "repeat_last_n %d is negative", c.RepeatLastN)
	case !in(c.PresencePenalty, -2, 2):
		return bad("presence_penalty", "presence_penalty %g is outside [-2, 2]", c.PresencePenalty)
	case !in(c.FrequencyPenalty, -2, 2):
		return bad("frequency_penalty", "frequency_penalty %g is outside [-2, 2]", c.FrequencyPenalty)
	}
	return nil
}

// RandomSeed draws a seed from the operating system's random source, for a
// generation given none (llama.cpp does the same and prints it).
func RandomSeed() uint64 {
	var b [8]byte
	crand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}
