package train_test

import (
	"fmt"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/train"
)

// line is an objective: fit w in y = w·x to the points (x, 3x), the loss
// the mean squared error, two micro-batches a step; it reports the share
// of points it underestimates as an extra metric. Real objectives build
// their loss with the model's ForwardTape and autograd's loss ops; this one
// records its backward step by hand.
type line struct {
	w, g [1]float32
	xs   []float32
}

func (l *line) Loss(tape *autograd.Tape, step, k int) (train.Micro, error) {
	m := train.Micro{Extra: map[string]float64{"under": 0}}
	var half []float32
	for i := k; i < len(l.xs); i += 2 { // micro-batch k: every other point
		half = append(half, l.xs[i])
	}
	for _, x := range half {
		d := float64(l.w[0]*x - 3*x)
		m.Sum += d * d
		if d < 0 {
			m.Extra["under"]++
		}
	}
	m.Count, m.Tokens = len(half), len(half)
	n := float32(len(l.xs)) // the step's mean: all points of both micro-batches
	tape.Record(func() {
		for _, x := range half {
			l.g[0] += 2 * (l.w[0]*x - 3*x) * x / n
		}
	})
	return m, nil
}

// Params is the trainable set: the one weight.
func (l *line) Params() []autograd.Param {
	return []autograd.Param{{Name: "w", Data: l.w[:], Grad: l.g[:]}}
}

// An objective and a trainable set on the shared loop: AdamW, a cosine
// schedule after a warm-up, accumulation and clipping come from Fit.
func ExampleFit() {
	l := &line{xs: []float32{-1, -0.5, 0.5, 1}}
	sum, err := train.Fit(l, l, train.Config{
		Steps: 200, Accum: 2, Optim: train.Optim{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8}, GradClip: 10,
		Schedule: train.Schedule{Kind: "cosine", LR: 0.1, MinLR: 0.001, Warmup: 10, Steps: 200},
		OnStep: func(p train.Progress) {
			if p.Step == 1 {
				fmt.Printf("step 1: loss %.3f, under %.2f\n", p.Loss, p.Extra["under"])
			}
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("w = %.2f after %d steps\n", l.w[0], len(sum.Losses))
	// Output:
	// step 1: loss 5.625, under 0.50
	// w = 3.00 after 200 steps
}
