package sft

import (
	"fmt"
	"github.com/herd-llm/herd/dist"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
)

// The fine-tuning methods.
const (
	Adapter = "adapter" // LLaMA-Adapter: adaption prompts in the top layers (lora.AddPrefixes)
	Full    = "full"    // every weight trains (Alpaca, Vicuna)
	LoRA    = "lora"    // low-rank adapters on a frozen base of any dtype
	QLoRA   = "qlora"   // LoRA on a base quantized to NF4 (or Options.BaseType)
	Embed   = "embed"   // only the token embedding and/or output head (Chinese-LLaMA stage 1)
)

// Methods lists the methods Tune runs.
var Methods = []string{Full, LoRA, QLoRA, Adapter, Embed}

// Options configure a fine-tuning run.
type Options struct {
	Method   string
	LoRA     lora.Config  // lora and qlora
	BaseType tensor.DType // qlora: the frozen base's dtype (0: NF4)
	// EmbedTensors are the tensors the embed method trains: "embed",
	// "output" or both (none given: the embedding, and the output head
	// unless it is tied to the embedding).
	EmbedTensors []string
	EmbedLoRA    bool // embed: train LoRA adapters (Options.LoRA) as well
	// PrefixLen and PrefixLayers shape the adapter method's adaption
	// prompts: tokens per prompt, and how many top layers get one.
	PrefixLen, PrefixLayers int
	Steps                   int // optimizer steps; 0: one pass over the samples
	Batch                   int // samples per micro-batch
	Accum                   int // micro-batches per step (0: 1)
	LR                      float64
	// MinLR is the floor of the schedule (0: a tenth of LR); Schedule
	// is constant, cosine or linear ("": cosine).
	MinLR    float64
	Schedule string
	Warmup   int
	// Beta1, Beta2 and Eps are AdamW's (0 each: Hugging Face Trainer's
	// 0.9, 0.999, 1e-8), WeightDecay its decoupled decay of the matrices
	// (and with DecayNorms of the norm gains too).
	Beta1, Beta2, Eps float64
	WeightDecay       float64
	DecayNorms        bool
	GradClip          float64
	Seed              uint64
	// Pack, when positive, fills each row of a batch with consecutive
	// examples of the shuffled order up to Pack tokens, and Batch counts
	// rows instead of examples. herd never pads: a batch is its examples'
	// tokens end to end, each example its own sequence from position 0
	// that attends only to itself, so packing changes how many examples a
	// step sees (evening out its tokens), never what one example computes.
	Pack int
	// Recompute keeps only each block's input in the forward pass and
	// recomputes the block in the backward pass (activation checkpointing):
	// one block's activations instead of every block's, for about a third
	// more work.
	Recompute bool
	// LimitMemory holds the Go runtime's memory while training to the
	// run's predicted bound (Result.Memory) less the resident memory it
	// does not manage (the mapped weights, the code), so that garbage
	// between collections cannot push the process past the bound.
	LimitMemory bool
	Log         io.Writer
	// OnStart is called once the run is set up, with the first step to run
	// (0, or where it resumed) and the last.
	OnStart func(first, steps int)
	OnStep  func(train.Progress)
	// Dir, when set, receives a checkpoint every SaveEvery steps and after
	// the last (step-N/state.safetensors: the trained weights and the
	// optimizer's moments, written atomically), metrics.jsonl (one line a
	// step) and loss.png (redrawn at each checkpoint); with Resume the run
	// continues from the newest checkpoint there, exactly as if it had not
	// stopped, and metrics.jsonl loses the lines after it.
	Dir       string
	SaveEvery int
	Resume    bool
	// Keep is how many checkpoints stay in Dir, the newest (0: all).
	Keep int
	// Recipe, when set, is written to Dir/recipe.yaml once the run holds
	// the directory (the command's effective recipe).
	Recipe string
	// Lock is Dir's lock when the caller holds it already (to keep it
	// while it writes the outputs after Tune); nil: Tune takes it.
	Lock *train.DirLock
	// Comm are the data-parallel ranks training together (nil: this
	// process alone); Accum is then each rank's, and a step has
	// GlobalAccum micro-batches.
	Comm dist.Comm
	// ZeRO shards AdamW's moments over the ranks (train.Config.ZeRO).
	ZeRO bool
	// Val are validation samples. With any, the run measures the model's
	// mean loss over their learned tokens (the training loss's masking,
	// without a tape, LoRA dropout off) before its first step, every
	// EvalEvery steps and after the last, in batches drawn as the
	// training batches are (Batch examples, or with Pack rows), the
	// samples in their order. It logs the loss and reports it in
	// train.Progress.ValLoss (metrics.jsonl's val_loss, the loss plot).
	// Evaluating leaves the training run bit for bit as without it.
	Val []Sample
	// EvalEvery is the steps between evaluations (0: only after the
	// last); EvalBatches the batches each covers (0: all), except the
	// last, which always covers every validation sample.
	EvalEvery, EvalBatches int
}

// optim is the run's AdamW configuration, the defaults filled in.
func (o Options) optim() train.Optim {
	op := train.Optim{Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay, DecayNorms: o.DecayNorms}
	if op.Beta1 == 0 {
		op.Beta1 = 0.9
	}
	if op.Beta2 == 0 {
		op.Beta2 = 0.999
	}
	if op.Eps == 0 {
		op.Eps = 1e-8
	}
	return op
}

// schedule is the run's learning-rate schedule, the defaults filled in.
func (o Options) schedule() train.Schedule {
	s := train.Schedule{Kind: o.Schedule, LR: o.LR, MinLR: o.MinLR, Warmup: o.Warmup, Steps: o.Steps}
	if s.Kind == "" {
		s.Kind = "cosine"
	}
	if s.MinLR == 0 {
		s.MinLR = o.LR / 10
	}
	return s
}

// Memory is a run's predicted peak resident memory by part, in bytes: what
// the base's weights occupy as loaded, the activations of the largest
// batch, and the trainable state.
type Memory struct {
	Weights int64 // the base's weights as loaded (a mapped file's pages)
	// Copies are weights the method holds again: the float32 model of the
	// full and embed methods less its trained tensors, a qlora base
	// converted to its dtype.
	Copies      int64
	Activations int64 // llama.ActivationBytes of the largest batch, plus the adapters' own
	State       int64 // trainable weights × 16: float32 weights, gradients, two Adam moments
	Tokens      int   // positions in the largest batch
	// Eval is the validation's forward pass (no tape): the State it holds
	// for its largest batch, which it keeps beside the training's.
	Eval int64
}

// Bound is the sum of the parts plus 10%.
func (m Memory) Bound() int64 {
	return (m.Weights + m.Copies + m.Activations + m.State + m.Eval) * 11 / 10
}

// String lists the parts in MiB.
func (m Memory) String() string {
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	eval := ""
	if m.Eval > 0 {
		eval = fmt.Sprintf(" + validation %.1f MiB", mib(m.Eval))
	}
	return fmt.Sprintf("base weights %.1f MiB + copies %.1f MiB + activations %.1f MiB (%d positions) + trainable state %.1f MiB%s, +10%%: %.1f MiB",
		mib(m.Weights), mib(m.Copies), mib(m.Activations), m.Tokens, mib(m.State), eval, mib(m.Bound()))
}

// Result sums up a run.
type Result struct {
	Model     *llama.Model // the tuned model (full, embed) or the base carrying the adapters
	Adapters  *lora.Set    // lora and qlora
	Trainable int64        // weights the optimizer updated
	Start     int          // the first step this invocation ran (0, or where it resumed)
	Losses    []float64    // per step run: mean loss over the learned tokens
	Tokens    int64        // positions processed
	Elapsed   time.Duration
	Memory    Memory // the predicted peak
	// ValLosses has, per step run, the validation loss after it (NaN
	// where the step did not evaluate); ValLoss is the one after the last
	// step, over every validation sample, and StartValLoss the one before
	// this invocation's first step (both NaN without validation samples).
	ValLosses             []float64
	ValLoss, StartValLoss float64
}

// Tune fine-tunes m on samples. For full and embed the returned model is a
// float32 copy of m (m itself is untouched); for lora and qlora the
// adapters are attached to m (qlora first converts m's block matrices to
// the base dtype); for adapter m's top layers get adaption prompts. The
// objective is cross-entropy masked to the learned tokens (Objective) on
// train.Fit's loop; the method decides the trainable set.
func Tune(m *llama.Model, samples []Sample, o Options) (*Result, error) {
	if err := o.check(samples); err != nil {
		return nil, err
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	if o.Accum <= 0 {
		o.Accum = 1
	}
	if o.Steps <= 0 {
		o.Steps = (len(samples) + o.Batch*o.GlobalAccum() - 1) / (o.Batch * o.GlobalAccum())
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	res := &Result{Memory: Memory{Weights: m.WeightBytes()}, ValLoss: math.NaN(), StartValLoss: math.NaN()}
	ts, err := newTrainable(m, o, &res.Memory, log)
	if err != nil {
		return nil, err
	}
	m, res.Model, res.Adapters = ts.model, ts.model, ts.adapters
	res.Trainable = train.Count(ts)
	if o.Method == Full || o.Method == Embed {
		res.Memory.Copies = 4 * (m.Params() - res.Trainable)
		if res.Adapters != nil {
			res.Memory.Copies += 4 * res.Adapters.Count()
		}
	}
	res.Memory.State = 16 * res.Trainable
	rows := "examples"
	if o.Pack > 0 {
		rows = fmt.Sprintf("packed rows of %d tokens", o.Pack)
	}
	fmt.Fprintf(log, "sft %s: %d trainable weights of %d, %d samples, %d steps of %d %s\n", o.Method, res.Trainable, m.Params(), len(samples), o.Steps, o.Batch*o.GlobalAccum(), rows)
	obj := newObjective(ts, samples, o)
	if err := obj.prepare(&res.Memory, log); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "memory: %s\n", res.Memory)
	cfg := o.config(log)
	cfg.FLOPsPerToken = train.TrainingFLOPs(m.Config, res.Trainable, res.Memory.Tokens/max(1, len(obj.largest)))
	if o.Dir != "" {
		cfg.Checkpoints = train.StateDir{Dir: o.Dir, Log: log, Keep: o.Keep}
	}
	if o.LimitMemory {
		cfg.MemoryLimit = train.MemoryLimit(res.Memory.Bound(), m, res.Memory.Weights, log)
	}
	if res.Adapters != nil {
		defer setTrain(res.Adapters, false)
	}
	sum, err := train.Fit(obj, ts, cfg)
	if err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	res.Start, res.Losses, res.ValLosses, res.Tokens, res.Elapsed = sum.Start, sum.Losses, sum.ValLosses, sum.Tokens, sum.Elapsed
	res.ValLoss, res.StartValLoss = sum.ValLoss, sum.StartValLoss
	return res, nil
}

// GlobalAccum is the micro-batches of a step over all ranks.
func (o Options) GlobalAccum() int { return train.GlobalAccum(o.Comm, o.Accum) }

// check reports unusable options for samples.
func (o Options) check(samples []Sample) error {
	if len(samples) == 0 {
		return fmt.Errorf("sft: no samples to train on")
	}
	if err := ParseMethod(o.Method); err != nil {
		return err
	}
	if o.Pack > 0 {
		for _, ss := range [][]Sample{samples, o.Val} {
			for i := range ss {
				if n := len(ss[i].Tokens); n > o.Pack {
					return fmt.Errorf("sft: %s: a sample of %d tokens does not fit a packed row of %d", ss[i].Where, n, o.Pack)
				}
			}
		}
	}
	if o.EvalEvery < 0 || o.EvalBatches < 0 {
		return fmt.Errorf("sft: eval every %d steps, %d batches: neither may be negative", o.EvalEvery, o.EvalBatches)
	}
	return nil
}

// config is the loop's configuration from the options.
func (o Options) config(log io.Writer) train.Config {
	return train.Config{Steps: o.Steps, Accum: o.Accum, Optim: o.optim(), Schedule: o.schedule(), GradClip: o.GradClip,
		EvalEvery: o.EvalEvery, EvalBatches: o.EvalBatches, SaveEvery: o.SaveEvery, Resume: o.Resume,
		Dir: o.Dir, Lock: o.Lock, Recipe: o.Recipe, Title: "herd sft " + o.Method, Log: log, OnStart: o.OnStart, OnStep: o.OnStep, Comm: o.Comm, ZeRO: o.ZeRO}
}

// batcher draws each step's examples: the samples in a shuffled order,
// shuffled again at the end of each pass; one example a row, or with
// packing as many consecutive ones as fit the row.
type batcher struct {
	samples     []Sample
	rng         *rand.Rand
	order       []int
	at          int
	batch, pack int
	out         []int
}

func newBatcher(samples []Sample, o Options) *batcher {
	rng := rand.New(rand.NewPCG(o.Seed, 0x5f7))
	return &batcher{samples: samples, rng: rng, order: rng.Perm(len(samples)), batch: o.Batch, pack: o.Pack}
}

// peek is the index of the next example in the order.
func (b *batcher) peek() int {
	if b.at == len(b.order) {
		b.order, b.at = b.rng.Perm(len(b.samples)), 0
	}
	return b.order[b.at]
}

// next returns the indices of the next step's examples (valid until the
// following call).
func (b *batcher) next() []int {
	b.out = b.out[:0]
	for range b.batch {
		used := 0
		for {
			i := b.peek()
			n := len(b.samples[i].Tokens)
			if used > 0 && (b.pack <= 0 || used+n > b.pack) {
				break
			}
			b.out = append(b.out, i)
			b.at++
			used += n
		}
	}
	return b.out
}

// largest is a batch of the most positions a step can hold: the longest
// examples together, or with packing every row full (of token 0).
func (b *batcher) largest() []llama.Seq {
	var seqs []llama.Seq
	if b.pack > 0 {
		for range b.batch {
			seqs = append(seqs, llama.Seq{Tokens: make([]int, b.pack), All: true})
		}
		return seqs
	}
	byLen := make([]int, len(b.samples))
	for i := range byLen {
		byLen[i] = i
	}
	slices.SortFunc(byLen, func(x, y int) int { return len(b.samples[y].Tokens) - len(b.samples[x].Tokens) })
	for _, i := range byLen[:min(b.batch, len(byLen))] {
		seqs = append(seqs, llama.Seq{Tokens: b.samples[i].Tokens, All: true})
	}
	return seqs
}

// ParseMethod checks a method name.
func ParseMethod(s string) error {
	if !slices.Contains(Methods, s) {
		return fmt.Errorf("sft: unknown method %q (want one of %v)", s, Methods)
	}
	return nil
}
