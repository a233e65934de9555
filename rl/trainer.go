package rl

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/herd-llm/herd/train"
)

// The algorithms.
const (
	PPO  = "ppo"  // a value head, GAE, the KL penalty in the reward
	GRPO = "grpo" // group-normalised advantages, k3 KL in the loss
	RLOO = "rloo" // leave-one-out baseline, the KL penalty in the reward
)

// Config is how a Trainer learns.
type Config struct {
	Algo string
	// Prompts per rollout batch, and Group samples of each (GRPO and RLOO
	// need at least 2; PPO 1 or more).
	Prompts, Group int
	// MiniBatch is the rollouts per optimizer step and Epochs the passes
	// over each rollout batch (PPO's ppo_epochs; GRPO's μ).
	MiniBatch, Epochs int
	Sampling          Sampling
	Gamma, Lambda     float64 // PPO's GAE
	ClipEps           float64 // the policy ratio's clip range ε
	ClipValue         float64 // PPO's value clip range
	VFCoef            float64 // PPO's value-loss weight
	// KL is the estimator of the penalty in PPO's and RLOO's reward (k1,
	// k2 or k3); GRPO's loss always takes k3. KLCoef is β, the
	// coefficient (the initial one with an adaptive controller: TargetKL
	// and Horizon both positive).
	KL                        string
	KLCoef, TargetKL, Horizon float64
	// Whiten whitens PPO's advantages over the batch's tokens;
	// NormRewards whitens the scores of a rollout batch (PPO, RLOO) and
	// ClipReward clips them to ±ClipReward (0: off); ScaleRewards divides
	// GRPO's advantages by the group's standard deviation.
	Whiten, NormRewards, ScaleRewards bool
	ClipReward                        float64
	// MissingEOS is subtracted from the score of a response that did not
	// end with EOS (TRL's missing_eos_penalty; 0: none).
	MissingEOS float64
	// StopKL stops the rest of a rollout batch's updates once the
	// approximate KL to the sampling policy exceeds it (0: never).
	StopKL float64
	Seed   uint64
	// SampleEvery logs completions with their rewards every N rollout
	// batches (0: never); EvalEvery measures the held-out prompts' reward
	// every N rollout batches (0: only at the end).
	SampleEvery, EvalEvery int
}

// Check fills the defaults and rejects what cannot run.
func (c *Config) Check() error {
	switch c.Algo {
	case PPO:
		c.Group = max(1, c.Group)
	case GRPO, RLOO:
		if c.Group < 2 {
			return fmt.Errorf("%s: --group %d: a group needs at least 2 samples of each prompt", c.Algo, c.Group)
		}
	default:
		return fmt.Errorf("algorithm %q: want ppo, grpo or rloo", c.Algo)
	}
	if c.KL == "" {
		c.KL = K1
	}
	if err := CheckKL(c.KL); err != nil {
		return err
	}
	if c.Prompts <= 0 || c.Sampling.MaxNew <= 0 {
		return fmt.Errorf("%s: prompts per batch %d and response length %d must be positive", c.Algo, c.Prompts, c.Sampling.MaxNew)
	}
	if c.MiniBatch <= 0 || c.MiniBatch > c.Prompts*c.Group {
		c.MiniBatch = c.Prompts * c.Group
	}
	c.Epochs = max(1, c.Epochs)
	if c.ClipEps <= 0 || c.KLCoef < 0 || c.TargetKL < 0 || c.Horizon < 0 || c.StopKL < 0 || c.ClipReward < 0 {
		return fmt.Errorf("%s: clip range %g must be positive; KL coefficient %g, target %g, horizon %g, stop KL %g and reward clip %g must not be negative",
			c.Algo, c.ClipEps, c.KLCoef, c.TargetKL, c.Horizon, c.StopKL, c.ClipReward)
	}
	return nil
}

// Adaptive says whether an adaptive controller sets β (PPO, RLOO).
func (c *Config) Adaptive() bool { return c.Algo != GRPO && c.TargetKL > 0 && c.Horizon > 0 }

// Panels are the curves loss.png draws beside the loss: the rollout
// batches' reward and KL (the held-out ones as points where measured;
// the controller's target as a dashed line), and β when a controller
// sets it (the policy's entropy otherwise).
func (c *Config) Panels() []train.Panel {
	kl := train.Panel{Label: "KL to the reference (nats per response)", Lines: []string{MKL}, Points: []string{MEvalKL}}
	last := train.Panel{Label: "entropy (nats per token)", Lines: []string{MEntropy}}
	if c.Adaptive() {
		kl.Refs, kl.RefLabel = []float64{c.TargetKL}, "target"
		last = train.Panel{Label: "KL coefficient β", Lines: []string{MKLCoef}}
	}
	return []train.Panel{{Label: "reward", Lines: []string{MRewMean}, Points: []string{MEvalRew}}, kl, last}
}

// Rollouts is the number of rollouts in a batch.
func (c *Config) Rollouts() int { return c.Prompts * c.Group }

// StepsPerBatch is the optimizer steps of one rollout batch.
func (c *Config) StepsPerBatch() int {
	return c.Epochs * ((c.Rollouts() + c.MiniBatch - 1) / c.MiniBatch)
}

// The metric names, as TRL logs them (and herd's own beside them).
const (
	MKL        = "objective/kl"
	MEntropy   = "objective/entropy"
	MRLHF      = "objective/rlhf_reward"
	MNonScore  = "objective/non_score_reward"
	MKLCoef    = "objective/kl_coef"
	MClipFrac  = "policy/clipfrac"
	MApproxKL  = "policy/approxkl"
	MVPred     = "val/vpred"
	MVClipFrac = "val/clipfrac"
	MRewMean   = "env/reward_mean"
	MRewStd    = "env/reward_std"
	MPolicy    = "loss/policy"
	MValue     = "loss/value"
	MSkipped   = "rollout/skipped"
	MEvalRew   = "eval/reward_mean"
	MEvalKL    = "eval/kl"
	// MRolloutTPS is the batch's rollout positions per second, MUpdateTPS
	// the run's update positions per second so far.
	MRolloutTPS = "rollout/tokens_per_sec"
	MUpdateTPS  = "update/tokens_per_sec"
)

// Trainer is the RL objective on train.Fit: step s belongs to rollout
// batch s / StepsPerBatch; its first step samples the batch with the
// current policy, scores it and computes the advantages, then each step
// is one mini-batch's clipped update (epochs over a fresh permutation of
// the batch each). Everything it draws is seeded from Config.Seed and the
// batch number, and the only state carried across batches is the KL
// controller's coefficient (saved with each checkpoint), so a run resumed
// at a batch boundary continues bit for bit.
type Trainer struct {
	Cfg      Config
	Policy   *Policy
	Prompts  []Prompt
	Val      []Prompt
	Tok      tokenizer.Tokenizer
	StopIDs  []int
	Reward   Reward
	Log      io.Writer
	Ctl      AdaptiveKL
	Timings  Timings
	LastEval Eval

	batch   int // the rollout batch in buf (−1: none)
	buf     []sample
	stopped bool
	metrics map[string]float64 // of the batch
	ord     order
}

// Timings are the positions and time of rollouts and of updates.
type Timings struct {
	RolloutTokens, UpdateTokens int64
	Rollout, Update             time.Duration
	Skipped                     int // rollouts whose reward could not be computed
}

// sample is one rollout as the update sees it.
type sample struct {
	roll    Rollout
	seq     llama.Seq
	targets []int
	// per response token: the sampling policy's and the reference's
	// log-probabilities, the old values, advantages and returns
	old, ref, vals, adv, ret []float64
	score                    float64 // NaN: the reward failed, the rollout is left out
}

// Init checks the configuration and prepares the data order.
func (t *Trainer) Init() error {
	if err := t.Cfg.Check(); err != nil {
		return err
	}
	if len(t.Prompts) == 0 {
		return fmt.Errorf("%s: no prompts", t.Cfg.Algo)
	}
	if (t.Cfg.Algo == PPO) != (t.Policy.Head != nil) {
		return fmt.Errorf("%s: a value head is PPO's and only PPO's", t.Cfg.Algo)
	}
	if v := t.Policy.Value; v != nil && (t.Policy.Adapters == nil || t.Policy.Tape.Recompute) {
		return fmt.Errorf("%s: a separate value LoRA needs a LoRA policy and no recomputation (the two trunks share the base's modules)", t.Cfg.Algo)
	}
	if t.Ctl.Coef == 0 && t.Ctl.Target == 0 {
		t.Ctl = AdaptiveKL{Coef: t.Cfg.KLCoef, Target: t.Cfg.TargetKL, Horizon: t.Cfg.Horizon}
	}
	if t.Log == nil {
		t.Log = io.Discard
	}
	t.Policy.dropoutOff()
	t.batch = -1
	t.ord = order{n: len(t.Prompts), seed: t.Cfg.Seed}
	return nil
}

// Loss is micro-batch k (always 0: the trainer runs with Accum 1) of step.
func (t *Trainer) Loss(tape *autograd.Tape, step, k int) (train.Micro, error) {
	per := t.Cfg.StepsPerBatch()
	b, j := step/per, step%per
	if b != t.batch {
		if j != 0 {
			return train.Micro{}, fmt.Errorf("%s: step %d is inside rollout batch %d: a run resumes only at a batch boundary (every %d steps)", t.Cfg.Algo, step, b, per)
		}
		if err := t.rollout(b); err != nil {
			return train.Micro{}, err
		}
	}
	nmb := per / t.Cfg.Epochs
	if t.stopped {
		return t.micro(train.Micro{Skip: true}), nil
	}
	idx := t.minibatch(b, j/nmb, j%nmb)
	t0 := time.Now()
	m, err := t.update(tape, idx)
	t.Timings.Update += time.Since(t0)
	t.Timings.UpdateTokens += int64(m.Tokens)
	return t.micro(m), err
}

// micro adds the rollout batch's metrics to a step's.
func (t *Trainer) micro(m train.Micro) train.Micro {
	if m.Extra == nil {
		m.Extra = map[string]float64{}
	}
	for k, v := range t.metrics {
		m.Extra[k] = v * float64(max(1, m.Count))
	}
	if s := t.Timings.Update.Seconds(); s > 0 {
		m.Extra[MUpdateTPS] = float64(t.Timings.UpdateTokens) / s * float64(max(1, m.Count))
	}
	return m
}

// minibatch is the rollouts of mini-batch mb of epoch e of batch b: a
// permutation of the batch drawn from the seed, the batch and the epoch.
func (t *Trainer) minibatch(b, e, mb int) []int {
	n := len(t.buf)
	perm := rand.New(rand.NewPCG(t.Cfg.Seed^0x51ed, uint64(b)<<20|uint64(e))).Perm(n)
	lo := mb * t.Cfg.MiniBatch
	return perm[lo:min(n, lo+t.Cfg.MiniBatch)]
}

// order is a data order reproducible from the position alone: position i
// of the endless sequence of epochs, each a permutation of n drawn from
// seed and the epoch number.
type order struct {
	n     int
	seed  uint64
	epoch int
	perm  []int
}

func (o *order) at(i int) int {
	if e := i / o.n; e != o.epoch || o.perm == nil {
		o.epoch = e
		o.perm = rand.New(rand.NewPCG(o.seed, uint64(e))).Perm(o.n)
	}
	return o.perm[i%o.n]
}

// score runs the reward over rollouts and counts the ones it skipped.
func (t *Trainer) score(prompts []Prompt, rs []Rollout) ([]float64, int, error) {
	items := make([]Item, len(rs))
	for i, r := range rs {
		p := &prompts[r.Prompt]
		items[i] = Item{Prompt: p.Text, Completion: r.Text, Answer: p.Answer, Tokens: append(append([]int(nil), p.Tokens...), r.Response...), Len: len(r.Response), EOS: r.EOS}
	}
	s, err := t.Reward.Score(context.Background(), items)
	if err != nil {
		return nil, 0, fmt.Errorf("reward (%s): %w", t.Reward.Name(), err)
	}
	if len(s) != len(items) {
		return nil, 0, fmt.Errorf("reward (%s): %d scores for %d rollouts", t.Reward.Name(), len(s), len(items))
	}
	skipped := 0
	for i, v := range s {
		if math.IsInf(v, 0) {
			return nil, 0, fmt.Errorf("reward (%s): rollout %d (prompt %q): score %v is not finite", t.Reward.Name(), i, clip(items[i].Prompt, 60), v)
		}
		if math.IsNaN(v) {
			skipped++
		} else if !rs[i].EOS {
			s[i] -= t.Cfg.MissingEOS
		}
	}
	return s, skipped, nil
}

// seqOf is the training sequence of a rollout: prompt and response but
// the last token as input, and the response tokens as targets.
func seqOf(p *Prompt, r *Rollout) (llama.Seq, []int) {
	full := append(append([]int(nil), p.Tokens...), r.Response...)
	tok := full[:len(full)-1]
	tg := make([]int, len(tok))
	for i := range tg {
		tg[i] = -1
		if i+1 >= len(p.Tokens) {
			tg[i] = full[i+1]
		}
	}
	return llama.Seq{Tokens: tok, All: true}, tg
}
