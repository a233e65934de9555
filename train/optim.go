package train

import (
	"fmt"
	"math"
	"slices"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
)

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter): for each
// parameter p with gradient g, at step t (from 1),
//
//	m = β1·m + (1−β1)·g          v = β2·v + (1−β2)·g²
//	p −= lr·( m/(1−β1ᵗ) / (sqrt(v/(1−β2ᵗ)) + ε)  +  λ·p )
//
// with λ = WeightDecay for parameters marked Decay and 0 for the others
// (norm gains and biases). m and v are float32, as PyTorch keeps them.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	Step                           int64       // updates made so far
	M, V                           [][]float32 // moments, one per parameter
}

// Optim are AdamW's hyperparameters: the same options, under the same flag
// and recipe names (beta1, beta2, eps, weight_decay, decay_norms), in every
// way of training.
type Optim struct {
	Beta1, Beta2, Eps float64
	WeightDecay       float64 // decoupled, for the parameters marked Decay
	DecayNorms        bool    // decay every parameter, norm gains included (excluded by default)
}

// DefaultOptim are the defaults of pretraining (llama2.c's, and the LLaMA
// papers': β2 0.95, decay 0.1). Fine-tuning keeps Hugging Face Trainer's
// (β2 0.999, no decay): see sft.
func DefaultOptim() Optim {
	return Optim{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
}

// Check reports unusable hyperparameters.
func (o Optim) Check() error {
	switch {
	case !(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1):
		return fmt.Errorf("beta1 %g and beta2 %g must be in [0, 1)", o.Beta1, o.Beta2)
	case !(o.Eps > 0):
		return fmt.Errorf("eps %g must be positive", o.Eps)
	case !(o.WeightDecay >= 0):
		return fmt.Errorf("weight decay %g must not be negative", o.WeightDecay)
	}
	return nil
}

// New returns an AdamW with zero moments for params; with DecayNorms it
// first marks every parameter for decay.
func (o Optim) New(params []autograd.Param) *AdamW {
	if o.DecayNorms {
		for i := range params {
			params[i].Decay = true
		}
	}
	return NewAdamW(params, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
}

// NewAdamW returns an optimizer with zero moments for params.
func NewAdamW(params []autograd.Param, beta1, beta2, eps, weightDecay float64) *AdamW {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay,
		M: make([][]float32, len(params)), V: make([][]float32, len(params))}
	for i, p := range params {
		o.M[i] = make([]float32, len(p.Data))
		o.V[i] = make([]float32, len(p.Data))
	}
	return o
}

// check verifies that the moments fit params.
func (o *AdamW) check(params []autograd.Param) error {
	if len(o.M) != len(params) || len(o.V) != len(params) {
		return fmt.Errorf("adamw: %d moment tensors for %d parameters", len(o.M), len(params))
	}
	for i, p := range params {
		if len(o.M[i]) != len(p.Data) || len(o.V[i]) != len(p.Data) {
			return fmt.Errorf("adamw: parameter %s has %d elements, its moments %d and %d", p.Name, len(p.Data), len(o.M[i]), len(o.V[i]))
		}
	}
	return nil
}

// Update applies one AdamW step with learning rate lr to params, whose
// gradients must be final (accumulated, clipped).
func (o *AdamW) Update(params []autograd.Param, lr float64) {
	o.Step++
	c := o.coefficients(lr)
	for i, p := range params {
		c.update(o.M[i], o.V[i], p.Data, p.Grad, c.decayOf(p))
	}
}

// adamStep are one update's coefficients.
type adamStep struct {
	b1, b2, eps, step, rc2 float32
	lr, wd                 float64
}

// coefficients are the coefficients of update o.Step with learning rate lr.
func (o *AdamW) coefficients(lr float64) adamStep {
	t := float64(o.Step)
	c1 := 1 - math.Pow(o.Beta1, t)
	c2 := 1 - math.Pow(o.Beta2, t)
	// lr/c1 folded into the step size, sqrt(c2) into the denominator
	return adamStep{b1: float32(o.Beta1), b2: float32(o.Beta2), eps: float32(o.Eps), step: float32(lr / c1),
		rc2: float32(1 / math.Sqrt(c2)), lr: lr, wd: o.WeightDecay}
}

// decayOf is the decay factor of p's values.
func (c adamStep) decayOf(p autograd.Param) float32 {
	if p.Decay {
		return float32(1 - c.lr*c.wd)
	}
	return 1
}

// update applies the step to values x with gradients g and moments m, v
// (of equal lengths), element by element: any split of a tensor into
// ranges gives the same values.
func (c adamStep) update(m, v, x, g []float32, decay float32) {
	b1, b2, eps, step, rc2 := c.b1, c.b2, c.eps, c.step, c.rc2
	kernels.ParallelFor(len(x), 1<<14, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			gj := g[j]
			mj := b1*m[j] + (1-b1)*gj
			vj := b2*v[j] + (1-b2)*gj*gj
			m[j], v[j] = mj, vj
			x[j] = x[j]*decay - step*mj/(float32(math.Sqrt(float64(vj)))*rc2+eps)
		}
	})
}

// GradNorm is the global L2 norm of the gradients of params, summed in
// float64 in a fixed order (the same for any thread count).
func GradNorm(params []autograd.Param) float64 {
	const chunk = 1 << 16
	var total float64
	for _, p := range params {
		g := p.Grad
		n := (len(g) + chunk - 1) / chunk
		parts := make([]float64, n)
		kernels.ParallelFor(n, 1, func(lo, hi int) {
			for c := lo; c < hi; c++ {
				var s float64
				for _, v := range g[c*chunk : min(len(g), (c+1)*chunk)] {
					s += float64(v) * float64(v)
				}
				parts[c] = s
			}
		})
		for _, s := range parts {
			total += s
		}
	}
	return math.Sqrt(total)
}

// ScaleGrads multiplies every gradient by s.
func ScaleGrads(params []autograd.Param, s float32) {
	for _, p := range params {
		g := p.Grad
		kernels.ParallelFor(len(g), 1<<15, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				g[j] *= s
			}
		})
	}
}

// ZeroGrads clears every gradient.
func ZeroGrads(params []autograd.Param) {
	for _, p := range params {
		clear(p.Grad)
	}
}

// Schedules lists the schedule kinds.
var Schedules = []string{"constant", "cosine", "linear"}

// Schedule gives the learning rate of each step.
type Schedule struct {
	Kind   string  // "constant", "cosine" or "linear"
	LR     float64 // peak learning rate
	MinLR  float64 // floor of the cosine and of the linear decay
	Warmup int     // steps of linear warm-up from LR/Warmup to LR
	Steps  int     // total steps (the cosine reaches MinLR at the last)
}

// Check reports an unusable schedule.
func (s Schedule) Check() error {
	switch {
	case !slices.Contains(Schedules, s.Kind):
		return fmt.Errorf("schedule %q: want constant, cosine or linear", s.Kind)
	case !(s.LR > 0) || math.IsInf(s.LR, 0):
		return fmt.Errorf("learning rate %g must be positive", s.LR)
	case s.MinLR < 0 || s.MinLR > s.LR:
		return fmt.Errorf("minimum learning rate %g must be between 0 and the learning rate %g", s.MinLR, s.LR)
	case s.Kind != "constant" && s.Steps <= 0:
		return fmt.Errorf("a %s schedule decays over the run's steps: %d steps", s.Kind, s.Steps)
	case s.Warmup < 0:
		return fmt.Errorf("warm-up %d steps must not be negative", s.Warmup)
	}
	return nil
}

// At is the learning rate of step (0-based): step+1 warm-up fractions of LR
// during the warm-up, then LR (constant), MinLR + ½(LR−MinLR)(1+cos πp)
// (cosine) or LR − (LR−MinLR)·p (linear), with p going from 0 after the
// warm-up to 1 at the last step.
func (s Schedule) At(step int) float64 {
	if step < s.Warmup {
		return s.LR * float64(step+1) / float64(s.Warmup)
	}
	if s.Kind == "constant" {
		return s.LR
	}
	span := s.Steps - 1 - s.Warmup
	if span <= 0 {
		return s.LR
	}
	p := math.Min(1, float64(step-s.Warmup)/float64(span))
	if s.Kind == "linear" {
		return s.LR - (s.LR-s.MinLR)*p
	}
	return s.MinLR + 0.5*(s.LR-s.MinLR)*(1+math.Cos(math.Pi*p))
}
