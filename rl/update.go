package rl

import (
	"math"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/train"
)

// update is one mini-batch's loss on tape, its gradient seeded:
//
//	PPO:  (1/T) Σ_tokens [max(−A·ρ, −A·clip(ρ, 1±ε)) + c_v·½max((V−R)², (V_clip−R)²)]
//	GRPO: (1/n) Σ_i (1/|o_i|) Σ_t [max(−A_i·ρ, −A_i·clip(ρ, 1±ε)) + β·k3(π, π_ref)]
//	RLOO: GRPO's without the KL term (β is in the reward)
//
// with T the mini-batch's response tokens and n its rollouts. When the
// approximate KL to the sampling policy exceeds StopKL the step skips
// (no gradient, no update) and so do the rest of the batch's steps.
func (t *Trainer) update(tape *autograd.Tape, idx []int) (train.Micro, error) {
	c, p := &t.Cfg, t.Policy
	var g []int
	ntok := 0
	for _, i := range idx {
		if !math.IsNaN(t.buf[i].score) {
			g = append(g, i)
			ntok += len(t.buf[i].old)
		}
	}
	if len(g) == 0 {
		return train.Micro{Skip: true}, nil
	}
	seqs, targets, rows := layout(t.buf, g)
	logits, hidden, err := p.pass(tape, seqs)
	if err != nil {
		return train.Micro{}, err
	}
	dlogp := make([]float64, len(rows))
	lp := TokenLogProbs(tape, logits, targets, p.Model.Config.VocabSize, dlogp, nil)
	var vals, dv []float64
	if hidden != nil {
		vals, dv = p.values(hidden), make([]float64, len(targets))
		p.recordValues(tape, hidden, dv)
	}
	l := lossTerms{ppo: c.Algo == PPO, beta: t.Ctl.Coef, eps: c.ClipEps, epsV: c.ClipValue, vf: c.VFCoef, grpo: c.Algo == GRPO}
	m := l.sum(t.buf, g, lp, vals, rows, dlogp, dv, ntok)
	m.Tokens = len(targets)
	if c.StopKL > 0 && m.Extra[MApproxKL]/float64(m.Count) > c.StopKL {
		clear(dlogp)
		clear(dv)
		t.stopped = true
		return train.Micro{Skip: true}, nil
	}
	return m, nil
}

// lossTerms computes a mini-batch's loss from its log-probabilities.
type lossTerms struct {
	ppo, grpo           bool
	beta, eps, epsV, vf float64
}

// sum fills dlogp (per response token) and dv (per row) with the
// gradient of the mini-batch's mean loss and returns the loss's sum and
// the metrics' sums over its Count items (tokens for PPO, rollouts else).
func (l lossTerms) sum(ss []sample, g []int, lp, vals []float64, rows []int, dlogp, dv []float64, ntok int) train.Micro {
	var pg, vf, clipped, approx, vpred, vclip, kl3 float64
	r := 0
	for _, i := range g {
		s := &ss[i]
		n := len(s.old)
		w := 1 / float64(ntok) // PPO: the mean over tokens
		if !l.ppo {
			w = 1 / float64(n*len(g)) // GRPO: over each rollout, then rollouts
		}
		for k := range n {
			cp := ClipPolicy(lp[r], s.old[k], s.adv[k], l.eps)
			d := cp.DLogp
			loss := cp.Loss
			if l.grpo && l.beta > 0 {
				v, dk := KL(K3, lp[r], s.ref[k])
				loss += l.beta * v
				d += l.beta * dk
				kl3 += v * w
			}
			pg += loss * w
			dlogp[r] = d * w
			clipped += b2f(cp.Clipped) * w
			dd := lp[r] - s.old[k]
			approx += 0.5 * dd * dd * w
			if l.ppo {
				v := vals[rows[r]]
				vl, vd, vc := ClipValue(v, s.vals[k], s.ret[k], l.epsV)
				vf += vl * w
				dv[rows[r]] = l.vf * vd * w
				vpred += v * w
				vclip += b2f(vc) * w
			}
			r++
		}
	}
	count := len(g)
	if l.ppo {
		count = ntok
	}
	cn := float64(count)
	m := train.Micro{Sum: (pg + l.vf*vf) * cn, Count: count, Extra: map[string]float64{
		MClipFrac: clipped * cn, MApproxKL: approx * cn, MPolicy: pg * cn}}
	if l.ppo {
		m.Extra[MVPred], m.Extra[MVClipFrac], m.Extra[MValue] = vpred*cn, vclip*cn, vf*cn
	}
	if l.grpo {
		m.Extra["policy/kl_k3"] = kl3 * cn
	}
	return m
}

// Eval is the held-out prompts' mean reward and KL to the reference
// (Σ over each response's tokens of log π − log π_ref, averaged over the
// responses), one sample each drawn with a fixed seed.
type Eval struct {
	Reward, KL float64
	N          int
}

// evaluate measures the policy on the held-out prompts.
func (t *Trainer) evaluate() error {
	idx := make([]int, len(t.Val))
	for i := range idx {
		idx[i] = i
	}
	rs, _, err := t.Policy.Generate(t.Val, idx, t.Tok, t.StopIDs, t.Cfg.Sampling, seedOf(t.Cfg.Seed^0xe7a1, 0))
	if err != nil {
		return err
	}
	scores, _, err := t.score(t.Val, rs)
	if err != nil {
		return err
	}
	ss := make([]sample, len(rs))
	var groups [][]int
	for i := range rs {
		seq, tg := seqOf(&t.Val[rs[i].Prompt], &rs[i])
		ss[i] = sample{roll: rs[i], seq: seq, targets: tg, score: scores[i]}
		if i%t.Cfg.MiniBatch == 0 {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], i)
	}
	if _, err := t.logProbs(ss, groups); err != nil {
		return err
	}
	var e Eval
	var rew, kl []float64
	for i := range ss {
		if !math.IsNaN(ss[i].score) {
			rew, kl = append(rew, ss[i].score), append(kl, penalty(K1, &ss[i]))
		}
	}
	e.Reward, _ = MeanVar(rew)
	e.KL, _ = MeanVar(kl)
	e.N = len(rew)
	t.LastEval = e
	return nil
}

// Evaluate measures the held-out prompts now (after training).
func (t *Trainer) Evaluate() (Eval, error) {
	if len(t.Val) == 0 {
		return Eval{}, nil
	}
	err := t.evaluate()
	return t.LastEval, err
}
