package tasks

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/llama"
)

// Req is one continuation to score: the tokens of context and
// continuation together, the last Cont of them the continuation.
type Req struct {
	Tokens []int
	Cont   int
}

// Score is a continuation's log-likelihood under the model.
type Score struct {
	LogProb float64 // Σ log p(token | everything before it) over the continuation, natural log
	Greedy  bool    // every continuation token was the most likely one
}

// Scorer computes the log-likelihoods of continuations. Batched (the
// default), the continuations of one question share its context: the
// longest token prefix they have in common runs once, its keys and values
// are copied into each continuation's cache, and the rest of every
// continuation runs in one pass, several questions together up to
// BatchTokens tokens per pass. The longest prefix of each pass is kept (the
// stem), and a later question runs only the part of its prefix past what it
// shares with the stem: MMLU's questions of a subject share their few-shot
// examples, TruthfulQA's its primer. OneAtATime runs each continuation alone
// from an empty cache, as the harness with batch size 1 does; both give
// the same log-likelihoods (kernels.MatMul computes a row the same way in
// any batch, and keys and values are rounded once, as they enter a cache).
type Scorer struct {
	Model       *llama.Model
	BatchTokens int // tokens per forward pass (default 512)
	OneAtATime  bool

	state  llama.State
	caches []*llama.KVCache // per continuation of a wave
	heads  []*llama.KVCache // per question of a wave: its shared prefix
	// stem is the last wave's longest prefix, kept so that the next
	// questions run only what follows the part they have in common with
	// it: the few-shot examples of an MMLU subject, TruthfulQA's primer.
	stem     *llama.KVCache
	stemToks []int
}

// cache returns slot i of pool with room for n positions, emptied.
func (s *Scorer) cache(pool *[]*llama.KVCache, i, n int) *llama.KVCache {
	for len(*pool) <= i {
		*pool = append(*pool, nil)
	}
	c := (*pool)[i]
	if c == nil || c.Cap < n {
		c = s.Model.NewKVCache((n + 63) &^ 63)
		(*pool)[i] = c
	}
	c.Len = 0
	return c
}

// check refuses requests the scorer cannot run.
func (s *Scorer) check(qs [][]Req) error {
	for i, q := range qs {
		for j, r := range q {
			if r.Cont < 1 || r.Cont >= len(r.Tokens) {
				return fmt.Errorf("question %d continuation %d: %d continuation tokens of %d", i, j, r.Cont, len(r.Tokens))
			}
		}
	}
	return nil
}

// Score returns the scores of every question's continuations, calling done
// (when set) with the number of questions finished after each pass.
func (s *Scorer) Score(qs [][]Req, done func(int)) ([][]Score, error) {
	if err := s.check(qs); err != nil {
		return nil, err
	}
	out := make([][]Score, len(qs))
	if s.OneAtATime {
		for i, q := range qs {
			out[i] = make([]Score, len(q))
			for j, r := range q {
				c := s.cache(&s.caches, 0, len(r.Tokens)-1)
				logits, err := s.Model.Forward(&s.state, c, r.Tokens[:len(r.Tokens)-1], 0, true)
				if err != nil {
					return nil, err
				}
				out[i][j] = s.score(logits, r, 0)
			}
			if done != nil {
				done(i + 1)
			}
		}
		return out, nil
	}
	budget := s.BatchTokens
	if budget <= 0 {
		budget = 512
	}
	for i := 0; i < len(qs); {
		j := waveEnd(qs, i, budget)
		if err := s.wave(qs[i:j], out[i:j]); err != nil {
			return nil, err
		}
		if done != nil {
			done(j)
		}
		i = j
	}
	return out, nil
}

// waveEnd picks the questions from i on that run in one wave: up to budget
// tokens (at least one question). A question that shares a long prefix
// with one already in the wave starts the next wave instead, where it takes
// that prefix from the stem rather than computing it again.
func waveEnd(qs [][]Req, i, budget int) int {
	j, cost := i, 0
	for ; j < len(qs); j++ {
		c := waveCost(qs[j])
		if j > i && cost+c > budget {
			break
		}
		prefix := qs[j][0].Tokens[:sharedPrefix(qs[j])]
		for k := i; k < j; k++ {
			if longShared(qs[k][0].Tokens, prefix) {
				return j
			}
		}
		cost += c
	}
	return j
}

// longShared reports whether prefix shares more than 32 tokens, and at
// least half of itself, with first.
func longShared(first, prefix []int) bool {
	k := 0
	for k < min(len(first), len(prefix)) && first[k] == prefix[k] {
		k++
	}
	return k > 32 && 2*k >= len(prefix)
}

// sharedPrefix is the number of leading positions a question's
// continuations share and can run once: the common token prefix, short
// enough that every continuation keeps at least its first scored input.
func sharedPrefix(q []Req) int {
	p := len(q[0].Tokens)
	for _, r := range q {
		p = min(p, len(r.Tokens)-r.Cont-1)
		for k := 0; k < p; k++ {
			if r.Tokens[k] != q[0].Tokens[k] {
				p = k
				break
			}
		}
	}
	return max(p, 0)
}

// waveCost is the tokens a question puts through the model when batched.
func waveCost(q []Req) int {
	p := sharedPrefix(q)
	n := p
	for _, r := range q {
		n += len(r.Tokens) - 1 - p
	}
	return n
}

// wave scores questions together: their shared prefixes in one pass, then
// every continuation's remaining tokens in a second.
func (s *Scorer) wave(qs [][]Req, out [][]Score) error {
	pre := make([]int, len(qs))
	var heads []llama.Seq
	var headOf []*llama.KVCache
	longest := -1
	for i, q := range qs {
		pre[i] = sharedPrefix(q)
		headOf = append(headOf, nil)
		if pre[i] == 0 {
			continue
		}
		c := s.cache(&s.heads, i, pre[i])
		headOf[i] = c
		toks := q[0].Tokens[:pre[i]]
		if k := s.fromStem(c, toks); k < len(toks) {
			heads = append(heads, llama.Seq{Tokens: toks[k:], Cache: c})
		}
		if longest < 0 || pre[i] > pre[longest] {
			longest = i
		}
	}
	if len(heads) > 0 {
		if _, err := s.Model.ForwardBatch(&s.state, heads); err != nil {
			return err
		}
	}
	if longest >= 0 {
		s.keepStem(headOf[longest], qs[longest][0].Tokens[:pre[longest]])
	}
	var seqs []llama.Seq
	for i, q := range qs {
		for _, r := range q {
			c := s.cache(&s.caches, len(seqs), len(r.Tokens)-1)
			if headOf[i] != nil {
				copyPrefix(c, headOf[i], pre[i], s.Model.Config.KVDim())
			}
			seqs = append(seqs, llama.Seq{Tokens: r.Tokens[pre[i] : len(r.Tokens)-1], Cache: c, All: true})
		}
	}
	logits, err := s.Model.ForwardBatch(&s.state, seqs)
	if err != nil {
		return err
	}
	k := 0
	for i, q := range qs {
		out[i] = make([]Score, len(q))
		for j, r := range q {
			out[i][j] = s.score(logits[k], r, pre[i])
			k++
		}
	}
	return nil
}

// fromStem copies into c the positions toks shares with the stem and
// returns how many.
func (s *Scorer) fromStem(c *llama.KVCache, toks []int) int {
	k := 0
	for k < min(len(toks), len(s.stemToks)) && toks[k] == s.stemToks[k] {
		k++
	}
	if k > 0 {
		copyPrefix(c, s.stem, k, s.Model.Config.KVDim())
	}
	return k
}

// keepStem makes the n = len(toks) positions of c the stem.
func (s *Scorer) keepStem(c *llama.KVCache, toks []int) {
	if s.stem == nil || s.stem.Cap < len(toks) {
		s.stem = s.Model.NewKVCache((len(toks) + 63) &^ 63)
	}
	copyPrefix(s.stem, c, len(toks), s.Model.Config.KVDim())
	s.stemToks = append(s.stemToks[:0], toks...)
}

// copyPrefix makes dst hold the first n positions of src. The callers
// size dst for n positions and src holds them, so an error here is a bug
// in this file, not bad input.
func copyPrefix(dst, src *llama.KVCache, n, _ int) {
	if err := dst.CopyPrefix(src, n); err != nil {
		panic("eval/tasks: " + err.Error())
	}
}

// score sums the continuation's log-probabilities from logits whose row
// r holds the prediction for position from+r+1.
func (s *Scorer) score(logits []float32, r Req, from int) Score {
	v := s.Model.Config.VocabSize
	sc := Score{Greedy: true}
	for pos := len(r.Tokens) - r.Cont; pos < len(r.Tokens); pos++ {
		row := logits[(pos-1-from)*v : (pos-from)*v]
		lp, top := logProb(row, r.Tokens[pos])
		sc.LogProb += lp
		sc.Greedy = sc.Greedy && top
	}
	return sc
}

// logProb is log softmax(row)[tok] in float64, and whether tok is the
// most likely token (the first of equals, as argmax takes it).
func logProb(row []float32, tok int) (float64, bool) {
	best := 0
	for i, x := range row {
		if x > row[best] {
			best = i
		}
	}
	mx := float64(row[best])
	var sum float64
	for _, x := range row {
		sum += math.Exp(float64(x) - mx)
	}
	return float64(row[tok]) - mx - math.Log(sum), best == tok
}
