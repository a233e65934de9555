package sft

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/herd-llm/herd/autograd"
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
	Log                     io.Writer
	OnStep                  func(train.Progress)
	// Dir, when set, receives a checkpoint every SaveEvery steps and after
	// the last (step-N/state.safetensors: the trained weights and the
	// optimizer's moments); with Resume the run continues from the newest
	// there, exactly as if it had not stopped.
	Dir       string
	SaveEvery int
	Resume    bool
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
	res := &Result{}
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
	fmt.Fprintf(log, "sft %s: %d trainable weights of %d, %d samples, %d steps of %d\n", o.Method, res.Trainable, m.Params(), len(samples), o.Steps, o.Batch)
	adam := train.NewAdamW(params, 0.9, 0.999, 1e-8, o.WeightDecay)
	sched := train.Schedule{Kind: "cosine", LR: o.LR, MinLR: o.LR / 10, Warmup: o.Warmup, Steps: o.Steps}
	if err := sched.Check(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5f7))
	order := rng.Perm(len(samples))
	next := 0
	if o.Resume && o.Dir != "" {
		step, err := loadLatest(o.Dir, params, adam)
		if err != nil {
			return nil, err
		}
		res.Start = step
		fmt.Fprintf(log, "resuming at step %d of %d\n", step, o.Steps)
		// the data order up to there, drawn again
		for range step * o.Batch {
			if next == len(order) {
				order, next = rng.Perm(len(samples)), 0
			}
			next++
		}
	}
	var (
		st      llama.State
		tape    autograd.Tape
		seqs    []llama.Seq
		targets []int
	)
	// lay the State out once for the largest batch there can be (the
	// longest samples together), so that it never grows mid-run and leaves
	// its smaller layouts to the garbage collector
	byLen := make([]int, len(samples))
	for i := range byLen {
		byLen[i] = i
	}
	slices.SortFunc(byLen, func(a, b int) int { return len(samples[b].Tokens) - len(samples[a].Tokens) })
	for _, i := range byLen[:min(o.Batch, len(byLen))] {
		seqs = append(seqs, llama.Seq{Tokens: samples[i].Tokens, All: true})
	}
	if _, err := m.ForwardTape(&st, &tape, nil, seqs, llama.TapeOptions{}); err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	tape.Backward()
	begin := time.Now()
	for step := res.Start; step < o.Steps; step++ {
		t0 := time.Now()
		if res.Adapters != nil {
			// dropout draws from the step number, so a resumed run draws
			// the same masks
			for i, a := range res.Adapters.Adapters {
				if a.Dropout > 0 {
					a.Rng = rand.New(rand.NewPCG(o.Seed+uint64(i), uint64(step)))
				}
			}
		}
		seqs, targets = seqs[:0], targets[:0]
		learned := 0
		for range o.Batch {
			if next == len(order) {
				order, next = rng.Perm(len(samples)), 0
			}
			s := &samples[order[next]]
			next++
			seqs = append(seqs, llama.Seq{Tokens: s.Tokens, All: true})
			targets = append(targets, s.Targets...)
			learned += s.Learned()
		}
		train.ZeroGrads(params)
		logits, err := m.ForwardTape(&st, &tape, grads, seqs, llama.TapeOptions{})
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
		if o.Dir != "" && (step+1 == o.Steps || (o.SaveEvery > 0 && (step+1)%o.SaveEvery == 0)) {
			if err := saveState(o.Dir, step+1, params, adam); err != nil {
				return nil, err
			}
		}
		if o.OnStep != nil {
			dt := time.Since(t0)
			o.OnStep(train.Progress{Step: step + 1, Steps: o.Steps, Loss: loss, LR: lr, GradNorm: norm, ValLoss: math.NaN(),
				TokensPerSec: float64(len(targets)) / dt.Seconds(), Elapsed: time.Since(begin)})
		}
	}
	res.Elapsed = time.Since(begin)
	return res, nil
}

// ParseMethod checks a method name.
func ParseMethod(s string) error {
	if !slices.Contains(Methods, s) {
		return fmt.Errorf("sft: unknown method %q (want one of %v)", s, Methods)
	}
	return nil
}
