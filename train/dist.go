package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/dist"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/tensor"
)

// Data parallelism in Fit. With Config.Comm of R ranks, a step has R·Accum
// micro-batches (the global batch is R × micro-batch × Accum): rank r runs
// micro-batches k = r·Accum … r·Accum+Accum−1 of the objective, which is
// built for R·Accum of them (GlobalAccum), so the data of micro-batch k
// and the loss's scale 1/(the step's count) are the one-process run's
// with accumulation R·Accum. The gradients are then summed over the ranks
// (in buckets) and so are the micro-batches' sums, counts and extras:
// every rank holds the same gradient and takes the same optimizer step.
// With one micro-batch a rank and two ranks the sum is the one-process
// accumulation's g₀+g₁ exactly, so such a run is bit-identical to one
// process with accumulation 2.
//
// Rank 0 alone touches Config.Dir: it takes the lock, writes the recipe,
// metrics, the plot and checkpoints, and restores the checkpoint a run
// resumes from; its weights, optimizer state and start step are then
// broadcast, so every rank starts where rank 0 does (a fresh run from rank
// 0's initialisation). A digest of the recipe, Config.Fingerprint, the
// trainable set's names and sizes and the loop's settings is compared at
// start, and the weights' digest at every checkpoint. When one rank fails
// at a point where the others would go on (rank 0's checkpoint, its
// directory), all of them stop with the error.

// GlobalAccum is the number of micro-batches of a step over all ranks of
// comm (nil: one), the accumulation an objective is built for.
func GlobalAccum(comm dist.Comm, accum int) int {
	if comm == nil {
		return max(1, accum)
	}
	return comm.Size() * max(1, accum)
}

// bucketValues is the size of a gradient bucket: gradients smaller than
// it are packed together into one all-reduce (a variable for the tests).
var bucketValues = 1 << 20

// reduceGrads sums the gradients over the ranks: a tensor at least a bucket
// long in place, smaller ones packed into buckets.
func (l *loop) reduceGrads() error {
	var bucket []float32
	var pending []autograd.Param
	flush := func() error {
		if len(bucket) == 0 {
			return nil
		}
		if err := l.comm.AllReduceF32(bucket); err != nil {
			return fmt.Errorf("all-reduce of the gradients: %w", err)
		}
		off := 0
		for _, p := range pending {
			off += copy(p.Grad, bucket[off:off+len(p.Grad)])
		}
		bucket, pending = bucket[:0], pending[:0]
		return nil
	}
	for _, p := range l.params {
		if len(p.Grad) >= bucketValues {
			if err := l.comm.AllReduceF32(p.Grad); err != nil {
				return fmt.Errorf("all-reduce of the gradient of %s: %w", p.Name, err)
			}
			continue
		}
		if len(bucket)+len(p.Grad) > bucketValues {
			if err := flush(); err != nil {
				return err
			}
		}
		if bucket == nil {
			bucket = l.bucket[:0]
		}
		bucket = append(bucket, p.Grad...)
		pending = append(pending, p)
	}
	err := flush()
	l.bucket = bucket[:0]
	return err
}

// reduceMicro sums the step's micro-batch reports over the ranks. A
// metric that some ranks' micro-batches did not report counts as 0 there
// (extras are sums over items), as in one process's accumulation.
func (l *loop) reduceMicro(m *Micro) error {
	keys := sortedKeys(m.Extra)
	tag := keysTag(keys)
	head := []float64{m.Sum, float64(m.Count), float64(m.Tokens), float64(m.skips), tag, tag * tag}
	if err := l.comm.AllReduceF64(head); err != nil {
		return fmt.Errorf("all-reduce of the loss: %w", err)
	}
	m.Sum, m.Count, m.Tokens, m.skips = head[0], int(head[1]), int(head[2]), int(head[3])
	n := float64(l.comm.Size())
	if head[4]*head[4] != n*head[5] { // Σt² = (Σt)²/n only if every t is the same
		var err error
		if keys, err = l.unionKeys(keys); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	buf := make([]float64, len(keys))
	for i, k := range keys {
		buf[i] = m.Extra[k]
	}
	if err := l.comm.AllReduceF64(buf); err != nil {
		return fmt.Errorf("all-reduce of the metrics: %w", err)
	}
	if m.Extra == nil {
		m.Extra = map[string]float64{}
	}
	for i, k := range keys {
		m.Extra[k] = buf[i]
	}
	return nil
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// keysTag is a digest of a key list exact in float64 (24 bits).
func keysTag(keys []string) float64 {
	h := sha256.Sum256([]byte(strings.Join(keys, "\x00")))
	return float64(binary.LittleEndian.Uint32(h[:]) >> 8)
}

// unionKeys is the sorted union of every rank's keys: each rank in turn
// broadcasts its list.
func (l *loop) unionKeys(mine []string) ([]string, error) {
	all := map[string]bool{}
	for q := range l.comm.Size() {
		var b []byte
		if q == l.comm.Rank() {
			b = []byte(strings.Join(mine, "\x00"))
		}
		size := binary.LittleEndian.AppendUint64(nil, uint64(len(b)))
		if err := l.comm.Bcast(size, q); err != nil {
			return nil, fmt.Errorf("broadcast of the metric names: %w", err)
		}
		if q != l.comm.Rank() {
			b = make([]byte, binary.LittleEndian.Uint64(size))
		}
		if len(b) > 0 {
			if err := l.comm.Bcast(b, q); err != nil {
				return nil, fmt.Errorf("broadcast of the metric names: %w", err)
			}
			for _, k := range strings.Split(string(b), "\x00") {
				all[k] = true
			}
		}
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// agree is err on this rank or, when another rank failed, an error saying
// which: every rank calls it at the same point and all stop together.
func (l *loop) agree(what string, err error) error { return Agree(l.comm, what, err) }

// Agree is err on this rank or, when another rank of comm (nil: one
// process) failed, an error saying so: every rank calls it at the same
// point, with its own outcome of what, and either all go on or all stop.
func Agree(comm dist.Comm, what string, err error) error {
	if comm == nil || comm.Size() == 1 {
		return err
	}
	flag := []float64{0, 0}
	if err != nil {
		flag = []float64{1, float64(comm.Rank())}
	}
	if rerr := comm.AllReduceF64(flag); rerr != nil {
		if err != nil {
			return err
		}
		return fmt.Errorf("%s: %w", what, rerr)
	}
	if err != nil {
		return err
	}
	if flag[0] > 0 {
		return fmt.Errorf("%s failed on another rank (rank %g when only one did; see its message): stopped", what, flag[1])
	}
	return nil
}

// fingerprint digests what every rank must agree on before training.
func (l *loop) fingerprint() []byte {
	h := sha256.New()
	c := l.cfg
	fmt.Fprintf(h, "recipe %q\nfingerprint %q\nsteps %d accum %d optim %+v schedule %+v clip %g eval %d %d save %d resume %v zero %v overlap %v\n",
		c.Recipe, c.Fingerprint, c.Steps, c.Accum, c.Optim, c.Schedule, c.GradClip, c.EvalEvery, c.EvalBatches, c.SaveEvery, c.Resume, c.ZeRO, c.Overlap)
	for _, p := range l.params {
		fmt.Fprintf(h, "%s %d %v\n", p.Name, len(p.Data), p.Decay)
	}
	return h.Sum(nil)
}

// weightsDigest digests the trained values.
func (l *loop) weightsDigest() []byte {
	h := sha256.New()
	for _, p := range l.params {
		h.Write(tensor.BytesOfF32(p.Data))
	}
	return h.Sum(nil)
}

// sameAsRoot is an error on every rank when a rank's digest differs from
// rank 0's.
func (l *loop) sameAsRoot(what string, digest []byte) error {
	root := slices.Clone(digest)
	if err := l.comm.Bcast(root, 0); err != nil {
		return fmt.Errorf("broadcast of %s: %w", what, err)
	}
	var err error
	if !slices.Equal(root, digest) {
		err = fmt.Errorf("rank %d of %d: %s differs from rank 0's", l.comm.Rank(), l.comm.Size(), what)
	}
	return l.agree("the comparison of "+what, err)
}

// share gives every rank rank 0's start step, trained values and optimizer
// state.
func (l *loop) share() error {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, uint64(l.sum.Start))
	binary.LittleEndian.PutUint64(b[8:], uint64(l.opt.Step))
	if err := l.comm.Bcast(b, 0); err != nil {
		return fmt.Errorf("broadcast of the start: %w", err)
	}
	l.sum.Start, l.opt.Step = int(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
	for i, p := range l.params {
		vs := [][]float32{p.Data}
		if l.opt.Step > 0 { // a fresh optimizer's moments are zero everywhere
			vs = append(vs, l.opt.M[i], l.opt.V[i])
		}
		for _, v := range vs {
			if err := l.comm.BcastF32(v, 0); err != nil {
				return fmt.Errorf("broadcast of %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// startRanks gives every rank rank 0's state and, with ZeRO, shards the
// optimizer (nothing on one process).
func (l *loop) startRanks() error {
	c := l.cfg
	if l.comm.Size() == 1 {
		return nil
	}
	if err := l.share(); err != nil {
		return err
	}
	fmt.Fprintf(l.log, "data parallel: %d ranks × %d micro-batches a step (global accumulation %d); weights and optimizer state from rank 0\n",
		l.comm.Size(), c.Accum, GlobalAccum(l.comm, c.Accum))
	if c.Overlap && c.ZeRO {
		fmt.Fprintf(l.log, "overlap: off with ZeRO-1 (its reduce-scatter runs after the backward pass)\n")
	} else if c.Overlap {
		l.ov = newOverlap(l.comm, l.params)
	}
	if c.ZeRO {
		l.zero = newZero(l.comm, l.params)
		l.zero.take(l.opt)
		fmt.Fprintf(l.log, "ZeRO-1: AdamW's moments sharded, %.1f MiB on rank 0 (%.1f MiB whole)\n",
			float64(l.zero.StateBytes())/(1<<20), float64(8*Count(Params(l.params)))/(1<<20))
	}
	return nil
}

// timeComm adds the time f takes to the step's communication time.
func (l *loop) timeComm(f func() error) error {
	t := time.Now()
	err := f()
	l.commTime += time.Since(t)
	return err
}

// ParallelName is the file in Config.Dir that records a run's global
// accumulation (ranks × micro-batches per rank), so that a resumed run,
// on any number of ranks, keeps the data position and the batch.
const ParallelName = "parallel.json"

// parallelRecord is ParallelName's content.
type parallelRecord struct {
	GlobalAccum int `json:"global_accum"`
	Ranks       int `json:"ranks"`
	Accum       int `json:"accum"`
}

// checkParallel compares the resumed run's record with this run's layout.
func (l *loop) checkParallel() error {
	path := filepath.Join(l.cfg.Dir, ParallelName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a run from before the record: one process
	}
	if err != nil {
		return err
	}
	var rec parallelRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if g := GlobalAccum(l.comm, l.cfg.Accum); rec.GlobalAccum != g {
		return fmt.Errorf("%s: the run was trained with %d micro-batches a step (%d ranks × accum %d), this one would take %d (%d ranks × accum %d): resume with ranks × accum = %d to keep the batch and the data position",
			path, rec.GlobalAccum, rec.Ranks, rec.Accum, g, l.comm.Size(), l.cfg.Accum, rec.GlobalAccum)
	}
	return nil
}

// writeParallel records this run's layout.
func (l *loop) writeParallel() error {
	rec := parallelRecord{GlobalAccum: GlobalAccum(l.comm, l.cfg.Accum), Ranks: l.comm.Size(), Accum: l.cfg.Accum}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return fileio.WriteAtomic(filepath.Join(l.cfg.Dir, ParallelName), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}
