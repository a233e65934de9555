package rl

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
)

// seedOf is the sampler's seed of rollout batch b.
func seedOf(seed uint64, b int) uint64 {
	return seed*0x9e3779b97f4a7c15 ^ uint64(b+1)*0xbf58476d1ce4e5b9
}

// rollout samples, scores and prepares rollout batch b.
func (t *Trainer) rollout(b int) error {
	c := &t.Cfg
	if c.EvalEvery > 0 && b%c.EvalEvery == 0 && len(t.Val) > 0 {
		if err := t.evaluate(); err != nil {
			return err
		}
	}
	t0 := time.Now()
	idx := make([]int, 0, c.Rollouts())
	for i := range c.Prompts {
		p := t.ord.at(b*c.Prompts + i)
		for range c.Group {
			idx = append(idx, p)
		}
	}
	rs, ntok, err := t.Policy.Generate(t.Prompts, idx, t.Tok, t.StopIDs, c.Sampling, seedOf(c.Seed, b))
	if err != nil {
		return fmt.Errorf("rollout batch %d: %w", b, err)
	}
	dt := time.Since(t0)
	t.Timings.Rollout += dt
	t.Timings.RolloutTokens += int64(ntok)
	scores, skipped, err := t.score(t.Prompts, rs)
	if err != nil {
		return fmt.Errorf("rollout batch %d: %w", b, err)
	}
	t.Timings.Skipped += skipped
	t.buf = make([]sample, len(rs))
	for i := range rs {
		seq, tg := seqOf(&t.Prompts[rs[i].Prompt], &rs[i])
		t.buf[i] = sample{roll: rs[i], seq: seq, targets: tg, score: scores[i]}
	}
	t.batch, t.stopped = b, false
	ent, err := t.logProbs(t.buf, t.epochZero(b))
	if err != nil {
		return fmt.Errorf("rollout batch %d: %w", b, err)
	}
	t.advantages()
	t.batchMetrics(ent, skipped)
	t.metrics[MRolloutTPS] = float64(ntok) / dt.Seconds()
	if c.Algo != GRPO {
		t.Ctl.Update(t.metrics[MKL], len(rs)-skipped)
	}
	if c.SampleEvery > 0 && b%c.SampleEvery == 0 {
		t.logSamples(b)
	}
	return nil
}

// epochZero is the first epoch's mini-batches of batch b (the old
// log-probabilities are computed in the compositions the first update
// sees).
func (t *Trainer) epochZero(b int) [][]int {
	var out [][]int
	for mb := 0; mb*t.Cfg.MiniBatch < len(t.buf); mb++ {
		out = append(out, t.minibatch(b, 0, mb))
	}
	return out
}

// logProbs fills the old (sampling) policy's and the reference's
// log-probabilities of every response token of ss (and PPO's values), one
// batch of ss per entry of groups, and returns the policy's mean entropy
// per token.
func (t *Trainer) logProbs(ss []sample, groups [][]int) (float64, error) {
	p := t.Policy
	vocab := p.Model.Config.VocabSize
	var ent []float64
	for _, g := range groups {
		seqs, targets, rows := layout(ss, g)
		logits, hidden, err := p.pass(nil, seqs)
		if err != nil {
			return 0, err
		}
		var vals []float64
		if hidden != nil {
			vals = p.values(hidden)
		}
		lp := TokenLogProbs(nil, logits, targets, vocab, nil, &ent)
		refl, err := p.refLogits(seqs)
		if err != nil {
			return 0, err
		}
		rl := TokenLogProbs(nil, &autograd.Var{Data: refl}, targets, vocab, nil, nil)
		r := 0
		for _, i := range g {
			s := &ss[i]
			n := len(s.roll.Response)
			s.old, s.ref = lp[r:r+n:r+n], rl[r:r+n:r+n]
			if vals != nil {
				s.vals = make([]float64, n)
				for k := range n {
					s.vals[k] = vals[rows[r+k]]
				}
			}
			r += n
		}
	}
	mean, _ := MeanVar(ent)
	return mean, nil
}

// layout is the batch of the samples g of ss: their sequences, targets,
// and for each response token (in order) its row.
func layout(ss []sample, g []int) ([]llama.Seq, []int, []int) {
	var seqs []llama.Seq
	var targets, rows []int
	for _, i := range g {
		s := &ss[i]
		seqs = append(seqs, s.seq)
		for _, tg := range s.targets {
			if tg >= 0 {
				rows = append(rows, len(targets))
			}
			targets = append(targets, tg)
		}
	}
	return seqs, targets, rows
}

// penalty is Σ_t of the KL estimator kind over a sample's tokens.
func penalty(kind string, s *sample) float64 {
	sum := 0.0
	for k := range s.old {
		v, _ := KL(kind, s.old[k], s.ref[k])
		sum += v
	}
	return sum
}

// scaled are the scores after normalisation and clipping (PPO, RLOO).
func (t *Trainer) scaled() []float64 {
	sc := make([]float64, len(t.buf))
	var ok []float64
	for i, s := range t.buf {
		sc[i] = s.score
		if !math.IsNaN(s.score) {
			ok = append(ok, s.score)
		}
	}
	if t.Cfg.NormRewards {
		mean, v := MeanVar(ok)
		for i := range sc {
			sc[i] = (sc[i] - mean) / math.Sqrt(v+1e-8)
		}
	}
	if c := t.Cfg.ClipReward; c > 0 {
		for i := range sc {
			sc[i] = min(max(sc[i], -c), c)
		}
	}
	return sc
}

// advantages fills every sample's advantages (and PPO's returns).
func (t *Trainer) advantages() {
	c := &t.Cfg
	beta := t.Ctl.Coef
	switch c.Algo {
	case PPO:
		sc := t.scaled()
		var all []float64
		for i := range t.buf {
			s := &t.buf[i]
			if math.IsNaN(s.score) {
				continue
			}
			r := make([]float64, len(s.old))
			for k := range r {
				kl, _ := KL(c.KL, s.old[k], s.ref[k])
				r[k] = -beta * kl
			}
			r[len(r)-1] += sc[i]
			s.adv, s.ret = GAE(r, s.vals, c.Gamma, c.Lambda)
			all = append(all, s.adv...)
		}
		if c.Whiten {
			w := Whiten(all, false)
			for i := range t.buf {
				if s := &t.buf[i]; !math.IsNaN(s.score) {
					copy(s.adv, w[:len(s.adv)])
					w = w[len(s.adv):]
				}
			}
		}
	case GRPO, RLOO:
		r := make([]float64, len(t.buf))
		for i := range t.buf {
			r[i] = t.buf[i].score
		}
		var a []float64
		if c.Algo == GRPO {
			a = GroupAdvantages(r, c.Group, c.ScaleRewards)
		} else {
			sc := t.scaled()
			for i := range r {
				r[i] = sc[i] - beta*penalty(c.KL, &t.buf[i])
			}
			a = LeaveOneOut(r, c.Group)
		}
		for i := range t.buf {
			s := &t.buf[i]
			s.adv = make([]float64, len(s.old))
			for k := range s.adv {
				s.adv[k] = a[i]
			}
		}
	}
}

// batchMetrics are the rollout batch's metrics, as TRL names them.
func (t *Trainer) batchMetrics(ent float64, skipped int) {
	var scores, kls, rlhf []float64
	beta := t.Ctl.Coef
	for i := range t.buf {
		s := &t.buf[i]
		if math.IsNaN(s.score) {
			continue
		}
		kl := penalty(K1, s)
		scores, kls = append(scores, s.score), append(kls, kl)
		rlhf = append(rlhf, s.score-beta*penalty(t.Cfg.KL, s))
	}
	mean := func(x []float64) float64 { m, _ := MeanVar(x); return m }
	_, v := MeanVar(scores)
	t.metrics = map[string]float64{MKL: mean(kls), MEntropy: ent, MRewMean: mean(scores), MRewStd: math.Sqrt(v),
		MRLHF: mean(rlhf), MNonScore: mean(rlhf) - mean(scores), MKLCoef: beta, MSkipped: float64(skipped)}
	if t.LastEval.N > 0 {
		t.metrics[MEvalRew], t.metrics[MEvalKL] = t.LastEval.Reward, t.LastEval.KL
	}
}

// logSamples writes two of the batch's completions with their rewards.
func (t *Trainer) logSamples(b int) {
	for i := range min(2, len(t.buf)) {
		s := &t.buf[i]
		p := t.Prompts[s.roll.Prompt].Text
		fmt.Fprintf(t.Log, "batch %d sample %d (reward %.4g, %d tokens%s): %q → %q\n", b, i, s.score, len(s.roll.Response),
			map[bool]string{true: ", EOS"}[s.roll.EOS], clip(p, 80), clip(s.roll.Text, 300))
	}
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
