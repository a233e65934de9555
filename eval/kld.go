package eval

import (
	"fmt"
	"math"
	"slices"

	"github.com/herd-llm/herd/llama"
)

// KLD accumulates llama-perplexity --kl-divergence's statistics of a
// quantized model Q against a base model, over the scored tokens.
type KLD struct {
	SumNLL, SumNLL2         float64 // Q's negative log-likelihoods
	SumNLLBase, SumNLLBase2 float64 // the base's
	SumNLLNLLBase           float64 // Σ nll·nll_base
	SumKLD, SumKLD2         float64 // Σ KL(base ‖ Q) per token
	SumPDiff, SumPDiff2     float64 // Σ p - p_base of the right token
	SumPDiff4               float64
	MaxPDiff                float64
	SameTop                 int // tokens where both models' most likely token agree
	Count                   int
	KLDValues, PDiffValues  []float32 // per token, for the percentiles
}

// KLDResult is a KL-divergence measurement.
type KLDResult struct {
	Tokens, Ctx, Chunks int
	KLD
}

// encodeBase stores a base model's log-probabilities as llama-perplexity
// writes them to its --kl-divergence-base file: a scale and an offset,
// then one uint16 per token over the range [max-16, max] of the logits.
// herd computes the base on the fly but keeps this encoding, so the
// statistics match llama.cpp's to the digit.
func encodeBase(logits []float32, out []uint16) (scale, minLogProb float32) {
	mx, mn := logits[0], logits[0]
	for _, v := range logits[1:] {
		mx = max(mx, v)
		mn = min(mn, v)
	}
	mn = max(mn, mx-16)
	var sum float64
	for _, v := range logits {
		sum += float64(expf(v - mx))
	}
	logSumExp := float32(math.Log(sum))
	minLogProb = mn - mx - logSumExp
	scale = (mx - mn) / 65535
	if scale == 0 {
		clear(out)
		return scale, minLogProb
	}
	inv := 1 / scale
	for i, v := range logits {
		if v > mn {
			out[i] = uint16(nearestInt(inv * (v - mn)))
		} else {
			out[i] = 0
		}
	}
	return scale, minLogProb
}

// nearestInt is ggml's nearest_int (round half to even for |x| < 2²²).
func nearestInt(x float32) int32 {
	v := x + 12582912
	return int32(math.Float32bits(v)&0x007fffff) - 0x00400000
}

// add scores one position: Q's logits against the encoded base
// log-probabilities, for the true next token tok (llama-perplexity's
// log_softmax of the KL mode).
func (k *KLD) add(logits []float32, base []uint16, scale, minLogProb float32, tok int) {
	mx, imax := logits[0], 0
	for i, v := range logits[1:] {
		if v > mx {
			mx, imax = v, i+1
		}
	}
	var sumExp float64
	for _, v := range logits {
		sumExp += float64(expf(v - mx))
	}
	logSumExp := float32(math.Log(sumExp))
	nll := mx + logSumExp - logits[tok]
	k.SumNLL += float64(nll)
	k.SumNLL2 += float64(nll * nll)
	nllBase := -(scale*float32(base[tok]) + minLogProb)
	k.SumNLLBase += float64(nllBase)
	k.SumNLLBase2 += float64(nllBase * nllBase)
	k.SumNLLNLLBase += float64(nll * nllBase)
	mx += logSumExp
	var sum float64
	imaxBase := -1
	var pLogBaseMax float32
	for i, v := range logits {
		pLogBase := scale*float32(base[i]) + minLogProb
		if i == 0 || pLogBase > pLogBaseMax {
			pLogBaseMax, imaxBase = pLogBase, i
		}
		if pLogBase > -16 {
			sum += float64(expf(pLogBase) * (pLogBase - v + mx))
		}
	}
	k.SumKLD += sum
	k.SumKLD2 += sum * sum
	k.Count++
	if imax == imaxBase {
		k.SameTop++
	}
	pDiff := expf(-nll) - expf(-nllBase)
	k.SumPDiff += float64(pDiff)
	d2 := float64(pDiff) * float64(pDiff)
	k.SumPDiff2 += d2
	k.SumPDiff4 += d2 * d2
	k.MaxPDiff = max(k.MaxPDiff, math.Abs(float64(pDiff)))
	k.KLDValues = append(k.KLDValues, float32(sum))
	k.PDiffValues = append(k.PDiffValues, pDiff)
}

// MeanErr is llama-perplexity's mean_and_uncertainty: the mean of a sum
// over Count values and its standard error (0 for ten values or fewer).
func (k *KLD) MeanErr(sum, sum2 float64) (mean, err float64) {
	if k.Count < 1 {
		return 0, 0
	}
	n := float64(k.Count)
	mean = sum / n
	if v := sum2/n - mean*mean; v > 0 && k.Count > 10 {
		err = math.Sqrt(v / (n - 1))
	}
	return mean, err
}

// covariance is llama-perplexity's covariance of the two nll series
// (divided by count-1: the covariance of their means).
func (k *KLD) covariance() float64 {
	if k.Count < 10 {
		return 0
	}
	n := float64(k.Count)
	return (k.SumNLLNLLBase/n - (k.SumNLL/n)*(k.SumNLLBase/n)) / (n - 1)
}

// PPL returns Q's perplexity and its uncertainty.
func (k *KLD) PPL() (float64, float64) {
	m, e := k.MeanErr(k.SumNLL, k.SumNLL2)
	p := math.Exp(m)
	return p, p * e
}

// PPLBase returns the base model's perplexity and its uncertainty.
func (k *KLD) PPLBase() (float64, float64) {
	m, e := k.MeanErr(k.SumNLLBase, k.SumNLLBase2)
	p := math.Exp(m)
	return p, p * e
}

// LogPPLRatio returns mean ln(PPL(Q)/PPL(base)) and its uncertainty.
func (k *KLD) LogPPLRatio() (float64, float64) {
	m, e := k.MeanErr(k.SumNLL, k.SumNLL2)
	mb, eb := k.MeanErr(k.SumNLLBase, k.SumNLLBase2)
	return m - mb, math.Sqrt(e*e + eb*eb - 2*k.covariance())
}

// LogPPLCorrelation is the correlation of ln PPL(Q) and ln PPL(base).
func (k *KLD) LogPPLCorrelation() float64 {
	_, e := k.MeanErr(k.SumNLL, k.SumNLL2)
	_, eb := k.MeanErr(k.SumNLLBase, k.SumNLLBase2)
	return k.covariance() / (e * eb)
}

// PPLDiff returns PPL(Q) - PPL(base) and its uncertainty.
func (k *KLD) PPLDiff() (float64, float64) {
	p, pe := k.PPL()
	pb, pbe := k.PPLBase()
	cov := p * pb * k.covariance()
	return p - pb, math.Sqrt(pe*pe + pbe*pbe - 2*cov)
}

// MeanKLD returns the mean KL divergence per token and its uncertainty.
func (k *KLD) MeanKLD() (float64, float64) { return k.MeanErr(k.SumKLD, k.SumKLD2) }

// RMSPDiff returns the RMS of p - p_base and its uncertainty.
func (k *KLD) RMSPDiff() (float64, float64) {
	m, e := k.MeanErr(k.SumPDiff2, k.SumPDiff4)
	r := math.Sqrt(m)
	return r, 0.5 / r * e
}

// SameTopP returns the fraction of tokens whose most likely next token is
// the same under both models, and its uncertainty.
func (k *KLD) SameTopP() (float64, float64) {
	p := float64(k.SameTop) / float64(k.Count)
	return p, math.Sqrt(p * (1 - p) / float64(k.Count-1))
}

// Percentile interpolates the sorted values at fraction f as
// llama-perplexity does.
func Percentile(sorted []float32, f float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	if f <= 0 {
		return float64(sorted[0])
	}
	if f >= 1 {
		return float64(sorted[len(sorted)-1])
	}
	p := float32(f) * float32(len(sorted)-1)
	ip := int(p)
	p -= float32(ip)
	return float64((1-p)*sorted[ip] + p*sorted[min(ip+1, len(sorted)-1)])
}

// Median is the middle of the sorted values (the mean of the two middle
// ones for an even count).
func Median(sorted []float32) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 0 {
		return float64(0.5 * (sorted[n/2] + sorted[n/2-1]))
	}
	return float64(sorted[n/2])
}

// KLDivergence compares q with base on tokens as llama-perplexity
// --kl-divergence does: the same chunks as Perplexity, the base's scored
// log-probabilities (encoded as llama.cpp stores them) against q's logits
// at every scored position. onChunk, when set, sees the running
// statistics after each chunk.
func KLDivergence(base, q *llama.Model, tokens []int, bos int, opt Options, onChunk func(chunk int, k *KLD)) (*KLDResult, error) {
	opt.defaults()
	ctx := opt.Ctx
	if ctx < 4 {
		return nil, fmt.Errorf("context %d is too small", ctx)
	}
	vocab := base.Config.VocabSize
	if q.Config.VocabSize != vocab {
		return nil, fmt.Errorf("the models' vocabularies differ: %d and %d", vocab, q.Config.VocabSize)
	}
	nChunk, err := checkText(tokens, ctx, vocab)
	if err != nil {
		return nil, err
	}
	if opt.Chunks > 0 {
		nChunk = min(nChunk, opt.Chunks)
	}
	seqs := max(1, opt.Batch/ctx)
	half := ctx / 2
	scored := ctx - 1 - half
	type encoded struct {
		logp         []uint16
		scale, minLP []float32
	}
	res := &KLDResult{Tokens: len(tokens), Ctx: ctx, Chunks: nChunk}
	// Evaluate seqs chunks of the base, then the same chunks of q.
	for c0 := 0; c0 < nChunk; c0 += seqs {
		n := min(seqs, nChunk-c0)
		enc := make([]encoded, n)
		sub := tokens[c0*ctx : (c0+n)*ctx]
		err := chunks(base, sub, bos, ctx, n, seqs, nil, func(i int, _ []int, logits []float32) error {
			e := encoded{logp: make([]uint16, scored*vocab), scale: make([]float32, scored), minLP: make([]float32, scored)}
			for r := 0; r < scored; r++ {
				e.scale[r], e.minLP[r] = encodeBase(logits[r*vocab:(r+1)*vocab], e.logp[r*vocab:(r+1)*vocab])
			}
			enc[i] = e
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("base model: %w", err)
		}
		err = chunks(q, sub, bos, ctx, n, seqs, opt.OnFirstPass, func(i int, chunk []int, logits []float32) error {
			e := enc[i]
			for r := 0; r < scored; r++ {
				res.add(logits[r*vocab:(r+1)*vocab], e.logp[r*vocab:(r+1)*vocab], e.scale[r], e.minLP[r], chunk[half+r+1])
			}
			if onChunk != nil {
				onChunk(c0+i+1, &res.KLD)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		opt.OnFirstPass = nil
	}
	slices.Sort(res.KLDValues)
	slices.Sort(res.PDiffValues)
	return res, nil
}
