package train

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/dist"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/kernels"
)

// Config is how Fit trains: everything but the objective and the trainable
// set. Every way of training (Pretrain, sft.Tune, the objectives that
// follow) fills it from its own options.
type Config struct {
	Steps    int      // optimizer steps in the run
	Accum    int      // micro-batches per step (0: 1)
	Optim    Optim    // AdamW's hyperparameters
	Schedule Schedule // the learning rate of each step
	GradClip float64  // clip the global gradient norm to this (0: off)
	// EvalEvery is the steps between validations (0: only after the
	// last); EvalBatches the batches each covers (0: all), except the
	// last, which covers all. Both need an objective that is a Validator.
	EvalEvery, EvalBatches int
	// SaveEvery is the steps between checkpoints (0: only after the
	// last); nil Checkpoints writes none.
	SaveEvery   int
	Checkpoints Checkpointer
	// Resume continues from the newest checkpoint; without it a directory
	// that holds one is an error.
	Resume bool
	// Dir receives metrics.jsonl (one line a step) and loss.png (redrawn
	// at each checkpoint); "" writes neither. Title heads the plot. The
	// run holds Dir's lock (Lock, when the caller took it already, else
	// Fit takes it), removes what interrupted runs left there
	// (CleanTemps) and writes Recipe, when given, to Dir/recipe.yaml.
	Dir, Title string
	// Panels are further plots of named Progress.Extra metrics drawn
	// beside the loss in loss.png (none: the loss alone).
	Panels []Panel
	Lock   *DirLock
	Recipe string
	// FLOPsPerToken is the model FLOP count of one trained position (see
	// FLOPsPerToken), PeakFLOPS the machine's peak (0: the default per
	// thread): Progress.MFU is their ratio's share.
	FLOPsPerToken, PeakFLOPS float64
	// MaxWeight is the largest magnitude a trained value may reach
	// before the run counts as diverged (0: DefaultMaxWeight; negative:
	// no check). Trained transformer weights stay far below it.
	MaxWeight float64
	// Comm is the group of data-parallel ranks that train together (nil:
	// this process alone); Accum is then each rank's micro-batches, and
	// the objective must be built for GlobalAccum(Comm, Accum) (see
	// dist.go). Fingerprint is what else every rank must agree on (a
	// digest of the data), compared at start with the recipe.
	Comm        dist.Comm
	Fingerprint string
	// ZeRO shards AdamW's moments over the ranks (ZeRO stage 1, see
	// zero.go): each keeps and updates its share, the weights are
	// all-gathered after every step. It changes nothing on one process.
	ZeRO bool
	// Overlap starts the gradients' all-reduce during the backward pass,
	// bucket by bucket as they are final (see overlap.go; not with ZeRO).
	// The result is the same bit for bit; whether it is faster depends on
	// the machine (BENCHMARKS.md).
	Overlap bool
	// MemoryLimit holds the Go runtime's memory to this many bytes during
	// the run (0: no limit; see MemoryLimit).
	MemoryLimit int64
	Log         io.Writer // messages (nil: discarded)
	// OnStart is called once, with the first step to run (0, or the
	// resumed step) and the last; OnStep after each step.
	OnStart func(first, steps int)
	OnStep  func(Progress)
}

// Summary sums up what Fit ran.
type Summary struct {
	Start  int       // the first step this invocation ran (0, or where it resumed)
	Losses []float64 // per step run
	// ValLosses has, per step run, the validation loss after it (NaN
	// where it did not validate); ValLoss is the one after the last step
	// (over all validation batches) and StartValLoss the one before this
	// invocation's first step (both NaN without validation).
	ValLosses             []float64
	TrainLoss             float64 // of the last step run
	ValLoss, StartValLoss float64
	Tokens                int64  // positions processed in this invocation
	Checkpoint            string // the last checkpoint written or found ("" none)
	Elapsed               time.Duration
}

// loop is one Fit call's state.
type loop struct {
	cfg    Config
	obj    Objective
	val    Validator // nil: the objective does not validate
	params []autograd.Param
	opt    *AdamW
	tape   autograd.Tape
	log    io.Writer
	sum    *Summary
	mlog   *MetricsLog
	peak   float64
	begin  time.Time
	comm   dist.Comm
	root   bool // rank 0 (the one that writes)
	// bucket is the gradients' all-reduce buffer, commTime the step's time
	// in communication
	bucket   []float32
	commTime time.Duration
	zero     *zero // the sharded optimizer (nil: every rank holds it whole)
	// stash holds the sum of a step's earlier micro-batches' gradients
	// while the next one's backward pass runs (see stashGrads)
	stash []float32
	ov    *overlap // the all-reduce overlapped with the backward pass (nil: after it)
}

// Fit trains the parameters of set on obj with AdamW: for each step,
// Accum micro-batches of forward pass, loss and backward pass (gradients
// summed), the global gradient norm, clipping, the divergence check and
// the update; validation, metrics and checkpoints at their cadence. A
// loss or gradient that is not finite, a loss stuck with a zero gradient,
// a trained value that is not finite or beyond MaxWeight, or (before a
// checkpoint) a model whose forward pass gives a non-finite logit stops
// the run with an error naming the last good checkpoint, which is kept.
func Fit(obj Objective, set Trainable, cfg Config) (*Summary, error) {
	l := &loop{cfg: cfg, obj: obj, params: set.Params(), log: cfg.Log,
		sum: &Summary{ValLoss: math.NaN(), StartValLoss: math.NaN()}}
	l.comm = cfg.Comm
	if l.comm == nil {
		l.comm = dist.Single{}
	}
	l.root = l.comm.Rank() == 0
	if l.log == nil || !l.root {
		l.log = io.Discard
	}
	if !l.root { // only rank 0 writes, reports and keeps checkpoints
		l.cfg.Dir, l.cfg.Lock, l.cfg.OnStart, l.cfg.OnStep = "", nil, nil, nil
	}
	if l.cfg.Accum <= 0 {
		l.cfg.Accum = 1
	}
	if v, ok := obj.(Validator); ok && v.ValBatches() > 0 {
		l.val = v
	}
	if l.cfg.Dir != "" && l.cfg.Lock == nil {
		lock, err := LockDir(l.cfg.Dir)
		if err := l.agree("locking "+cfg.Dir, err); err != nil {
			return nil, err
		}
		defer lock.Release()
	} else if err := l.agree("locking "+cfg.Dir, nil); err != nil {
		return nil, err
	}
	if err := l.setup(); err != nil {
		return nil, err
	}
	if l.mlog != nil {
		defer l.mlog.Close()
	}
	if cfg.MemoryLimit > 0 {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(cfg.MemoryLimit))
	}
	if err := l.run(); err != nil {
		return nil, err
	}
	return l.sum, nil
}

// setup checks the configuration, makes the optimizer, resumes and opens
// the metrics.
func (l *loop) setup() error {
	c := l.cfg
	if len(l.params) == 0 {
		return fmt.Errorf("nothing to train: the trainable set is empty")
	}
	if c.Steps <= 0 || c.EvalEvery < 0 || c.EvalBatches < 0 || c.SaveEvery < 0 || c.GradClip < 0 {
		return fmt.Errorf("steps %d must be positive; eval every %d, eval batches %d, save every %d and grad clip %g must not be negative",
			c.Steps, c.EvalEvery, c.EvalBatches, c.SaveEvery, c.GradClip)
	}
	if err := c.Optim.Check(); err != nil {
		return err
	}
	if err := c.Schedule.Check(); err != nil {
		return err
	}
	if err := l.sameAsRoot("the recipe, data or trainable set", l.fingerprint()); err != nil {
		return err
	}
	if c.Dir != "" {
		if err := l.agree("preparing "+c.Dir, l.prepareDir()); err != nil {
			return err
		}
	} else if err := l.agree("preparing the output directory", nil); err != nil {
		return err
	}
	l.opt = c.Optim.New(l.params)
	var err error
	if l.root {
		err = l.resume()
		if err == nil && c.Dir != "" {
			err = l.writeParallel()
		}
	}
	if err := l.agree("resuming", err); err != nil {
		return err
	}
	if err := l.startRanks(); err != nil {
		return err
	}
	if c.Dir != "" {
		if l.mlog, err = OpenMetrics(filepath.Join(c.Dir, MetricsName), l.sum.Start); err != nil {
			return err
		}
		if c.Title != "" {
			l.mlog.Title = c.Title
		}
		l.mlog.Panels = c.Panels
	}
	l.peak = c.PeakFLOPS
	if l.peak == 0 {
		l.peak = DefaultPeakGFLOPSPerThread * 1e9 * float64(kernels.Threads())
	}
	return nil
}

// prepareDir clears the output directory of leftovers and writes the
// recipe.
func (l *loop) prepareDir() error {
	if err := CleanTemps(l.cfg.Dir, l.log); err != nil {
		return err
	}
	if l.cfg.Recipe == "" {
		return nil
	}
	return fileio.WriteAtomic(filepath.Join(l.cfg.Dir, RecipeName), func(w io.Writer) error {
		_, err := io.WriteString(w, l.cfg.Recipe)
		return err
	})
}

// RecipeName is the file of Config.Recipe in the output directory.
const RecipeName = "recipe.yaml"

// resume restores the newest checkpoint when asked to, and refuses to
// start over one otherwise.
func (l *loop) resume() error {
	ck := l.cfg.Checkpoints
	if ck == nil {
		return nil
	}
	step, where, err := ck.Latest()
	if err != nil {
		return err
	}
	if step == 0 {
		return nil
	}
	if !l.cfg.Resume {
		return fmt.Errorf("%s already holds a run (%s): pass --resume to continue it, or choose another output directory", l.cfg.Dir, where)
	}
	if l.cfg.Dir != "" {
		if err := l.checkParallel(); err != nil {
			return err
		}
	}
	if l.sum.Start, err = ck.Restore(l.params, l.opt); err != nil {
		return err
	}
	l.sum.Checkpoint = where
	return nil
}

// run runs the steps from the start.
func (l *loop) run() error {
	c := l.cfg
	if c.OnStart != nil {
		c.OnStart(l.sum.Start, c.Steps)
	}
	if l.val != nil && l.sum.Start < c.Steps {
		v, err := l.val.Validate(c.EvalBatches)
		if err != nil {
			return err
		}
		l.sum.StartValLoss = v
		if l.mlog != nil {
			l.mlog.StartVal(l.sum.Start, v)
		}
		fmt.Fprintf(l.log, "step %d: val loss %.4f\n", l.sum.Start, v)
	}
	l.begin = time.Now()
	for step := l.sum.Start; step < c.Steps; step++ {
		p, err := l.step(step)
		if err != nil {
			return err
		}
		if err := l.after(step, &p); err != nil {
			return err
		}
		if c.OnStep != nil {
			c.OnStep(p)
		}
	}
	l.sum.Elapsed = time.Since(l.begin)
	return nil
}

// step runs one optimizer step: forward, loss and backward for each
// micro-batch, then the gradient norm, the divergence check, clipping and
// the update.
func (l *loop) step(step int) (Progress, error) {
	t0 := time.Now()
	ZeroGrads(l.params)
	var mb Micro
	first := l.comm.Rank() * l.cfg.Accum // this rank's share of the step's micro-batches
	last := first + l.cfg.Accum - 1
	var lossErr error
	l.commTime = 0
	if l.ov != nil {
		l.ov.begin()
	}
	for k := first; k <= last; k++ {
		if k > first {
			l.stashGrads() // the next micro-batch's gradient starts from zero
		}
		if l.ov != nil && k == last { // the all-reduce starts during this backward pass
			l.tape.Ready = l.ov.hook(l, k > first)
		}
		m, err := l.obj.Loss(&l.tape, step, k) // forward pass and loss
		if err != nil {
			lossErr = err
			break
		}
		l.tape.Backward()
		if k > first {
			l.addStash() // the step's sum so far + this micro-batch's gradient
		}
		mb.add(m)
	}
	l.tape.Ready = nil
	if l.ov != nil {
		// every rank, failed or not, starts and waits for every bucket
		if err := l.timeComm(l.ov.finish); err != nil && lossErr == nil {
			lossErr = err
		}
		if !l.ov.reported {
			l.ov.reported = true
			fmt.Fprintf(l.log, "overlap: %d of %d tensors were final during the backward pass (%d buckets)\n", l.ov.early, len(l.params), len(l.ov.buckets))
		}
	}
	if l.comm.Size() == 1 && lossErr != nil {
		return Progress{}, fmt.Errorf("step %d: %w", step+1, lossErr)
	}
	if l.comm.Size() > 1 {
		if err := l.timeComm(func() error {
			// a rank whose objective failed stops every rank
			if err := l.agree("the micro-batches", lossErr); err != nil {
				return err
			}
			if err := l.reduceMicro(&mb); err != nil {
				return err
			}
			if l.zero != nil || l.ov != nil {
				return nil // reduce-scattered in the update, or reduced already
			}
			return l.reduceGrads()
		}); err != nil {
			return Progress{}, fmt.Errorf("step %d: %w", step+1, err)
		}
	}
	loss := mb.Sum / float64(max(1, mb.Count))
	// a step whose every micro-batch skipped (on every rank) makes no update
	skip := mb.skips == l.cfg.Accum*l.comm.Size()
	norm, lr, err := l.update(step, loss, mb.Count, skip)
	if err != nil {
		return Progress{}, err
	}
	if err := l.diverged(step, badWeights(l.params, l.cfg.MaxWeight)); err != nil {
		return Progress{}, err
	}
	dt := time.Since(t0)
	p := Progress{Step: step + 1, Steps: l.cfg.Steps, Loss: loss, LR: lr, GradNorm: norm, ValLoss: math.NaN(),
		TokensPerSec: float64(mb.Tokens) / dt.Seconds(), Elapsed: time.Since(l.begin), Extra: mb.mean(), Comm: l.commTime}
	p.MFU = p.TokensPerSec * l.cfg.FLOPsPerToken / l.peak
	l.sum.Losses = append(l.sum.Losses, loss)
	l.sum.TrainLoss = loss
	l.sum.Tokens += int64(mb.Tokens)
	return p, nil
}

// update takes the optimizer step after the gradients of step are in:
// the global gradient norm, the divergence check, clipping and AdamW
// (sharded with ZeRO). It returns the norm and the learning rate.
func (l *loop) update(step int, loss float64, count int, skip bool) (float64, float64, error) {
	lr := l.cfg.Schedule.At(step)
	if skip {
		return 0, lr, nil // no gradient was seeded: nothing to check or apply
	}
	if l.zero != nil {
		norm, err := l.zero.step(l, lr, func(norm float64) error { return l.diverged(step, badStep(loss, norm, count)) })
		return norm, lr, err
	}
	norm := GradNorm(l.params)
	if err := l.diverged(step, badStep(loss, norm, count)); err != nil {
		return norm, lr, err
	}
	if l.cfg.GradClip > 0 && norm > l.cfg.GradClip {
		ScaleGrads(l.params, float32(l.cfg.GradClip/norm))
	}
	l.opt.Update(l.params, lr)
	return norm, lr, nil
}

// add sums a micro-batch into m.
func (m *Micro) add(o Micro) {
	m.Sum += o.Sum
	m.Count += o.Count
	m.Tokens += o.Tokens
	if o.Skip {
		m.skips++
	}
	for k, v := range o.Extra {
		if m.Extra == nil {
			m.Extra = map[string]float64{}
		}
		m.Extra[k] += v
	}
}

// mean is the extra metrics per item.
func (m *Micro) mean() map[string]float64 {
	if len(m.Extra) == 0 {
		return nil
	}
	out := make(map[string]float64, len(m.Extra))
	for k, v := range m.Extra {
		out[k] = v / float64(max(1, m.Count))
	}
	return out
}

// after validates, logs and checkpoints after step as their cadences say.
func (l *loop) after(step int, p *Progress) error {
	c := l.cfg
	last := step+1 == c.Steps
	if l.val != nil && (last || (c.EvalEvery > 0 && (step+1)%c.EvalEvery == 0)) {
		// the last validation covers every batch
		n, what := c.EvalBatches, ""
		if last {
			n, what = l.val.ValBatches(), fmt.Sprintf(" (all %d val batches)", l.val.ValBatches())
		}
		v, err := l.val.Validate(n)
		if err != nil {
			return err
		}
		p.ValLoss, l.sum.ValLoss = v, v
		fmt.Fprintf(l.log, "step %d: train loss %.4f, val loss %.4f%s\n", step+1, p.Loss, v, what)
	}
	l.sum.ValLosses = append(l.sum.ValLosses, p.ValLoss)
	if l.mlog != nil {
		if err := l.mlog.Add(*p); err != nil {
			return err
		}
	}
	if c.Checkpoints != nil && (last || (c.SaveEvery > 0 && (step+1)%c.SaveEvery == 0)) {
		return l.save(step+1, p)
	}
	return nil
}

// save writes a checkpoint, if the model passes the objective's check,
// and redraws the plot.
func (l *loop) save(step int, p *Progress) error {
	if c, ok := l.obj.(Checker); ok {
		if err := c.CheckModel(); err != nil {
			return l.diverged(step-1, err.Error())
		}
	}
	if l.comm.Size() > 1 {
		if err := l.sameAsRoot("the trained weights", l.weightsDigest()); err != nil {
			return err
		}
	}
	opt := l.opt
	if l.zero != nil {
		var err error
		if opt, err = l.zero.full(l.opt, l.params); err != nil {
			return err
		}
	}
	var where string
	var err error
	if l.root {
		where, err = l.cfg.Checkpoints.Save(Snapshot{Step: step, Params: l.params, Opt: opt, Loss: p.Loss, ValLoss: p.ValLoss})
	}
	if err := l.agree("writing the checkpoint of step "+fmt.Sprint(step), err); err != nil {
		return err
	}
	l.sum.Checkpoint = where
	if l.mlog != nil {
		if err := l.mlog.Plot(filepath.Join(l.cfg.Dir, PlotName)); err != nil {
			fmt.Fprintf(l.log, "loss plot: %v\n", err)
		}
	}
	return nil
}

// DefaultMaxWeight is Config.MaxWeight's default.
const DefaultMaxWeight = 1e4

// badStep says what is wrong with a step's loss and gradient norm ("":
// nothing): not finite, or a zero gradient under a positive loss over
// count items (a saturated model, whose loss is stuck, at ln V for a
// language model).
func badStep(loss, norm float64, count int) string {
	switch {
	case math.IsNaN(loss) || math.IsInf(loss, 0) || math.IsNaN(norm) || math.IsInf(norm, 0):
		return fmt.Sprintf("the loss is %g and the gradient norm %g", loss, norm)
	case norm == 0 && loss > 0 && count > 0:
		return fmt.Sprintf("the loss is stuck at %g with a zero gradient (the model is saturated)", loss)
	}
	return ""
}

// badWeights says which trained value is not finite or beyond max in
// magnitude ("": none).
func badWeights(params []autograd.Param, max float64) string {
	if max < 0 {
		return ""
	}
	if max == 0 {
		max = DefaultMaxWeight
	}
	limit := float32(max)
	for _, p := range params {
		var mu sync.Mutex
		bad, found := float32(0), false
		kernels.ParallelFor(len(p.Data), 1<<16, func(lo, hi int) {
			for _, v := range p.Data[lo:hi] {
				if !(v <= limit && v >= -limit) { // NaN fails both
					mu.Lock()
					bad, found = v, true
					mu.Unlock()
					return
				}
			}
		})
		if found {
			return fmt.Sprintf("a value of %s is %g (beyond ±%g)", p.Name, bad, max)
		}
	}
	return ""
}

// diverged is the error of a step whose check found msg (nil when msg is
// ""), naming the last good checkpoint; a run that diverges before its
// first checkpoint first writes its starting point as one, when its
// Checkpointer can.
func (l *loop) diverged(step int, msg string) error {
	if msg == "" {
		return nil
	}
	last := l.sum.Checkpoint
	if is, ok := l.cfg.Checkpoints.(InitialSaver); ok && last == "" && l.root {
		where, err := is.SaveInitial()
		if err != nil {
			fmt.Fprintf(l.log, "saving the starting point: %v\n", err)
		}
		last = where
	}
	keep := "no checkpoint was written yet"
	if last != "" {
		keep = "the last good checkpoint is " + last
	}
	return fmt.Errorf("step %d: %s: training diverged (try a lower learning rate or stronger clipping); stopped, %s", step+1, msg, keep)
}

// Accumulation in a fixed order. A step's gradient is the sum of its
// micro-batches' finished gradients, added in micro-batch order:
// ((g₀ + g₁) + g₂) + …, each gᵢ computed from zero. Letting the backward
// pass add the next micro-batch's products into the running sum inside
// its matrix products would round differently (g₀ + Σ products), and
// then no data-parallel run could match it: two ranks of one micro-batch
// each sum g₀ + g₁, so they are bit for bit one process accumulating two.
// It costs one more float32 per trained value (only with Accum > 1) and
// three passes over the gradients per micro-batch after the first.

// stashGrads moves the gradients into l.stash and clears them.
func (l *loop) stashGrads() {
	if l.stash == nil {
		l.stash = make([]float32, Count(Params(l.params)))
	}
	off := 0
	for _, p := range l.params {
		off += copy(l.stash[off:], p.Grad)
		clear(p.Grad)
	}
}

// addStash adds l.stash back into the gradients (but those that the
// overlapped all-reduce completed already).
func (l *loop) addStash() {
	off := 0
	for i, p := range l.params {
		if l.ov != nil && l.ov.stashed[i] {
			off += len(p.Grad)
			continue
		}
		g, s := p.Grad, l.stash[off:off+len(p.Grad)]
		kernels.ParallelFor(len(g), 1<<15, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				g[j] = s[j] + g[j]
			}
		})
		off += len(g)
	}
}
