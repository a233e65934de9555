package train

import (
	"testing"

	"github.com/herd-llm/herd/autograd"
)

// skipper learns w → 0 from the loss w², except at the steps it skips.
type skipper struct {
	w, g [1]float32
	skip map[int]bool
}

func (s *skipper) Loss(_ *autograd.Tape, step, _ int) (Micro, error) {
	if s.skip[step] {
		return Micro{Skip: true}, nil
	}
	s.g[0] += 2 * s.w[0]
	return Micro{Sum: float64(s.w[0] * s.w[0]), Count: 1, Tokens: 1}, nil
}

func (s *skipper) Params() []autograd.Param {
	return []autograd.Param{{Name: "w", Data: s.w[:], Grad: s.g[:], Decay: true}}
}

// A step whose micro-batches all skip makes no update: the weights, the
// optimizer's moments and its step stay as they were (weight decay and
// momentum would move them otherwise), and the next step goes on.
func TestSkippedStepMakesNoUpdate(t *testing.T) {
	s := &skipper{w: [1]float32{1}, skip: map[int]bool{1: true, 2: true}}
	var before [3]float32
	cfg := Config{Steps: 4, Optim: Optim{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}, Schedule: Schedule{Kind: "constant", LR: 0.1}}
	cfg.OnStep = func(p Progress) {
		if p.Step == 1 {
			before[0] = s.w[0]
		}
		if p.Step == 3 {
			before[1] = s.w[0]
		}
	}
	sum, err := Fit(s, s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if before[1] != before[0] {
		t.Errorf("skipped steps moved w from %v to %v", before[0], before[1])
	}
	if s.w[0] == before[1] || sum.Losses[1] != 0 {
		t.Errorf("the step after the skips did not update (w %v) or a skipped step reported loss %v", s.w[0], sum.Losses[1])
	}
}
