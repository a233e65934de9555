package synth

import (
	"math/bits"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
)

// RougeTokens splits text into ROUGE tokens the way rouge_score's default
// tokenizer does for English: lowercased, every run of characters that are
// not letters or digits a separator. (rouge_score keeps only a-z and 0-9;
// herd keeps every letter, so text in other scripts has tokens too.)
func RougeTokens(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// RougeL is the ROUGE-L F-measure of two token sequences: with l the length
// of their longest common subsequence, precision l/len(a), recall
// l/len(b), F = 2PR/(P+R) (0 when l is 0).
func RougeL(a, b []int32) float64 {
	return fmeasure(lcsBits(newPattern(a, nil), b), len(a), len(b))
}

func fmeasure(l, la, lb int) float64 {
	if l == 0 {
		return 0
	}
	p, r := float64(l)/float64(la), float64(l)/float64(lb)
	return 2 * p * r / (p + r)
}

// pattern holds, for each token of a sequence a, the bit mask of the
// positions where it occurs: Hyyrö's bit-parallel LCS reads one mask per
// token of the other sequence.
type pattern struct {
	n     int                // len(a)
	words int                // 64-bit words per mask
	masks map[int32][]uint64 // token → occurrence mask (sparse form)
	dense [][]uint64         // token id → mask (nil: absent), when built over a vocabulary
}

// newPattern builds a's masks; with dense != nil (length: the vocabulary's
// size) they are also laid out by token id for fast lookup.
func newPattern(a []int32, dense [][]uint64) *pattern {
	p := &pattern{n: len(a), words: (len(a) + 63) / 64, masks: map[int32][]uint64{}, dense: dense}
	for i, t := range a {
		m := p.masks[t]
		if m == nil {
			m = make([]uint64, p.words)
			p.masks[t] = m
			if t >= 0 && int(t) < len(dense) {
				dense[t] = m
			}
		}
		m[i/64] |= 1 << (i % 64)
	}
	return p
}

func (p *pattern) mask(t int32) []uint64 {
	if p.dense != nil {
		if t >= 0 && int(t) < len(p.dense) {
			return p.dense[t]
		}
		return nil
	}
	return p.masks[t]
}

// lcsBits is the length of the longest common subsequence of p's sequence
// and b (Hyyrö 2004): V starts all ones; for each token y of b, with
// U = V & M[y], V = (V + U) | (V − U); the zeros of V's low n bits count
// the LCS. V − U is V &^ U since U ⊆ V; the addition carries across words.
func lcsBits(p *pattern, b []int32) int {
	if p.n == 0 || len(b) == 0 {
		return 0
	}
	if p.words == 1 {
		v := ^uint64(0)
		for _, t := range b {
			if m := p.mask(t); m != nil {
				u := v & m[0]
				v = (v + u) | (v &^ u)
			}
		}
		return p.n - bits.OnesCount64(v&lowBits(p.n))
	}
	v := make([]uint64, p.words)
	for i := range v {
		v[i] = ^uint64(0)
	}
	for _, t := range b {
		m := p.mask(t)
		if m == nil {
			continue
		}
		var carry uint64
		for i := range v {
			u := v[i] & m[i]
			var sum uint64
			sum, carry = bits.Add64(v[i], u, carry)
			v[i] = sum | (v[i] &^ u)
		}
	}
	ones := 0
	for i := 0; i < p.words-1; i++ {
		ones += bits.OnesCount64(v[i])
	}
	return p.n - ones - bits.OnesCount64(v[p.words-1]&lowBits(p.n-64*(p.words-1)))
}

func lowBits(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// RougeIndex holds the instructions kept so far and finds the one most
// similar to a candidate, in parallel. Add is serialised; Max may run
// concurrently with Add and other Max calls.
type RougeIndex struct {
	mu    sync.RWMutex
	vocab map[string]int32
	seqs  [][]int32
}

// NewRougeIndex returns an empty index.
func NewRougeIndex() *RougeIndex { return &RougeIndex{vocab: map[string]int32{}} }

// Len is the number of instructions added.
func (x *RougeIndex) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.seqs)
}

// Add appends text's tokens.
func (x *RougeIndex) Add(text string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	toks := RougeTokens(text)
	seq := make([]int32, len(toks))
	for i, t := range toks {
		id, ok := x.vocab[t]
		if !ok {
			id = int32(len(x.vocab))
			x.vocab[t] = id
		}
		seq[i] = id
	}
	x.seqs = append(x.seqs, seq)
}

// Max returns the highest ROUGE-L F-measure of text against the
// instructions added with indices in [lo, hi) (hi < 0 or beyond: to the
// last), and the index of that instruction (-1 when there is none). It
// stops early, with some score above stopAbove, once one is found (pass a
// value ≥ 1 to scan everything).
func (x *RougeIndex) Max(text string, lo, hi int, stopAbove float64) (float64, int) {
	x.mu.RLock()
	seqs := x.seqs
	if hi >= 0 && hi < len(seqs) {
		seqs = seqs[:hi]
	}
	lo = min(max(lo, 0), len(seqs))
	toks := RougeTokens(text)
	a := make([]int32, len(toks))
	for i, t := range toks {
		if id, ok := x.vocab[t]; ok {
			a[i] = id
		} else {
			a[i] = -1 // a token no kept instruction has
		}
	}
	dense := make([][]uint64, len(x.vocab))
	x.mu.RUnlock()
	if len(a) == 0 || len(seqs) == 0 {
		return 0, -1
	}
	if lo >= len(seqs) {
		return 0, -1
	}
	p := newPattern(a, dense)
	workers := min(runtime.GOMAXPROCS(0), max(1, (len(seqs)-lo)/256))
	chunk := (len(seqs) - lo + workers - 1) / workers
	type best struct {
		score float64
		at    int
	}
	out := make([]best, workers)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			b := best{-1, -1}
			lo, hi := lo+w*chunk, min(len(seqs), lo+(w+1)*chunk)
			for i := lo; i < hi; i++ {
				if i%64 == 0 && stop.Load() {
					break
				}
				// F ≤ 2·min(m, n)/(m+n): a pair that cannot beat the best is skipped
				if lb := len(seqs[i]); fmeasure(min(len(a), lb), len(a), lb) <= b.score {
					continue
				}
				s := fmeasure(lcsBits(p, seqs[i]), len(a), len(seqs[i]))
				if s > b.score {
					b = best{s, i}
					if s > stopAbove {
						stop.Store(true)
						break
					}
				}
			}
			out[w] = b
		})
	}
	wg.Wait()
	b := best{0, -1}
	for _, o := range out {
		if o.score > b.score || (o.score == b.score && o.score > 0 && o.at < b.at) {
			b = o
		}
	}
	return b.score, b.at
}
