package train

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/dist"
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
	// Extra are the objective's own metrics of the step (Micro.Extra, per
	// item), nil for none.
	Extra map[string]float64
	// Comm is the step's time in data-parallel communication (0 on one
	// process).
	Comm time.Duration
}

// Options are the run's connections to the outside.
type Options struct {
	Log    io.Writer      // messages: the recipe, checkpoints, validation (nil: discarded)
	OnStep func(Progress) // called after each step (nil: nothing)
	// OnStart is called once the model is ready, with the first step to run
	// (0, or the resumed step) and the last.
	OnStart func(first, steps int)
	// Comm are the data-parallel ranks (nil: dist.World(), this process
	// alone unless it was built with MPI and started by mpirun); on ranks
	// other than 0 Log, OnStep and OnStart stay silent.
	Comm dist.Comm
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

// FLOPsPerToken is the model FLOP count of training every weight on one
// token: TrainingFLOPs with every parameter trainable, the PaLM/nanoGPT
// estimate 6·parameters + 12·layers·dim·seq.
func FLOPsPerToken(c llama.Config, seq int) float64 {
	return TrainingFLOPs(c, c.Params(), seq)
}

// TrainingFLOPs is the model FLOP count of one trained position, the one
// formula behind every MFU herd reports: per weight 2 for the forward pass
// and 2 for the inputs' gradient, plus 2 per trainable value for its own
// gradient (a tied head counted once), plus 12·layers·dim·seq for
// attention's scores and weighted sums, forward and backward. Recomputed
// activations are not counted (model FLOPs, as PaLM defines MFU).
func TrainingFLOPs(c llama.Config, trainable int64, seq int) float64 {
	return 4*float64(c.Params()) + 2*float64(trainable) + 12*float64(c.NLayers)*float64(c.Dim)*float64(seq)
}

// run holds a pretraining run's state.
type run struct {
	r          Recipe
	opt        Options
	log        io.Writer
	m          *llama.Model
	tok        tokenizer.Tokenizer
	man        *data.Manifest
	train      *data.Loader
	val        *data.Loader
	grads      *llama.Grads
	params     []autograd.Param
	resumed    string // the checkpoint the model was loaded from ("" a fresh start)
	lock       *DirLock
	comm       dist.Comm
	root       bool   // rank 0: the one that owns the output directory
	dataDigest string // of the manifest, compared between ranks
}

// Pretrain runs recipe r: a model from a preset (random init, normal 0.02,
// residual projections scaled by 1/sqrt(2·layers)) or continued from a
// checkpoint, trained on the shards of r.Data with AdamW, checkpoints and
// metrics in r.Out. With r.Resume it continues the run in r.Out from its
// last checkpoint, bit for bit as if it had not stopped (same machine and
// thread count). A loss or gradient that is NaN or Inf stops the run with
// an error, leaving the last good checkpoint in place. The objective is
// causal language modelling (CausalLM) on Fit's loop.
func Pretrain(r Recipe, opt Options) (*Result, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	kernels.SetThreads(r.Threads)
	ru := &run{r: r, opt: opt, log: opt.Log, comm: opt.Comm}
	if ru.comm == nil {
		var err error
		if ru.comm, err = dist.World(); err != nil {
			return nil, err
		}
	}
	ru.root = ru.comm.Rank() == 0
	if ru.log == nil || !ru.root {
		ru.log = io.Discard
	}
	if err := Agree(ru.comm, "setting up the run", ru.setup()); err != nil {
		ru.close()
		return nil, err
	}
	defer ru.close()
	obj := &CausalLM{Model: ru.m, Grads: ru.grads, Train: ru.train, Val: ru.val, Batch: r.Batch, Seq: r.Seq, Accum: GlobalAccum(ru.comm, r.Accum),
		Recompute: r.Recompute, EvalBatches: r.EvalBatches}
	sum, err := Fit(obj, Params(ru.params), ru.config())
	if err != nil {
		return nil, err
	}
	if sum.Start >= r.Steps {
		fmt.Fprintf(ru.log, "the run in %s already reached step %d\n", r.Out, r.Steps)
	}
	return &Result{Checkpoint: filepath.Join(r.Out, ModelName), Steps: r.Steps, TrainLoss: sum.TrainLoss, ValLoss: sum.ValLoss,
		StartValLoss: sum.StartValLoss, Tokens: sum.Tokens, Elapsed: sum.Elapsed}, nil
}

// config is the loop's configuration from the recipe.
func (ru *run) config() Config {
	r := ru.r
	rec := r
	rec.Resume = false // how this invocation started, not part of the training
	return Config{Recipe: rec.YAML(), Steps: r.Steps, Accum: r.Accum, Optim: r.optim(), Schedule: r.schedule(), GradClip: r.GradClip,
		EvalEvery: r.EvalEvery, EvalBatches: r.EvalBatches, SaveEvery: r.SaveEvery, Checkpoints: &modelDir{ru: ru},
		Resume: r.Resume, Dir: r.Out, Lock: ru.lock, Title: "herd pretrain", FLOPsPerToken: FLOPsPerToken(ru.m.Config, r.Seq),
		PeakFLOPS: r.PeakGFLOPS * 1e9, Log: ru.log, OnStart: ru.opt.OnStart, OnStep: ru.opt.OnStep, Comm: ru.comm, Fingerprint: ru.dataDigest, ZeRO: r.ZeRO, Overlap: r.Overlap}
}

func (ru *run) close() {
	ru.lock.Release()
	if ru.train != nil {
		ru.train.Close()
	}
	if ru.val != nil {
		ru.val.Close()
	}
}

func (ru *run) setup() error {
	r := ru.r
	man, err := data.ReadManifest(r.Data)
	if err != nil {
		return err
	}
	ru.man = man
	if mb, err := os.ReadFile(filepath.Join(r.Data, data.ManifestName)); err == nil {
		ru.dataDigest = fmt.Sprintf("%x", sha256.Sum256(mb))
	}
	tokPath := filepath.Join(r.Data, man.Tokenizer.File)
	if ru.tok, err = checkpoint.OpenTokenizer(tokPath, 0); err != nil { // tokenizer.model or tokenizer.gguf
		return fmt.Errorf("data directory %s: tokenizer: %w", r.Data, err)
	}
	if ru.root { // rank 0 owns the output directory; the others get its weights
		if ru.lock, err = LockDir(r.Out); err != nil {
			return err
		}
		if err := CleanTemps(r.Out, ru.log); err != nil {
			return err
		}
		if err := repairLink(r.Out, ru.log); err != nil {
			return err
		}
		if err := ru.start(); err != nil {
			return err
		}
	} else if err := ru.fresh(); err != nil {
		return err
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
	ru.train, err = data.OpenLoader(r.Data, "train", r.Batch, r.Seq, data.LoaderOptions{Shuffle: !r.NoShuffle, Seed: r.Seed})
	if err != nil {
		return err
	}
	if len(man.Val) > 0 && r.EvalBatches > 0 {
		if ru.val, err = data.OpenLoader(r.Data, "val", r.Batch, r.Seq, data.LoaderOptions{}); err != nil {
			return err
		}
	}
	fmt.Fprintf(ru.log, "model: %s, %.2fM parameters (%d trainable tensors), %d layers, dim %d, vocab %d\n",
		ru.describe(), float64(c.Params())/1e6, len(ru.params), c.NLayers, c.Dim, c.VocabSize)
	fmt.Fprintf(ru.log, "data: %s, %d train tokens (%.1f steps per epoch), %d val tokens\n", r.Data, ru.train.Tokens(),
		float64(ru.train.StepsPerEpoch())/float64(r.Accum), man.ValTokens)
	if n := ru.comm.Size(); n > 1 {
		fmt.Fprintf(ru.log, "global batch: %d ranks × %d windows × accum %d = %d windows of %d tokens a step\n", n, r.Batch, r.Accum, n*r.Batch*r.Accum, r.Seq)
	}
	fmt.Fprintf(ru.log, "activations: %.1f MiB predicted for %d×%d tokens per micro-batch\n",
		float64(llama.ActivationBytes(c, r.Batch*r.Seq, r.Recompute))/(1<<20), r.Batch, r.Seq)
	fmt.Fprintf(ru.log, "recipe:\n%s", indent(ru.r.YAML()))
	return nil
}

// start builds the model the run starts from: the newest checkpoint's when
// resuming, else a fresh one.
func (ru *run) start() error {
	r := ru.r
	latest, err := latestCheckpoint(r.Out)
	if err != nil {
		return err
	}
	switch {
	case r.Resume && latest != "":
		return ru.resumeModel(latest)
	case r.Resume:
		fmt.Fprintf(ru.log, "no checkpoint in %s: starting from the beginning\n", r.Out)
	case latest != "":
		return fmt.Errorf("%s already holds a run (%s): pass --resume to continue it, or choose another output directory", r.Out, latest)
	}
	return ru.fresh()
}

// DefaultPeakGFLOPSPerThread is the F32 peak assumed per thread for the
// MFU estimate unless the recipe gives the machine's own (peak_gflops):
// the nominal FMA peak of one core of the AMD EPYC Zen 3 machine herd's
// first benchmarks ran on (two 8-wide FMA units at about 2.67 GHz, 2·2·8
// FLOP a cycle). It is a nominal figure, not measured, and not this
// machine's: an MFU against it is only comparable between runs.
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
	m, err := ru.initial()
	ru.m = m
	return err
}

// initial is the model a fresh run starts from.
func (ru *run) initial() (*llama.Model, error) {
	r := ru.r
	if r.Preset != "" {
		p, err := llama.LookupPreset(r.Preset)
		if err != nil {
			return nil, err
		}
		c := p.Config
		if c.VocabSize != ru.tok.VocabSize() {
			return nil, fmt.Errorf("preset %s has a %d-token vocabulary, the data's tokenizer %d", p.Name, c.VocabSize, ru.tok.VocabSize())
		}
		return llama.RandomInit(c, tensor.F32, r.Seed, llama.InitOptions{ScaleResidual: true})
	}
	src, err := llama.Open(r.Init)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	m, err := src.CloneF32()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Init, err)
	}
	return m, nil
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
