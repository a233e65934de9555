package train

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/autograd"
)

// quadratic is a toy objective: the mean over items i of (w_i − t_i)²,
// micro-batch k covering the items k, k+Accum, …; Extra "above" counts
// the items with w > t.
type quadratic struct {
	w, t  []float32
	grad  []float32
	accum int
}

func (q *quadratic) Loss(tape *autograd.Tape, step, k int) (Micro, error) {
	var m Micro
	m.Extra = map[string]float64{"above": 0}
	var idx []int
	for i := k; i < len(q.w); i += q.accum {
		d := float64(q.w[i] - q.t[i])
		m.Sum += d * d
		m.Count++
		if d > 0 {
			m.Extra["above"]++
		}
		idx = append(idx, i)
	}
	n := float32(len(q.w))
	tape.Record(func() {
		for _, i := range idx {
			q.grad[i] += 2 * (q.w[i] - q.t[i]) / n
		}
	})
	m.Tokens = m.Count
	return m, nil
}

func (q *quadratic) Params() []autograd.Param {
	return []autograd.Param{{Name: "w", Data: q.w, Grad: q.grad, Decay: true}}
}

func newQuadratic() *quadratic {
	q := &quadratic{w: make([]float32, 6), t: []float32{1, -2, 3, 0.5, -1, 2}, grad: make([]float32, 6), accum: 2}
	return q
}

func quadConfig(dir string) Config {
	return Config{Steps: 8, Accum: 2, Optim: Optim{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8}, GradClip: 10,
		Schedule: Schedule{Kind: "linear", LR: 0.1, MinLR: 0.01, Warmup: 2, Steps: 8}, SaveEvery: 3,
		Checkpoints: StateDir{Dir: dir}, Dir: dir}
}

// Fit with accumulation lowers the toy loss, logs the objective's extra
// metric per item in metrics.jsonl, and a run stopped after 3 steps and
// resumed from its StateDir checkpoint ends with the same weights and
// losses, bit for bit.
func TestFitToyObjective(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	q := newQuadratic()
	sum, err := Fit(q, q, quadConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Losses) != 8 || !(sum.Losses[7] < sum.Losses[0]) {
		t.Fatalf("losses %v", sum.Losses)
	}
	ms := readMetrics(t, filepath.Join(dir, MetricsName))
	if len(ms) != 8 || ms[0].Extra["above"] != 2.0/6 { // w starts at 0: two of the six targets are below it
		t.Fatalf("metrics %+v", ms)
	}
	for _, m := range ms {
		if a := m.Extra["above"]; a < 0 || a > 1 {
			t.Errorf("step %d: above %g is not a share of the items", m.Step, a)
		}
	}
	// the straight run's weights, then a run stopped at step 3 and resumed
	b := filepath.Join(t.TempDir(), "b")
	q2 := newQuadratic()
	c := quadConfig(b)
	c.Steps = 3
	if _, err := Fit(q2, q2, c); err != nil {
		t.Fatal(err)
	}
	q3 := newQuadratic()
	if _, err := Fit(q3, q3, quadConfig(b)); err == nil || !strings.Contains(err.Error(), "already holds a run") {
		t.Fatalf("a second start over a run: %v", err)
	}
	c = quadConfig(b)
	c.Resume = true
	s3, err := Fit(q3, q3, c)
	if err != nil {
		t.Fatal(err)
	}
	if s3.Start != 3 {
		t.Fatalf("resumed at %d", s3.Start)
	}
	for i := range q.w {
		if q.w[i] != q3.w[i] {
			t.Errorf("w[%d] %v after resuming, %v straight", i, q3.w[i], q.w[i])
		}
	}
	for i, l := range s3.Losses {
		if l != sum.Losses[3+i] {
			t.Errorf("step %d: loss %v resumed, %v straight", 4+i, l, sum.Losses[3+i])
		}
	}
}

// The linear schedule decays from LR after the warm-up to MinLR at the
// last step.
func TestLinearSchedule(t *testing.T) {
	s := Schedule{Kind: "linear", LR: 1, MinLR: 0.1, Warmup: 10, Steps: 110}
	for _, c := range []struct {
		step int
		want float64
	}{{0, 0.1}, {9, 1}, {10, 1}, {59, 1 - 0.9*49.0/99}, {109, 0.1}, {500, 0.1}} {
		if got := s.At(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("step %d: %g, want %g", c.step, got, c.want)
		}
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// Issue 21, item 23: the loss plot draws the validation loss measured
// before the first step (at step 0) and labels each curve with its last
// value.
func TestPlotStartValidation(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	r := tiny(dir, out)
	r.Steps, r.EvalEvery = 4, 2
	res, err := Pretrain(r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenMetrics(filepath.Join(out, MetricsName), r.Steps)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.StartVal(0, res.StartValLoss)
	tr, va, trLabel, vaLabel := l.curves()
	if len(tr) != 4 || len(va) != 3 || va[0].X != 0 || va[0].Y != res.StartValLoss {
		t.Fatalf("train %v, val %v", tr, va)
	}
	if !strings.Contains(trLabel, fmt.Sprintf("%.4f", res.TrainLoss)) || !strings.Contains(vaLabel, fmt.Sprintf("%.4f", res.ValLoss)) {
		t.Errorf("labels %q, %q: want the last values %.4f, %.4f", trLabel, vaLabel, res.TrainLoss, res.ValLoss)
	}
}
