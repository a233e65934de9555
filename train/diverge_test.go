package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/tensor"
)

// maxAbs is the largest magnitude of the F32 tensors of a GGUF file (+Inf
// for a NaN).
func maxAbs(t *testing.T, path string) float64 {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	worst := 0.0
	for _, ti := range f.Tensors {
		if ti.DType != tensor.F32 {
			continue
		}
		for _, v := range tensor.F32s(ti.Data) {
			a := math.Abs(float64(v))
			if math.IsNaN(a) {
				a = math.Inf(1)
			}
			worst = max(worst, a)
		}
	}
	return worst
}

// Issue 21, item 2: a learning rate of 1e4 without clipping blows the
// weights up (to 1e15 in a few steps) while the loss sits at ln V with a
// zero gradient. The run stops at once, and every checkpoint it leaves,
// the one its error names included, holds sane weights.
func TestDivergenceAbsurdWeights(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	r := tiny(dir, out)
	r.LR, r.Warmup, r.GradClip, r.SaveEvery, r.Schedule, r.Steps = 1e4, 0, 0, 1, "constant", 8
	var steps int
	_, err := Pretrain(r, Options{OnStep: func(Progress) { steps++ }})
	if err == nil || !strings.Contains(err.Error(), "diverged") {
		t.Fatalf("error %v after %d steps", err, steps)
	}
	if steps > 1 {
		t.Errorf("%d steps ran before the stop", steps)
	}
	latest, lerr := latestCheckpoint(out)
	if lerr != nil || latest == "" || !strings.Contains(err.Error(), latest) {
		t.Fatalf("latest %q (%v), error %v", latest, lerr, err)
	}
	dirs, _ := filepath.Glob(filepath.Join(out, "step-*", ModelName))
	for _, p := range append(dirs, filepath.Join(out, ModelName)) {
		if w := maxAbs(t, p); !(w < 100) {
			t.Errorf("%s holds a weight of magnitude %g", p, w)
		}
	}
	// the kept checkpoint resumes (from where it was: the start)
	r.LR, r.Resume, r.Steps = 3e-3, true, 2
	if _, err := Pretrain(r, Options{}); err != nil {
		t.Errorf("resuming from the kept checkpoint: %v", err)
	}
}

// badModel is a toy objective whose model goes bad (a NaN logit) once its
// weight passes 1: the loop keeps no checkpoint of it.
type badModel struct {
	quadratic
}

func (b *badModel) CheckModel() error {
	if b.w[0] > 0.25 {
		return FiniteLogits([][]float32{{0, float32(math.NaN())}}, 2)
	}
	return nil
}

// A checkpoint is kept only if the objective's check of the model passes:
// the run stops at the first checkpoint that fails, naming the last good
// one, which stays the newest.
func TestCheckpointOnlyGoodModels(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	b := &badModel{*newQuadratic()}
	c := quadConfig(dir)
	c.SaveEvery, c.Steps, c.Schedule = 1, 20, Schedule{Kind: "constant", LR: 0.1}
	_, err := Fit(b, b, c)
	if err == nil || !strings.Contains(err.Error(), "logit") || !strings.Contains(err.Error(), "last good checkpoint") {
		t.Fatalf("error %v", err)
	}
	step, where, _ := StateDir{Dir: dir}.Latest()
	if step == 0 || !strings.Contains(err.Error(), where) {
		t.Fatalf("latest step %d (%s), error %v", step, where, err)
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("step-%d", step+1))); err == nil {
		t.Errorf("a checkpoint of the bad model was kept")
	}
}

// A zero gradient under a positive loss is a stuck (saturated) run.
func TestStuckLossStops(t *testing.T) {
	q := newQuadratic()
	copy(q.w, q.t) // at the minimum: loss 0, gradient 0 is fine
	if _, err := Fit(q, q, Config{Steps: 2, Optim: DefaultOptim(), Schedule: Schedule{Kind: "constant", LR: 1e-3}}); err != nil {
		t.Fatalf("a run at its minimum: %v", err)
	}
	s := &stuck{}
	_, err := Fit(s, s, Config{Steps: 2, Optim: DefaultOptim(), Schedule: Schedule{Kind: "constant", LR: 1e-3}})
	if err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("a stuck run: %v", err)
	}
}

// stuck reports a loss of ln 512 with a zero gradient.
type stuck struct{ w, g [1]float32 }

func (s *stuck) Loss(*autograd.Tape, int, int) (Micro, error) {
	return Micro{Sum: math.Log(512), Count: 1, Tokens: 1}, nil
}

func (s *stuck) Params() []autograd.Param {
	return []autograd.Param{{Name: "w", Data: s.w[:], Grad: s.g[:]}}
}
