// Package eval measures models the way llama.cpp's llama-perplexity does,
// so the numbers compare directly: perplexity over chunks of a tokenized
// text, and the KL divergence of a quantized model from its original.
//
// The method (llama-perplexity's perplexity()): the whole text is
// tokenized once (with a leading BOS), cut into ⌊tokens/ctx⌋ chunks of ctx
// tokens; each chunk is evaluated from an empty cache with its first token
// replaced by BOS, and only its second half is scored: the log-probability
// of tokens first+1..ctx-1 (first = ctx/2) given everything before them in
// the chunk. The perplexity is exp of the mean negative log-likelihood, its
// uncertainty ppl·sqrt((⟨nll²⟩ - ⟨nll⟩²)/(count-1)).
package eval

import (
	"fmt"
	"math"
	"time"

	"github.com/herd-llm/herd/llama"
)

// Options control a perplexity or KL-divergence run.
type Options struct {
	Ctx    int // tokens per chunk (llama-perplexity's -c); 0 means 512
	Chunks int // evaluate at most this many chunks; 0 means all
	// Batch is how many tokens go through one forward pass (llama.cpp's
	// n_batch): Batch/Ctx chunks are evaluated together, each with its own
	// cache. 0 means 2048.
	Batch int
	// OnChunk, when set, is called after each chunk with its index (from 1)
	// and the running perplexity estimate.
	OnChunk func(chunk int, ppl float64)
	// OnFirstPass, when set, is called after the first forward pass with
	// its duration and the number of passes.
	OnFirstPass func(d time.Duration, passes int)
}

func (o *Options) defaults() {
	if o.Ctx <= 0 {
		o.Ctx = 512
	}
	if o.Batch <= 0 {
		o.Batch = 2048
	}
}

// Result is a perplexity measurement.
type Result struct {
	Tokens  int       // tokens in the text (BOS included)
	Ctx     int       // tokens per chunk
	Chunks  int       // chunks evaluated
	Batch   int       // tokens per forward pass
	Seqs    int       // chunks per forward pass
	Count   int       // tokens scored
	PPL     float64   // exp(mean negative log-likelihood)
	PPLErr  float64   // its standard error
	Running []float64 // the estimate after each chunk
}

// chunks evaluates nChunk chunks of ctx tokens of tokens (the first token
// of each replaced by bos when bos ≥ 0), seqs chunks per forward pass, and
// calls score for each chunk with its index and the logits of its scored
// positions (rows first..ctx-2, row r predicting token first+r+1).
func chunks(m *llama.Model, tokens []int, bos, ctx, nChunk, seqs int, first func(time.Duration, int),
	score func(i int, chunk []int, logits []float32) error) error {
	vocab := m.Config.VocabSize
	caches := make([]*llama.KVCache, seqs)
	for i := range caches {
		caches[i] = m.NewKVCache(ctx)
	}
	var s llama.State
	half := ctx / 2
	passes := (nChunk + seqs - 1) / seqs
	for i := 0; i < nChunk; i += seqs {
		start := time.Now()
		n := min(seqs, nChunk-i)
		batch := make([]llama.Seq, n)
		toks := make([][]int, n)
		for j := range batch {
			c := append([]int(nil), tokens[(i+j)*ctx:(i+j+1)*ctx]...)
			if bos >= 0 {
				c[0] = bos
			}
			toks[j] = c
			caches[j].Len = 0
			batch[j] = llama.Seq{Tokens: c, Cache: caches[j], All: true}
		}
		out, err := m.ForwardBatch(&s, batch)
		if err != nil {
			return err
		}
		if i == 0 && first != nil {
			first(time.Since(start), passes)
		}
		for j := range batch {
			if err := score(i+j, tokens[(i+j)*ctx:(i+j+1)*ctx], out[j][half*vocab:(ctx-1)*vocab]); err != nil {
				return err
			}
		}
	}
	return nil
}

// logSoftmax returns log p(tok) under logits, computed as llama.cpp does:
// exp in single precision, the sum in double.
func logSoftmax(logits []float32, tok int) float64 {
	mx := logits[0]
	for _, v := range logits[1:] {
		mx = max(mx, v)
	}
	var sum float64
	for _, v := range logits {
		sum += float64(expf(v - mx))
	}
	return float64(logits[tok]-mx) - math.Log(sum)
}

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

// checkText refuses texts too short for two chunks, as llama-perplexity does.
func checkText(tokens []int, ctx, vocab int) (int, error) {
	if len(tokens) < 2*ctx {
		return 0, fmt.Errorf("you need at least %d tokens to evaluate perplexity with a context of %d; the text tokenizes to only %d", 2*ctx, ctx, len(tokens))
	}
	for i, t := range tokens {
		if t < 0 || t >= vocab {
			return 0, fmt.Errorf("token %d at position %d is outside the vocabulary of %d", t, i, vocab)
		}
	}
	return len(tokens) / ctx, nil
}

// Perplexity measures m on tokens (the whole text, tokenized once with a
// leading BOS) with llama-perplexity's method; bos is the BOS id that
// replaces each chunk's first token (-1 for a vocabulary without BOS).
func Perplexity(m *llama.Model, tokens []int, bos int, opt Options) (*Result, error) {
	opt.defaults()
	ctx := opt.Ctx
	if ctx < 4 {
		return nil, fmt.Errorf("context %d is too small", ctx)
	}
	nChunk, err := checkText(tokens, ctx, m.Config.VocabSize)
	if err != nil {
		return nil, err
	}
	if opt.Chunks > 0 {
		nChunk = min(nChunk, opt.Chunks)
	}
	seqs := max(1, opt.Batch/ctx)
	res := &Result{Tokens: len(tokens), Ctx: ctx, Chunks: nChunk, Batch: opt.Batch, Seqs: seqs}
	vocab := m.Config.VocabSize
	half := ctx / 2
	var nll, nll2 float64
	err = chunks(m, tokens, bos, ctx, nChunk, seqs, opt.OnFirstPass, func(i int, chunk []int, logits []float32) error {
		for r := 0; r < ctx-1-half; r++ {
			v := -logSoftmax(logits[r*vocab:(r+1)*vocab], chunk[half+r+1])
			nll += v
			nll2 += v * v
		}
		res.Count += ctx - 1 - half
		ppl := math.Exp(nll / float64(res.Count))
		res.Running = append(res.Running, ppl)
		if opt.OnChunk != nil {
			opt.OnChunk(i+1, ppl)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	mean := nll / float64(res.Count)
	res.PPL = math.Exp(mean)
	if v := nll2/float64(res.Count) - mean*mean; v > 0 {
		res.PPLErr = math.Sqrt(v/float64(res.Count-1)) * res.PPL
	}
	return res, nil
}
