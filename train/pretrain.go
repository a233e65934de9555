package train

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// Progress is what the loop reports after every step.
type Progress struct {
	Step         int     // steps done (1-based)
	Steps        int     // steps in the run
	Loss         float64 // mean training loss of the step
	LR           float64
	GradNorm     float64 // before clipping
	TokensPerSec float64 // of this step
	MFU          float64 // model FLOP/s of this step over the peak
	ValLoss      float64 // NaN when the step did not validate
	Elapsed      time.Duration
}

// Options are the run's connections to the outside.
type Options struct {
	Log    io.Writer      // messages: the recipe, checkpoints, validation (nil: discarded)
	OnStep func(Progress) // called after each step (nil: nothing)
	// OnStart is called once the model is ready, with the first step to run
	// (0, or the resumed step) and the last.
	OnStart func(first, steps int)
}

// Result sums up a finished run.
type Result struct {
	Checkpoint   string // the final model.gguf
	Steps        int
	TrainLoss    float64 // of the last step
	ValLoss      float64 // over the whole validation split after the last step (NaN without one)
	StartValLoss float64 // of the model before the first step of this invocation (NaN without a val split)
	Tokens       int64   // tokens trained on in this invocation
	Elapsed      time.Duration
}

// FLOPsPerToken is the model FLOP count of training on one token, the
// PaLM/nanoGPT estimate: 6·parameters (forward 2, backward 4, a tied head
// counted once) plus 12·layers·dim·seq for attention's scores and sums.
func FLOPsPerToken(c llama.Config, seq int) float64 {
	return 6*float64(c.Params()) + 12*float64(c.NLayers)*float64(c.Dim)*float64(seq)
}

// run holds a pretraining run's state.
type run struct {
	r       Recipe
	opt     Options
	log     io.Writer
	m       *llama.Model
	tok     tokenizer.Tokenizer
	man     *data.Manifest
	train   *data.Loader
	val     *data.Loader
	grads   *llama.Grads
	params  []autograd.Param
	adam    *AdamW
	sched   Schedule
	metrics *MetricsLog
	start   int // first step to run
	peak    float64
}

// Pretrain runs recipe r: a model from a preset (random init, normal 0.02,
// residual projections scaled by 1/sqrt(2·layers)) or continued from a
// checkpoint, trained on the shards of r.Data with AdamW, checkpoints and
// metrics in r.Out. With r.Resume it continues the run in r.Out from its
// last checkpoint, bit for bit as if it had not stopped (same machine and
// thread count). A loss or gradient that is NaN or Inf stops the run with
// an error, leaving the last good checkpoint in place.
func Pretrain(r Recipe, opt Options) (*Result, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	kernels.SetThreads(r.Threads)
	ru := &run{r: r, opt: opt, log: opt.Log, sched: r.schedule()}
	if ru.log == nil {
		ru.log = io.Discard
	}
	if err := ru.setup(); err != nil {
		ru.close()
		return nil, err
	}
	defer ru.close()
	return ru.loop()
}

func (ru *run) close() {
	if ru.train != nil {
		ru.train.Close()
	}
	if ru.val != nil {
		ru.val.Close()
	}
	if ru.metrics != nil {
		ru.metrics.Close()
	}
}

func (ru *run) setup() error {
	r := ru.r
	man, err := data.ReadManifest(r.Data)
	if err != nil {
		return err
	}
	ru.man = man
	tokPath := filepath.Join(r.Data, man.Tokenizer.File)
	if ru.tok, err = checkpoint.OpenTokenizer(tokPath, 0); err != nil { // tokenizer.model or tokenizer.gguf
		return fmt.Errorf("data directory %s: tokenizer: %w", r.Data, err)
	}
	if err := os.MkdirAll(r.Out, 0o755); err != nil {
		return err
	}
	latest, err := latestCheckpoint(r.Out)
	if err != nil {
		return err
	}
	switch {
	case r.Resume && latest != "":
		if err := ru.resume(latest); err != nil {
			return err
		}
	case r.Resume:
		fmt.Fprintf(ru.log, "no checkpoint in %s: starting from the beginning\n", r.Out)
		fallthrough
	default:
		if latest != "" && !r.Resume {
			return fmt.Errorf("%s already holds a run (%s): pass --resume to continue it, or choose another output directory", r.Out, latest)
		}
		if err := ru.fresh(); err != nil {
			return err
		}
	}
	c := ru.m.Config
	if c.VocabSize != man.Tokenizer.Vocab {
		return fmt.Errorf("the model's vocabulary is %d tokens, the data's tokenizer has %d", c.VocabSize, man.Tokenizer.Vocab)
	}
	if r.Seq > c.ContextLen {
		return fmt.Errorf("sequence length %d exceeds the model's context of %d", r.Seq, c.ContextLen)
	}
	ru.grads = ru.m.NewGrads()
	ru.params = ru.m.TrainParams(ru.grads)
	if len(ru.params) == 0 {
		return fmt.Errorf("the model has no float32 weights to train")
	}
	if r.DecayNorms {
		for i := range ru.params {
			ru.params[i].Decay = true
		}
	}
	if ru.adam == nil {
		ru.adam = NewAdamW(ru.params, r.Beta1, r.Beta2, r.Eps, r.WeightDecay)
	} else if err := ru.adam.check(ru.params); err != nil {
		return err
	}
	ru.train, err = data.OpenLoader(r.Data, "train", r.Batch, r.Seq, data.LoaderOptions{Shuffle: !r.NoShuffle, Seed: r.Seed})
	if err != nil {
		return err
	}
	if len(man.Val) > 0 && r.EvalBatches > 0 {
		if ru.val, err = data.OpenLoader(r.Data, "val", r.Batch, r.Seq, data.LoaderOptions{}); err != nil {
			return err
		}
	}
	if ru.metrics, err = OpenMetrics(filepath.Join(r.Out, MetricsName), ru.start); err != nil {
		return err
	}
	ru.peak = r.PeakGFLOPS * 1e9
	if ru.peak == 0 {
		ru.peak = DefaultPeakGFLOPSPerThread * 1e9 * float64(kernels.Threads())
	}
	fmt.Fprintf(ru.log, "model: %s, %.2fM parameters (%d trainable tensors), %d layers, dim %d, vocab %d\n",
		ru.describe(), float64(c.Params())/1e6, len(ru.params), c.NLayers, c.Dim, c.VocabSize)
	fmt.Fprintf(ru.log, "data: %s, %d train tokens (%.1f steps per epoch), %d val tokens\n", r.Data, ru.train.Tokens(),
		float64(ru.train.StepsPerEpoch())/float64(r.Accum), man.ValTokens)
	fmt.Fprintf(ru.log, "activations: %.1f MiB predicted for %d×%d tokens per micro-batch\n",
		float64(llama.ActivationBytes(c, r.Batch*r.Seq, r.Recompute))/(1<<20), r.Batch, r.Seq)
	fmt.Fprintf(ru.log, "recipe:\n%s", indent(ru.r.YAML()))
	return nil
}

// DefaultPeakGFLOPSPerThread is the F32 FMA peak of one core of the
// development machine (AMD EPYC Zen 3, AVX2: 171 GFLOP/s on two cores),
// used for the MFU estimate unless the recipe gives the machine's own.
const DefaultPeakGFLOPSPerThread = 85.5

func (ru *run) describe() string {
	if ru.r.Preset != "" {
		return "preset " + ru.r.Preset
	}
	return ru.r.Init
}

func indent(s string) string {
	out := ""
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out += "  " + s[:i] + "\n"
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// fresh builds the starting model: random from a preset or a copy of a
// checkpoint.
func (ru *run) fresh() error {
	r := ru.r
	if r.Preset != "" {
		p, err := llama.LookupPreset(r.Preset)
		if err != nil {
			return err
		}
		c := p.Config
		if c.VocabSize != ru.tok.VocabSize() {
			return fmt.Errorf("preset %s has a %d-token vocabulary, the data's tokenizer %d", p.Name, c.VocabSize, ru.tok.VocabSize())
		}
		ru.m, err = llama.RandomInit(c, tensor.F32, r.Seed, llama.InitOptions{ScaleResidual: true})
		return err
	}
	src, err := llama.Open(r.Init)
	if err != nil {
		return err
	}
	defer src.Close()
	if ru.m, err = src.CloneF32(); err != nil {
		return fmt.Errorf("%s: %w", r.Init, err)
	}
	return nil
}

// loop runs the steps.
func (ru *run) loop() (*Result, error) {
	r, c := ru.r, ru.m.Config
	if ru.opt.OnStart != nil {
		ru.opt.OnStart(ru.start, r.Steps)
	}
	res := &Result{ValLoss: math.NaN(), StartValLoss: math.NaN(), Steps: r.Steps}
	if ru.val != nil && ru.start < r.Steps {
		res.StartValLoss = Evaluate(ru.m, ru.val, r.EvalBatches)
		fmt.Fprintf(ru.log, "step %d: val loss %.4f\n", ru.start, res.StartValLoss)
	}
	begin := time.Now()
	var (
		st     llama.State
		tape   autograd.Tape
		batch  = make([]int, r.Batch*(r.Seq+1))
		seqs   = make([]llama.Seq, r.Batch)
		target = make([]int, r.Batch*r.Seq)
		inputs = make([]int, r.Batch*r.Seq)
	)
	flops := FLOPsPerToken(c, r.Seq)
	tokensPerStep := int64(r.Batch) * int64(r.Seq) * int64(r.Accum)
	scale := float32(1 / float64(tokensPerStep))
	lastCkpt := ""
	if l, _ := latestCheckpoint(r.Out); l != "" {
		lastCkpt = filepath.Join(r.Out, l)
	}
	for step := ru.start; step < r.Steps; step++ {
		t0 := time.Now()
		ZeroGrads(ru.params)
		var lossSum float64
		for k := range r.Accum {
			ru.train.Batch(int64(step)*int64(r.Accum)+int64(k), batch)
			w := r.Seq + 1
			for b := range r.Batch {
				copy(inputs[b*r.Seq:(b+1)*r.Seq], batch[b*w:b*w+r.Seq])
				copy(target[b*r.Seq:(b+1)*r.Seq], batch[b*w+1:(b+1)*w])
				seqs[b] = llama.Seq{Tokens: inputs[b*r.Seq : (b+1)*r.Seq], All: true}
			}
			logits, err := ru.m.ForwardTape(&st, &tape, ru.grads, seqs, llama.TapeOptions{Recompute: r.Recompute})
			if err != nil {
				return nil, fmt.Errorf("step %d: %w", step+1, err)
			}
			sum, _ := autograd.CrossEntropy(&tape, logits, target, c.VocabSize, scale)
			lossSum += sum
			tape.Backward()
		}
		loss := lossSum / float64(tokensPerStep)
		norm := GradNorm(ru.params)
		if bad := math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0); bad {
			keep := "no checkpoint was written yet"
			if lastCkpt != "" {
				keep = "the last good checkpoint is " + lastCkpt
			}
			return nil, fmt.Errorf("step %d: the loss is %g and the gradient norm %g: training diverged (try a lower learning rate or stronger clipping); stopped, %s",
				step+1, loss, norm, keep)
		}
		if r.GradClip > 0 && norm > r.GradClip {
			ScaleGrads(ru.params, float32(r.GradClip/norm))
		}
		lr := ru.sched.At(step)
		ru.adam.Update(ru.params, lr)
		dt := time.Since(t0)
		p := Progress{Step: step + 1, Steps: r.Steps, Loss: loss, LR: lr, GradNorm: norm, ValLoss: math.NaN(),
			TokensPerSec: float64(tokensPerStep) / dt.Seconds(), Elapsed: time.Since(begin)}
		p.MFU = p.TokensPerSec * flops / ru.peak
		last := step+1 == r.Steps
		if ru.val != nil && (last || (r.EvalEvery > 0 && (step+1)%r.EvalEvery == 0)) {
			// the last evaluation covers the whole validation split
			n, what := r.EvalBatches, ""
			if last {
				n, what = int(ru.val.StepsPerEpoch()), fmt.Sprintf(" (all %d val batches)", ru.val.StepsPerEpoch())
			}
			p.ValLoss = Evaluate(ru.m, ru.val, n)
			fmt.Fprintf(ru.log, "step %d: train loss %.4f, val loss %.4f%s\n", step+1, loss, p.ValLoss, what)
			res.ValLoss = p.ValLoss
		}
		if err := ru.metrics.Add(p); err != nil {
			return nil, err
		}
		res.TrainLoss = loss
		res.Tokens += tokensPerStep
		if last || (r.SaveEvery > 0 && (step+1)%r.SaveEvery == 0) {
			dir, err := ru.save(step+1, loss, p.ValLoss)
			if err != nil {
				return nil, err
			}
			lastCkpt = dir
		}
		if ru.opt.OnStep != nil {
			ru.opt.OnStep(p)
		}
	}
	if ru.start >= r.Steps {
		fmt.Fprintf(ru.log, "the run in %s already reached step %d\n", r.Out, r.Steps)
	}
	res.Checkpoint = filepath.Join(r.Out, ModelName)
	res.Elapsed = time.Since(begin)
	return res, nil
}

// Evaluate is the mean cross-entropy of m over the first n batches of l
// (all tokens of each window but the first as targets), without a tape.
func Evaluate(m *llama.Model, l *data.Loader, n int) float64 {
	var st llama.State
	var sum float64
	var count int
	var batch []int
	for k := range n {
		if batch == nil {
			batch = make([]int, l.BatchSize()*(l.SeqLen()+1))
		}
		l.Batch(int64(k), batch)
		w := l.SeqLen() + 1
		seqs := make([]llama.Seq, l.BatchSize())
		targets := make([][]int, l.BatchSize())
		for b := range seqs {
			seqs[b] = llama.Seq{Tokens: batch[b*w : b*w+w-1], All: true}
			targets[b] = batch[b*w+1 : (b+1)*w]
		}
		logits, err := m.ForwardBatch(&st, seqs)
		if err != nil {
			return math.NaN()
		}
		for b, lg := range logits {
			s, c := autograd.CrossEntropy(nil, &autograd.Var{Data: lg}, targets[b], m.Config.VocabSize, 0)
			sum += s
			count += c
		}
	}
	if count == 0 {
		return math.NaN()
	}
	return sum / float64(count)
}
