package align

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/train"
)

// Options configure a preference (DPO family, KTO) or reward-model run.
// Tune carries what every fine-tuning run shares, as herd sft takes it:
// the method (full, lora, qlora), LoRA's shape, the base dtype, steps,
// batch (pairs per micro-batch), accumulation, optimizer, schedule,
// clipping, seed, recomputation, the memory limit, checkpoints and resume
// in Dir, validation cadence, progress callbacks; its Val is unused (Val
// here are the held-out pairs).
type Options struct {
	Tune sft.Options
	Loss Params // herd dpo: the loss and its hyperparameters
	// Precompute computes the reference's log-probabilities of every
	// training and validation sample once before training (TRL's
	// precompute_ref_log_probs): no reference pass per step, and for full
	// fine-tuning no reference model is needed afterwards.
	Precompute bool
	Val        []Sample
}

// Result sums up a run.
type Result struct {
	Model     *llama.Model // the tuned model (full) or the base carrying the adapters
	Adapters  *lora.Set
	Head      []float32 // a reward model's score head
	Trainable int64
	Summary   *train.Summary
	Memory    sft.Memory // the predicted peak
	// StartVal and EndVal are the validation metrics before this
	// invocation's first step and after its last (Count 0 without Val).
	StartVal, EndVal Metrics
}

// objective adapts a Step function to the loop's Objective, Validator
// and Checker.
type objective struct {
	step     func(tape *autograd.Tape, step, k int) (Metrics, error)
	validate func(n int) (float64, error)
	batches  func() int
	check    func() error
}

func (o objective) Loss(tape *autograd.Tape, step, k int) (train.Micro, error) {
	m, err := o.step(tape, step, k)
	return train.Micro{Sum: m.Sum, Count: m.Count, Tokens: m.Tokens, Extra: m.Extra}, err
}
func (o objective) Validate(n int) (float64, error) { return o.validate(n) }
func (o objective) ValBatches() int                 { return o.batches() }
func (o objective) CheckModel() error               { return o.check() }

// firstBatch is the first validation batch, or without validation
// samples the first training batch.
func firstBatch(train, val []Sample, n int) []Sample {
	if len(val) > 0 {
		return val[:min(n, len(val))]
	}
	return train[:min(n, len(train))]
}

// finite reports the first value of xs that is NaN or infinite.
func finite(what string, xs []float64) error {
	for i, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%s %d of the check batch is %g: the model's logits are not finite", what, i, x)
		}
	}
	return nil
}

// setup fills the run's defaults and makes the trainable set.
func setup(m *llama.Model, samples []Sample, o *Options, perStep int) (*sft.Trained, io.Writer, error) {
	t := &o.Tune
	if len(samples) == 0 {
		return nil, nil, fmt.Errorf("no samples to train on")
	}
	if t.Method == sft.Adapter || t.Method == sft.Embed {
		return nil, nil, fmt.Errorf("method %s: preference and reward training take full, lora or qlora", t.Method)
	}
	if t.Batch <= 0 {
		t.Batch = 8
	}
	t.Accum = max(1, t.Accum)
	if t.Steps <= 0 {
		t.Steps = (perStep + t.Batch*t.GlobalAccum() - 1) / (t.Batch * t.GlobalAccum())
	}
	log := t.Log
	if log == nil {
		log = io.Discard
	}
	ts, err := sft.NewTrained(m, *t, log)
	return ts, log, err
}

// largest is the micro-batch of the most positions: the Batch samples
// with the longest sequences (of both responses for pairs).
func largest(ss []Sample, n int) []Sample {
	s := slices.Clone(ss)
	size := func(x *Sample) int { return 2*len(x.Prompt) + len(x.Chosen) + len(x.Rejected) }
	slices.SortStableFunc(s, func(a, b Sample) int { return size(&b) - size(&a) })
	return s[:min(n, len(s))]
}

// adapterActs is the adapters' own activations for tokens positions.
func adapterActs(set *lora.Set, tokens int) int64 {
	var n int64
	if set == nil {
		return 0
	}
	for _, a := range set.Adapters {
		n += 4 * int64(tokens) * int64(a.Rank)
		if a.Dropout > 0 {
			n += int64(tokens) * int64(a.In)
		}
	}
	return n
}

// fit runs the loop and fills the result's summary and validation.
func fit(obj objective, ts *sft.Trained, o *Options, title string, log io.Writer, res *Result, eval func() (Metrics, error)) error {
	cfg := o.Tune.TrainConfig(title, log)
	res.Trainable = train.Count(ts)
	if o.Tune.Dir != "" {
		cfg.Checkpoints = train.StateDir{Dir: o.Tune.Dir, Log: log}
	}
	cfg.FLOPsPerToken = train.TrainingFLOPs(ts.Model.Config, res.Trainable, res.Memory.Tokens/max(1, 2*o.Tune.Batch))
	if o.Tune.LimitMemory {
		cfg.MemoryLimit = train.MemoryLimit(res.Memory.Bound(), ts.Model, res.Memory.Weights, log)
	}
	fmt.Fprintf(log, "memory: %s\n", res.Memory)
	var err error
	if len(o.Val) > 0 {
		if res.StartVal, err = eval(); err != nil {
			return err
		}
	}
	if res.Summary, err = train.Fit(obj, ts, cfg); err != nil {
		return err
	}
	if len(o.Val) > 0 {
		res.EndVal, err = eval()
	}
	return err
}

// DPOTune trains m on preference samples with o.Loss: the policy is m's
// float32 copy (full, the reference m itself, frozen) or adapters on m
// (lora, qlora: the reference is m with the adapters switched off).
func DPOTune(m *llama.Model, samples []Sample, o Options) (*Result, error) {
	if err := o.Loss.Check(); err != nil {
		return nil, err
	}
	n := len(samples)
	if o.Loss.Loss == KTO {
		n = len(unpairAll(samples))
	}
	ts, log, err := setup(m, samples, &o, n)
	if err != nil {
		return nil, err
	}
	pol := &Policy{Model: ts.Model, Grads: ts.Grads, Adapters: ts.Adapters, Tape: llama.TapeOptions{Recompute: o.Tune.Recompute}, Seed: o.Tune.Seed}
	if ts.Adapters == nil && !RefFree(o.Loss.Loss) {
		pol.Ref = m
	}
	d := &DPO{Policy: pol, Params: o.Loss, Train: samples, Val: o.Val, Batch: o.Tune.Batch, Accum: o.Tune.GlobalAccum(), Seed: o.Tune.Seed, Log: log}
	if err := d.Init(); err != nil {
		return nil, err
	}
	res := &Result{Model: ts.Model, Adapters: ts.Adapters, Memory: ts.Memory}
	if o.Precompute && !RefFree(o.Loss.Loss) {
		if d.RefTrain, err = d.Precompute(d.Train); err != nil {
			return nil, err
		}
		if d.RefVal, err = d.Precompute(d.Val); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "reference log-probabilities precomputed for %d training and %d validation samples\n", len(d.Train), len(d.Val))
	}
	if err := d.layout(&res.Memory); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "dpo %s (%s, β %g): %d trainable weights of %d, %d samples, %d steps of %d×%d\n", o.Tune.Method, o.Loss.Loss, o.Loss.Beta,
		train.Count(ts), ts.Model.Params(), len(d.Train), o.Tune.Steps, o.Tune.Batch, o.Tune.Accum)
	defer pol.train(false, 0, 0)
	check := func() error {
		b := pairBatch(firstBatch(d.Train, d.Val, d.Batch))
		if d.Params.Loss == KTO {
			b = unpairedBatch(firstBatch(d.Train, d.Val, d.Batch))
		}
		lp, err := pol.policyLogProbs(b)
		if err != nil {
			return err
		}
		return finite("log-probability", lp)
	}
	obj := objective{step: d.Step, validate: d.Validate, batches: d.ValBatches, check: check}
	eval := func() (Metrics, error) { return d.Evaluate(d.Val, d.RefVal, 0) }
	if err := fit(obj, ts, &o, "herd dpo "+o.Loss.Loss+" "+o.Tune.Method, log, res, eval); err != nil {
		return nil, fmt.Errorf("dpo: %w", err)
	}
	return res, nil
}

// layout runs the largest micro-batch once through every pass a step makes
// (taped policy, reference, untaped policy), so that the States never grow
// mid-run, and fills in the activations' memory: the taped pass's
// prediction (llama.ActivationBytes) and the untaped passes' States.
func (d *DPO) layout(mem *sft.Memory) error {
	big := largest(d.Train, d.Batch)
	b := unpairedBatch(big)
	if d.Params.Loss != KTO {
		b = pairBatch(big)
	}
	mem.Tokens = b.tokens
	p := d.Policy
	mem.Activations = llama.ActivationBytes(p.Model.Config, b.tokens, p.Tape.Recompute) + adapterActs(p.Adapters, b.tokens)
	var tape autograd.Tape
	if _, _, err := p.forward(&tape, b, make([]float64, len(b.seqs))); err != nil {
		return err
	}
	tape.Backward()
	if !RefFree(d.Params.Loss) && (d.RefTrain == nil || d.Params.Loss == KTO) {
		if _, err := p.refLogProbs(b); err != nil {
			return err
		}
	}
	if len(d.Val) > 0 || d.Params.Loss == KTO {
		if _, err := p.policyLogProbs(b); err != nil {
			return err
		}
	}
	mem.Eval = p.ref.Bytes() + p.infer.Bytes()
	return nil
}

// RewardTune trains a reward model on m's trunk (full, lora, qlora) and a
// new score head, with the Bradley–Terry loss.
func RewardTune(m *llama.Model, samples []Sample, o Options) (*Result, error) {
	ts, log, err := setup(m, samples, &o, len(samples))
	if err != nil {
		return nil, err
	}
	pol := &Policy{Model: ts.Model, Grads: ts.Grads, Adapters: ts.Adapters, Tape: llama.TapeOptions{Recompute: o.Tune.Recompute}, Seed: o.Tune.Seed}
	rm := &RewardModel{Policy: pol, Head: NewHead(m.Config.Dim, o.Tune.Seed), Train: samples, Val: o.Val, Batch: o.Tune.Batch, Accum: o.Tune.GlobalAccum(), Seed: o.Tune.Seed, Log: log}
	if err := rm.Init(); err != nil {
		return nil, err
	}
	ts.AddParams(rm.HeadParam())
	res := &Result{Model: ts.Model, Adapters: ts.Adapters, Head: rm.Head, Memory: ts.Memory}
	big := largest(samples, rm.Batch)
	seqs, ntok := rmSeqs(big, true)
	res.Memory.Tokens = ntok
	res.Memory.Activations = llama.ActivationBytes(m.Config, ntok, pol.Tape.Recompute) + adapterActs(pol.Adapters, ntok)
	var tape autograd.Tape
	if _, err := pol.Model.HiddenTape(&pol.st, &tape, nil, seqs, pol.Tape); err != nil {
		return nil, err
	}
	tape.Backward()
	fmt.Fprintf(log, "rm %s: %d trainable weights of %d (head %d), %d pairs, %d steps of %d×%d\n", o.Tune.Method, train.Count(ts), ts.Model.Params(),
		len(rm.Head), len(samples), o.Tune.Steps, o.Tune.Batch, o.Tune.Accum)
	defer pol.train(false, 0, 0)
	check := func() error {
		seqs, _ := rmSeqs(firstBatch(rm.Train, rm.Val, rm.Batch), false)
		toks := make([][]int, len(seqs))
		for i := range seqs {
			toks[i] = seqs[i].Tokens
		}
		rw, err := rm.Score(toks)
		if err != nil {
			return err
		}
		return finite("reward", rw)
	}
	obj := objective{step: rm.Step, validate: rm.Validate, batches: rm.ValBatches, check: check}
	eval := func() (Metrics, error) { return rm.Evaluate(rm.Val, 0) }
	if err := fit(obj, ts, &o, "herd rm "+o.Tune.Method, log, res, eval); err != nil {
		return nil, fmt.Errorf("rm: %w", err)
	}
	return res, nil
}
