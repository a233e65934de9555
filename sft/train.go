package sft

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"slices"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
)

// The fine-tuning methods.
const (
	Full  = "full"  // every weight trains (Alpaca, Vicuna)
	LoRA  = "lora"  // low-rank adapters on a frozen base of any dtype
	QLoRA = "qlora" // LoRA on a base quantized to NF4 (or Options.BaseType)
	Embed = "embed" // only the token embedding and/or output head (Chinese-LLaMA stage 1)
)

// Methods lists the methods Tune runs.
var Methods = []string{Full, LoRA, QLoRA, Adapter, Embed}

// Options configure a fine-tuning run.
type Options struct {
	Method   string
	LoRA     lora.Config  // lora and qlora
	BaseType tensor.DType // qlora: the frozen base's dtype (0: NF4)
	// EmbedTensors are the tensors the embed method trains: "embed",
	// "output" or both.
	EmbedTensors []string
	EmbedLoRA    bool // embed: train LoRA adapters (Options.LoRA) as well
	// PrefixLen and PrefixLayers shape the adapter method's adaption
	// prompts: tokens per prompt, and how many top layers get one.
	PrefixLen, PrefixLayers int
	Steps                   int // optimizer steps; 0: one pass over the samples
	Batch                   int // samples per step
	LR                      float64
	Warmup                  int
	WeightDecay             float64
	GradClip                float64
	Seed                    uint64
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
// the base dtype); for adapter m's top layers get adaption prompts.
func Tune(m *llama.Model, samples []Sample, o Options) (*Result, error) {
	if len(samples) == 0 {
		return nil, fmt.Errorf("sft: no samples to train on")
	}
	if o.Dir != "" && !o.Resume {
		if n, err := latestStep(o.Dir); err != nil {
			return nil, err
		} else if n > 0 {
			return nil, fmt.Errorf("sft: %s already holds a run (step-%d): pass --resume to continue it, or choose another output directory", o.Dir, n)
		}
	}
	if o.Batch <= 0 {
		o.Batch = 8
	}
	if o.Steps <= 0 {
		o.Steps = (len(samples) + o.Batch - 1) / o.Batch
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	if o.Pack > 0 {
		for _, ss := range [][]Sample{samples, o.Val} {
			for i := range ss {
				if n := len(ss[i].Tokens); n > o.Pack {
					return nil, fmt.Errorf("sft: %s: a sample of %d tokens does not fit a packed row of %d", ss[i].Where, n, o.Pack)
				}
			}
		}
	}
	if o.EvalEvery < 0 || o.EvalBatches < 0 {
		return nil, fmt.Errorf("sft: eval every %d steps, %d batches: neither may be negative", o.EvalEvery, o.EvalBatches)
	}
	res := &Result{Memory: Memory{Weights: m.WeightBytes()}, ValLoss: math.NaN(), StartValLoss: math.NaN()}
	var (
		grads  *llama.Grads
		params []autograd.Param
	)
	switch o.Method {
	case Full:
		c, err := m.CloneF32()
		if err != nil {
			return nil, err
		}
		m = c
		grads = m.NewGrads()
		params = m.TrainParams(grads)
	case Embed:
		c, err := m.CloneF32()
		if err != nil {
			return nil, err
		}
		m = c
		grads = &llama.Grads{Layers: make([]llama.LayerGrads, len(m.Layers))}
		for _, t := range o.EmbedTensors {
			switch t {
			case "embed":
				grads.Embed = make([]float32, m.Embed.Out*m.Embed.In)
				if m.Output == m.Embed {
					grads.Output = grads.Embed
				}
			case "output":
				if m.Output == m.Embed {
					return nil, fmt.Errorf("sft: the output head is tied to the embedding: train embed")
				}
				grads.Output = make([]float32, m.Output.Out*m.Output.In)
			default:
				return nil, fmt.Errorf("sft: embed method: unknown tensor %q (want embed, output)", t)
			}
		}
		params = m.TrainParams(grads)
		if len(params) == 0 {
			return nil, fmt.Errorf("sft: embed method: no tensors chosen")
		}
		if o.EmbedLoRA { // Chinese-LLaMA's stage 2: embeddings and LoRA together
			set, err := lora.New(m, o.LoRA, o.Seed)
			if err != nil {
				return nil, err
			}
			if err := set.Attach(m, 1); err != nil {
				return nil, err
			}
			res.Adapters = set
			params = append(params, set.Params()...)
		}
	case Adapter:
		if _, err := AddPrefixes(m, o.PrefixLen, o.PrefixLayers, o.Seed); err != nil {
			return nil, err
		}
		params = prefixParams(m)
	case QLoRA:
		dt := o.BaseType
		if dt == 0 {
			dt = tensor.NF4
		}
		n, kept, err := lora.QuantizeBase(m, dt)
		if err != nil {
			return nil, err
		}
		res.Memory.Copies = m.WeightBytes()
		fmt.Fprintf(log, "qlora: %d matrices stored as %s, %d kept (rows not whole %s blocks)\n", n, dt, kept, dt)
		fallthrough
	case LoRA:
		set, err := lora.New(m, o.LoRA, o.Seed)
		if err != nil {
			return nil, err
		}
		if err := set.Attach(m, 1); err != nil {
			return nil, err
		}
		res.Adapters = set
		params = set.Params()
	default:
		return nil, fmt.Errorf("sft: unknown method %q (want one of %v)", o.Method, Methods)
	}
	res.Model = m
	for _, p := range params {
		res.Trainable += int64(len(p.Data))
	}
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
	fmt.Fprintf(log, "sft %s: %d trainable weights of %d, %d samples, %d steps of %d %s\n", o.Method, res.Trainable, m.Params(), len(samples), o.Steps, o.Batch, rows)
	adam := train.NewAdamW(params, 0.9, 0.999, 1e-8, o.WeightDecay)
	sched := train.Schedule{Kind: "cosine", LR: o.LR, MinLR: o.LR / 10, Warmup: o.Warmup, Steps: o.Steps}
	if err := sched.Check(); err != nil {
		return nil, err
	}
	bt := newBatcher(samples, o)
	if o.Resume && o.Dir != "" {
		step, err := loadLatest(o.Dir, params, adam)
		if err != nil {
			return nil, err
		}
		res.Start = step
		fmt.Fprintf(log, "resuming at step %d of %d\n", step, o.Steps)
		for range step { // the data order up to there, drawn again
			bt.next()
		}
	}
	var metrics *train.MetricsLog
	if o.Dir != "" {
		var err error
		if metrics, err = train.OpenMetrics(filepath.Join(o.Dir, train.MetricsName), res.Start); err != nil {
			return nil, err
		}
		defer metrics.Close()
		metrics.Title = "herd sft " + o.Method
	}
	var (
		st      llama.State
		tape    autograd.Tape
		seqs    []llama.Seq
		targets []int
	)
	// lay the State out once for the largest batch there can be, so that it
	// never grows mid-run and leaves its smaller layouts to the garbage
	// collector
	seqs = bt.largest()
	for _, q := range seqs {
		res.Memory.Tokens += len(q.Tokens)
	}
	topt := llama.TapeOptions{Recompute: o.Recompute}
	res.Memory.Activations = llama.ActivationBytes(m.Config, res.Memory.Tokens, o.Recompute)
	if res.Adapters != nil {
		for _, a := range res.Adapters.Adapters {
			res.Memory.Activations += 4 * int64(res.Memory.Tokens) * int64(a.Rank) // A·x
			if a.Dropout > 0 {
				res.Memory.Activations += int64(res.Memory.Tokens) * int64(a.In) // the mask
			}
		}
	}
	var val *evaluator
	if len(o.Val) > 0 {
		val = newEvaluator(o.Val, o.Batch, o.Pack)
		if val.learned == 0 {
			return nil, fmt.Errorf("sft: the %d validation samples have no token to learn", len(o.Val))
		}
		var err error
		if res.Memory.Eval, err = val.layout(m, res.Adapters); err != nil {
			return nil, err
		}
		every := "after the last step only"
		if o.EvalEvery > 0 {
			part := "all"
			if o.EvalBatches > 0 && o.EvalBatches < len(val.batches) {
				part = fmt.Sprintf("%d of the", o.EvalBatches)
			}
			every = fmt.Sprintf("every %d steps (%s %d batches) and after the last (all)", o.EvalEvery, part, len(val.batches))
		}
		fmt.Fprintf(log, "validation: %d samples, %d learned tokens, %d batches; %s\n", len(o.Val), val.learned, len(val.batches), every)
	}
	fmt.Fprintf(log, "memory: %s\n", res.Memory)
	if o.LimitMemory {
		// the runtime may use what the bound leaves beside the resident
		// memory it does not manage: the program's code and the base's
		// mapped weights, made resident first
		touchWeights(m)
		outside, ok := residentOutsideGo()
		if !ok {
			outside = res.Memory.Weights
		}
		limit := res.Memory.Bound() - outside
		if limit < minMemoryLimit {
			// A tiny model: the bound is about what the program itself
			// takes, and a limit that small would only make the collector
			// run without end.
			fmt.Fprintf(log, "memory: no limit on the Go runtime (the bound leaves %.1f MiB beside %.1f MiB resident outside it)\n", float64(limit)/(1<<20), float64(outside)/(1<<20))
		} else {
			fmt.Fprintf(log, "memory: the Go runtime held to %.1f MiB (%.1f MiB resident outside it)\n", float64(limit)/(1<<20), float64(outside)/(1<<20))
			defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
		}
	}
	if _, err := m.ForwardTape(&st, &tape, nil, seqs, topt); err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	tape.Backward()
	if res.Adapters != nil {
		defer func() {
			for _, a := range res.Adapters.Adapters {
				a.Train = false
			}
		}()
	}
	// model FLOP per token: forward 2, the inputs' gradient 2 and, for the
	// weights that train, their gradient 2 per weight; recomputation runs
	// the blocks' forward once more
	flops := 4*float64(m.Params()) + 2*float64(res.Trainable) + 12*float64(m.Config.NLayers*m.Config.Dim)*float64(res.Memory.Tokens/max(1, len(seqs)))
	if o.Recompute {
		flops += 2 * float64(m.Params())
	}
	peak := train.DefaultPeakGFLOPSPerThread * 1e9 * float64(kernels.Threads())
	if val != nil && res.Start < o.Steps {
		l, _, err := val.loss(m, res.Adapters, o.EvalBatches)
		if err != nil {
			return nil, err
		}
		res.StartValLoss = l
		fmt.Fprintf(log, "step %d: val loss %.4f\n", res.Start, l)
	}
	if o.OnStart != nil {
		o.OnStart(res.Start, o.Steps)
	}
	begin := time.Now()
	for step := res.Start; step < o.Steps; step++ {
		t0 := time.Now()
		if res.Adapters != nil {
			// the dropout masks are drawn from the step number: the same
			// in a resumed run, and in a block's recomputation
			seeds := rand.New(rand.NewPCG(o.Seed, uint64(step)))
			for _, a := range res.Adapters.Adapters {
				a.Train, a.Seed = true, seeds.Uint64()
			}
		}
		seqs, targets = seqs[:0], targets[:0]
		learned := 0
		for _, i := range bt.next() {
			s := &samples[i]
			seqs = append(seqs, llama.Seq{Tokens: s.Tokens, All: true})
			targets = append(targets, s.Targets...)
			learned += s.Learned()
		}
		train.ZeroGrads(params)
		logits, err := m.ForwardTape(&st, &tape, grads, seqs, topt)
		if err != nil {
			return nil, fmt.Errorf("sft step %d: %w", step+1, err)
		}
		sum, n := autograd.CrossEntropy(&tape, logits, targets, m.Config.VocabSize, float32(1/float64(max(1, learned))))
		tape.Backward()
		loss := sum / float64(max(1, n))
		norm := train.GradNorm(params)
		if math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0) {
			return nil, fmt.Errorf("sft step %d: loss %g, gradient norm %g: training diverged (lower the learning rate)", step+1, loss, norm)
		}
		if o.GradClip > 0 && norm > o.GradClip {
			train.ScaleGrads(params, float32(o.GradClip/norm))
		}
		lr := sched.At(step)
		adam.Update(params, lr)
		res.Losses = append(res.Losses, loss)
		res.Tokens += int64(len(targets))
		dt := time.Since(t0)
		p := train.Progress{Step: step + 1, Steps: o.Steps, Loss: loss, LR: lr, GradNorm: norm, ValLoss: math.NaN(),
			TokensPerSec: float64(len(targets)) / dt.Seconds(), Elapsed: time.Since(begin)}
		p.MFU = p.TokensPerSec * flops / peak
		last := step+1 == o.Steps
		if val != nil && (last || (o.EvalEvery > 0 && (step+1)%o.EvalEvery == 0)) {
			// the last evaluation covers every validation sample
			n, what := o.EvalBatches, ""
			if last {
				n, what = 0, fmt.Sprintf(" (all %d val batches)", len(val.batches))
			}
			if p.ValLoss, _, err = val.loss(m, res.Adapters, n); err != nil {
				return nil, err
			}
			fmt.Fprintf(log, "step %d: train loss %.4f, val loss %.4f%s\n", step+1, loss, p.ValLoss, what)
			res.ValLoss = p.ValLoss
		}
		res.ValLosses = append(res.ValLosses, p.ValLoss)
		if metrics != nil {
			if err := metrics.Add(p); err != nil {
				return nil, err
			}
		}
		if o.Dir != "" && (last || (o.SaveEvery > 0 && (step+1)%o.SaveEvery == 0)) {
			if err := saveState(o.Dir, step+1, params, adam); err != nil {
				return nil, err
			}
			if err := metrics.Plot(filepath.Join(o.Dir, train.PlotName)); err != nil {
				fmt.Fprintf(log, "loss plot: %v\n", err)
			}
		}
		if o.OnStep != nil {
			o.OnStep(p)
		}
	}
	res.Elapsed = time.Since(begin)
	return res, nil
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
