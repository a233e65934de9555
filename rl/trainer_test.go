package rl

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/herd-llm/herd/train"
)

var tinyConfig = llama.Config{Dim: 16, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 24, VocabSize: 11, ContextLen: 32,
	RopeTheta: 10000, NormEps: 1e-5}

// tinyModel is a random float32 model with weights large enough that
// every path of the gradient matters.
func tinyModel(t *testing.T, seed uint64) *llama.Model {
	t.Helper()
	m, err := llama.Random(tinyConfig, tensor.F32, seed)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 6))
	for _, p := range m.TrainParams(m.NewGrads()) {
		if p.Decay {
			for i := range p.Data {
				p.Data[i] = float32(r.NormFloat64() * 0.3)
			}
		}
	}
	return m
}

// tinyTok is the embedded stories260K tokenizer (its first 11 ids are the
// tiny model's vocabulary: specials and bytes, EOS 2).
func tinyTok(t *testing.T) tokenizer.Tokenizer {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	return tok
}

func tinyPrompts(n int, seed uint64) []Prompt {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]Prompt, n)
	for i := range out {
		p := []int{1}
		for range 2 + r.IntN(3) {
			p = append(p, 3+r.IntN(tinyConfig.VocabSize-3))
		}
		out[i] = Prompt{Tokens: p, Where: "tiny"}
	}
	return out
}

// lengthReward is the length rule: responses of varied lengths (EOS is
// one of 11 tokens) get varied rewards.
func lengthReward(t *testing.T) Rules {
	r, err := ParseRule("length:3")
	if err != nil {
		t.Fatal(err)
	}
	return Rules{r}
}

// tinyTrainer is a trainer of algo on a LoRA policy (B = 0 at the start:
// the policy is its reference) or, with full, a float32 copy.
func tinyTrainer(t *testing.T, algo string, full bool) *Trainer {
	t.Helper()
	base := tinyModel(t, 1)
	pol := &Policy{Model: base}
	if full {
		m, err := base.CloneF32()
		if err != nil {
			t.Fatal(err)
		}
		pol = &Policy{Model: m, Grads: m.NewGrads(), Ref: base}
	} else {
		set, err := lora.New(base, lora.Config{Rank: 2, Alpha: 4, Targets: lora.Modules}, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := set.Attach(base, 1); err != nil {
			t.Fatal(err)
		}
		pol.Adapters = set
	}
	cfg := Config{Algo: algo, Prompts: 3, Group: 3, MiniBatch: 4, Epochs: 2, ClipEps: 0.2, ClipValue: 0.2, VFCoef: 0.1,
		Gamma: 1, Lambda: 0.95, KLCoef: 0.05, Whiten: true, ScaleRewards: true, Seed: 5,
		Sampling: Sampling{SamplerConfig: generate.SamplerConfig{Temperature: 1}, MaxNew: 6}}
	if algo == PPO {
		cfg.Group = 1
		pol.Head, pol.Bias = NewHead(tinyConfig.Dim, 2)
		pol.HeadParams()
	}
	tr := &Trainer{Cfg: cfg, Policy: pol, Prompts: tinyPrompts(5, 4), Tok: tinyTok(t), StopIDs: []int{2}, Reward: lengthReward(t)}
	if err := tr.Init(); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (t *Trainer) params() []autograd.Param {
	var ps []autograd.Param
	if t.Policy.Adapters != nil {
		ps = t.Policy.Adapters.Params()
	} else {
		ps = t.Policy.Model.TrainParams(t.Policy.Grads)
	}
	return append(append(ps, t.Policy.HeadParams()...), t.Policy.ValueParams()...)
}

// withValueLoRA gives a LoRA PPO trainer's value head a trunk of its own.
func withValueLoRA(t *testing.T, tr *Trainer) *Trainer {
	t.Helper()
	v, err := lora.New(tr.Policy.Model, lora.Config{Rank: 2, Alpha: 4, Targets: []string{"q", "v", "down"}}, 9)
	if err != nil {
		t.Fatal(err)
	}
	tr.Policy.Value = v
	if err := tr.Init(); err != nil {
		t.Fatal(err)
	}
	return tr
}

// At step 0, with the policy equal to its reference (LoRA's B = 0, or a
// float32 copy of a float32 base), the KL is exactly 0 and every ratio
// exactly 1 (approximate KL exactly 0, nothing clipped).
func TestStepZeroKLZeroRatioOne(t *testing.T) {
	for _, algo := range []string{PPO, GRPO, RLOO} {
		for _, full := range []bool{false, true} {
			tr := tinyTrainer(t, algo, full)
			var tape autograd.Tape
			m, err := tr.Loss(&tape, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tr.buf {
				for k := range tr.buf[i].old {
					if tr.buf[i].old[k] != tr.buf[i].ref[k] {
						t.Fatalf("%s full=%v: rollout %d token %d: log π %v, log π_ref %v", algo, full, i, k, tr.buf[i].old[k], tr.buf[i].ref[k])
					}
				}
			}
			if kl := tr.metrics[MKL]; kl != 0 {
				t.Errorf("%s full=%v: objective/kl %g at step 0", algo, full, kl)
			}
			if a, c := m.Extra[MApproxKL], m.Extra[MClipFrac]; a != 0 || c != 0 {
				t.Errorf("%s full=%v: approxkl %g clipfrac %g at step 0 (ratio not exactly 1)", algo, full, a, c)
			}
			if algo == PPO && !full {
				// the value trunk of its own changes nothing of the policy
				tv := withValueLoRA(t, tinyTrainer(t, algo, full))
				var tp autograd.Tape
				mv, err := tv.Loss(&tp, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if mv.Extra[MApproxKL] != 0 || tv.metrics[MKL] != 0 || mv.Extra[MPolicy] != m.Extra[MPolicy] {
					t.Errorf("value-lora: approxkl %g kl %g, policy loss %g vs %g", mv.Extra[MApproxKL], tv.metrics[MKL], mv.Extra[MPolicy], m.Extra[MPolicy])
				}
			}
			if algo == GRPO && m.Extra["policy/kl_k3"] != 0 {
				t.Errorf("grpo: k3 %g at step 0", m.Extra["policy/kl_k3"])
			}
		}
	}
}

// The whole PPO, GRPO and RLOO losses' gradients (policy and value head)
// by central differences on a tiny model: after a rollout, the policy is
// moved away from the one that sampled (ratios off 1, some clipped) and
// the advantages and returns are random.
func TestLossGradients(t *testing.T) {
	for _, algo := range []string{PPO, GRPO, RLOO} {
		for _, full := range []bool{false, true} {
			tr := tinyTrainer(t, algo, full)
			tr.Cfg.KLCoef, tr.Ctl.Coef = 0.3, 0.3
			if err := tr.rollout(0); err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(8, 9))
			for i := range tr.buf {
				for k := range tr.buf[i].adv {
					tr.buf[i].adv[k] = r.NormFloat64()
					if tr.buf[i].ret != nil {
						tr.buf[i].ret[k] = r.NormFloat64()
					}
				}
			}
			ps := tr.params()
			for _, p := range ps {
				for i := range p.Data {
					p.Data[i] += float32(r.NormFloat64() * 0.1)
				}
			}
			checkGradient(t, tr, ps, algo)
		}
	}
	// PPO with the value head on a LoRA of its own
	tr := withValueLoRA(t, tinyTrainer(t, PPO, false))
	if err := tr.rollout(0); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(10, 11))
	for i := range tr.buf {
		for k := range tr.buf[i].adv {
			tr.buf[i].adv[k], tr.buf[i].ret[k] = r.NormFloat64(), r.NormFloat64()
		}
	}
	ps := tr.params()
	for _, p := range ps {
		for i := range p.Data {
			p.Data[i] += float32(r.NormFloat64() * 0.1)
		}
	}
	checkGradient(t, tr, ps, "ppo value-lora")
	// only the value adapters and head feed the value: the policy's
	// adapters are back on the model, the value's off
	for _, a := range tr.Policy.Value.Adapters {
		for _, l := range tr.Policy.Model.Layers[a.Layer].Matrix(a.Module).LoRA {
			if l == a.LoRA {
				t.Fatalf("the value adapter of %d %s is left attached", a.Layer, a.Module)
			}
		}
	}
}

func checkGradient(t *testing.T, tr *Trainer, ps []autograd.Param, what string) {
	t.Helper()
	idx := tr.minibatch(0, 0, 0)
	for _, p := range ps {
		clear(p.Grad)
	}
	var tape autograd.Tape
	m, err := tr.update(&tape, idx)
	if err != nil {
		t.Fatal(err)
	}
	tape.Backward()
	// the check covers the clipped branches too
	if c := m.Extra[MClipFrac] / float64(m.Count); c == 0 || c == 1 {
		t.Errorf("%s: clipfrac %g: the check misses a branch", what, c)
	}
	if c := m.Extra[MVClipFrac] / float64(m.Count); tr.Cfg.Algo == PPO && (c == 0 || c == 1) {
		t.Errorf("%s: val/clipfrac %g: the check misses a branch", what, c)
	}
	loss := func() float64 {
		var tp autograd.Tape
		m, err := tr.update(&tp, idx)
		if err != nil {
			t.Fatal(err)
		}
		return m.Sum / float64(m.Count)
	}
	const h = 3e-3 // the clip range's kinks are near at 1e-2
	rg := rand.New(rand.NewPCG(3, 4))
	for range 16 {
		p := ps[rg.IntN(len(ps))]
		i := rg.IntN(len(p.Data))
		v := p.Data[i]
		p.Data[i] = v + h
		hi := loss()
		p.Data[i] = v - h
		lo := loss()
		p.Data[i] = v
		fd, g := (hi-lo)/(2*h), float64(p.Grad[i])
		if math.Abs(fd-g) > 3e-4+3e-2*math.Abs(fd) {
			t.Errorf("%s: %s[%d]: gradient %.6g, central difference %.6g", what, p.Name, i, g, fd)
		}
	}
}

// Rollouts on stories260K end at a stop string (kept in the tokens, cut
// from the text), at EOS, or at MaxNew tokens; the same seed draws the
// same rollouts.
func TestGenerateStops(t *testing.T) {
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := &Policy{Model: m}
	ps := []Prompt{{Tokens: tok.Encode("Once upon a time", true, false)}, {Tokens: tok.Encode("Tom had a ball", true, false)}}
	s := Sampling{SamplerConfig: generate.SamplerConfig{Temperature: 1}, MaxNew: 40, Stop: []string{"."}}
	idx := []int{0, 1, 0, 1, 0, 1}
	rs, n, err := p.Generate(ps, idx, tok, []int{tok.EOS()}, s, 7)
	if err != nil {
		t.Fatal(err)
	}
	stopped := 0
	for i, r := range rs {
		full := tok.Decode(r.Response)
		switch {
		case r.EOS:
			if r.Response[len(r.Response)-1] != tok.EOS() {
				t.Errorf("rollout %d: EOS not the last token", i)
			}
		case strings.Contains(full, "."):
			stopped++
			if strings.Contains(tok.Decode(r.Response[:len(r.Response)-1]), ".") {
				t.Errorf("rollout %d ran past its stop string: %q", i, full)
			}
		case len(r.Response) != s.MaxNew:
			t.Errorf("rollout %d ended after %d tokens without a reason: %q", i, len(r.Response), full)
		}
		if strings.Contains(r.Text, ".") {
			t.Errorf("rollout %d: the stop string is in the text %q", i, r.Text)
		}
	}
	if stopped == 0 || n == 0 {
		t.Errorf("no rollout stopped at the stop string (%d positions)", n)
	}
	again, _, _ := p.Generate(ps, idx, tok, []int{tok.EOS()}, s, 7)
	for i := range rs {
		if !slices.Equal(rs[i].Response, again[i].Response) {
			t.Errorf("rollout %d differs with the same seed", i)
		}
	}
}

// Once the approximate KL to the sampling policy passes StopKL, the rest
// of the rollout batch's steps skip (no update), and the next batch
// trains again.
func TestStopKL(t *testing.T) {
	tr := tinyTrainer(t, PPO, false)
	tr.Cfg.StopKL = 1e-9
	per := tr.Cfg.StepsPerBatch() // 2 epochs × 3 mini-batches of 4 of 3 rollouts: 2 steps
	cfg := train.Config{Steps: 2 * per, Optim: train.DefaultOptim(), Schedule: train.Schedule{Kind: "constant", LR: 1e-2}}
	var skipped []bool
	cfg.OnStep = func(p train.Progress) { skipped = append(skipped, p.Extra[MPolicy] == 0 && p.Loss == 0) }
	if _, err := train.Fit(tr, train.Params(tr.params()), cfg); err != nil {
		t.Fatal(err)
	}
	if skipped[0] || !skipped[1] || skipped[per] {
		t.Errorf("steps skipped %v (a batch of %d steps): want the first step of each batch to train and the second to skip", skipped, per)
	}
}

// constReward scores every rollout v (NaN, ±Inf: a reward that failed or
// went wrong).
type constReward float64

func (c constReward) Name() string { return "const" }
func (c constReward) Score(_ context.Context, items []Item) ([]float64, error) {
	s := make([]float64, len(items))
	for i := range s {
		s[i] = float64(c)
	}
	return s, nil
}

// A reward that returns NaN is a counted skip (the rollouts are left out,
// never scored 0); one that returns ±Inf stops the run with an error.
func TestRewardNotFinite(t *testing.T) {
	tr := tinyTrainer(t, GRPO, false)
	tr.Reward = constReward(math.Inf(1))
	cfg := train.Config{Steps: 1, Optim: train.DefaultOptim(), Schedule: train.Schedule{Kind: "constant", LR: 1e-2}}
	if _, err := train.Fit(tr, train.Params(tr.params()), cfg); err == nil || !strings.Contains(err.Error(), "not finite") {
		t.Errorf("an infinite score: %v", err)
	}
	tr = tinyTrainer(t, GRPO, false)
	tr.Reward = constReward(math.NaN())
	if _, err := train.Fit(tr, train.Params(tr.params()), cfg); err != nil {
		t.Fatal(err)
	}
	if n := tr.Timings.Skipped; n != tr.Cfg.Rollouts() {
		t.Errorf("%d rollouts skipped, want all %d", n, tr.Cfg.Rollouts())
	}
}
