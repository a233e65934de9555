package align

import (
	"fmt"
	"io"
	"math"

	"github.com/herd-llm/herd/autograd"
)

// Metrics are sums over a micro-batch's Count items (pairs, or KTO's
// samples) under the names TRL users read, and the loss's sum.
type Metrics struct {
	Sum    float64
	Count  int
	Tokens int
	Extra  map[string]float64
}

// Mean is the metric's mean over the items.
func (m Metrics) Mean(name string) float64 { return m.Extra[name] / float64(max(1, m.Count)) }

// add accumulates o into m.
func (m *Metrics) add(o Metrics) {
	m.Sum += o.Sum
	m.Count += o.Count
	m.Tokens += o.Tokens
	if m.Extra == nil {
		m.Extra = map[string]float64{}
	}
	for k, v := range o.Extra {
		m.Extra[k] += v
	}
}

// The metric names, as TRL's DPOTrainer logs them.
const (
	RewardsChosen   = "rewards/chosen"
	RewardsRejected = "rewards/rejected"
	RewardsAccuracy = "rewards/accuracies"
	RewardsMargin   = "rewards/margins"
	LogpsChosen     = "logps/chosen"
	LogpsRejected   = "logps/rejected"
	// KTO's samples are unpaired: the mean implicit reward and
	// log-probability over all of them, rewards/accuracies the share whose
	// reward has the sign the label wants, and the reference point z₀.
	RewardsMean = "rewards/mean"
	LogpsMean   = "logps/mean"
	KL          = "kl"
)

// DPO is the preference objective of Params.Loss on a policy: each
// micro-batch is Batch pairs (for KTO, Batch unpaired samples; paired
// samples are split into a desirable and an undesirable one), drawn in a
// seeded order reproducible from the step number.
type DPO struct {
	Policy       *Policy
	Params       Params
	Train, Val   []Sample
	Batch, Accum int
	Seed         uint64
	// RefTrain and RefVal, when set, are the reference log-probabilities
	// of each sample's chosen and rejected response computed once
	// (Precompute); the reference model is then not run during training.
	RefTrain, RefVal [][2]float64
	// Log, when set, receives the validation metrics of each Validate.
	Log io.Writer

	ord order
	// fixZ holds KTO's reference point at the value the last taped step
	// computed (the gradient treats it as a constant; a central-difference
	// check must too)
	fixZ  bool
	lastZ float64
}

// Init checks the objective and prepares its data.
func (d *DPO) Init() error {
	if err := d.Params.Check(); err != nil {
		return err
	}
	if d.Params.Loss == KTO {
		d.Train, d.Val = unpairAll(d.Train), unpairAll(d.Val)
	} else {
		for _, ss := range [][]Sample{d.Train, d.Val} {
			for i := range ss {
				if !ss[i].Paired {
					return fmt.Errorf("%s: an unpaired (KTO) sample; the %s loss needs pairs", ss[i].Where, d.Params.Loss)
				}
			}
		}
	}
	if len(d.Train) == 0 {
		return fmt.Errorf("dpo: no training samples")
	}
	d.Batch, d.Accum = max(1, d.Batch), max(1, d.Accum)
	d.ord = order{n: len(d.Train), seed: d.Seed}
	return nil
}

func unpairAll(ss []Sample) []Sample {
	var out []Sample
	for i := range ss {
		out = append(out, ss[i].Unpair()...)
	}
	return out
}

// micro returns the samples of micro-batch k of step, and their indices.
func (d *DPO) micro(step, k int) ([]Sample, []int) {
	ss := make([]Sample, d.Batch)
	idx := make([]int, d.Batch)
	at := (step*d.Accum + k) * d.Batch
	for i := range ss {
		idx[i] = d.ord.at(at + i)
		ss[i] = d.Train[idx[i]]
	}
	return ss, idx
}

// Step is one micro-batch: the forward pass on tape with the gradient of
// the step's mean loss seeded; the caller runs tape.Backward().
func (d *DPO) Step(tape *autograd.Tape, step, k int) (Metrics, error) {
	ss, idx := d.micro(step, k)
	var ref [][2]float64
	if d.RefTrain != nil {
		for _, i := range idx {
			ref = append(ref, d.RefTrain[i])
		}
	}
	d.Policy.train(true, step, k)
	return d.run(tape, ss, ref, 1/float64(d.Batch*d.Accum))
}

// run computes the loss of ss (on tape when not nil, the gradient scaled
// by scale) with the reference log-probabilities ref or from the policy's
// reference.
func (d *DPO) run(tape *autograd.Tape, ss []Sample, ref [][2]float64, scale float64) (Metrics, error) {
	if d.Params.Loss == KTO {
		return d.kto(tape, ss, ref, scale)
	}
	b := pairBatch(ss)
	n := len(ss)
	var rl []float64
	if ref != nil {
		rl = make([]float64, 2*n)
		for i, r := range ref {
			rl[i], rl[n+i] = r[0], r[1]
		}
	} else if !RefFree(d.Params.Loss) {
		var err error
		if rl, err = d.Policy.refLogProbs(b); err != nil {
			return Metrics{}, err
		}
	}
	dlogp := make([]float64, 2*n)
	var lp []float64
	var err error
	if tape != nil {
		lp, _, err = d.Policy.forward(tape, b, dlogp)
	} else {
		lp, err = d.Policy.policyLogProbs(b)
	}
	if err != nil {
		return Metrics{}, err
	}
	m := Metrics{Count: n, Tokens: b.tokens, Extra: map[string]float64{}}
	for i := range ss {
		x := PairLogP{Chosen: lp[i], Rejected: lp[n+i], NChosen: ss[i].Learned(ss[i].Chosen), NRejected: ss[i].Learned(ss[i].Rejected)}
		if rl != nil {
			x.RefChosen, x.RefRejected = rl[i], rl[n+i]
		}
		r := d.Params.Pair(x)
		dlogp[i], dlogp[n+i] = r.DChosen*scale, r.DRejected*scale
		m.Sum += r.Loss
		m.Extra[RewardsChosen] += r.RewardChosen
		m.Extra[RewardsRejected] += r.RewardRejected
		m.Extra[RewardsMargin] += r.RewardChosen - r.RewardRejected
		if r.RewardChosen > r.RewardRejected {
			m.Extra[RewardsAccuracy]++
		}
		m.Extra[LogpsChosen] += x.Chosen
		m.Extra[LogpsRejected] += x.Rejected
	}
	return m, nil
}

// kto is KTO's loss on unpaired samples: the reference point from the
// batch's mismatched pairs (no tape), then the samples' losses.
func (d *DPO) kto(tape *autograd.Tape, ss []Sample, ref [][2]float64, scale float64) (Metrics, error) {
	mb := mismatchedBatch(ss)
	kp, err := d.Policy.policyLogProbs(mb)
	if err != nil {
		return Metrics{}, err
	}
	kr, err := d.Policy.refLogProbs(mb)
	if err != nil {
		return Metrics{}, err
	}
	z := KTORefPoint(kp, kr)
	if d.fixZ && tape == nil {
		z = d.lastZ
	}
	d.lastZ = z
	b := unpairedBatch(ss)
	var rl []float64
	if ref != nil {
		for _, r := range ref {
			rl = append(rl, r[0])
		}
	} else if rl, err = d.Policy.refLogProbs(b); err != nil {
		return Metrics{}, err
	}
	dlogp := make([]float64, len(ss))
	var lp []float64
	if tape != nil {
		lp, _, err = d.Policy.forward(tape, b, dlogp)
	} else {
		lp, err = d.Policy.policyLogProbs(b)
	}
	if err != nil {
		return Metrics{}, err
	}
	m := Metrics{Count: len(ss), Tokens: b.tokens + mb.tokens, Extra: map[string]float64{KL: z * float64(len(ss))}}
	for i := range ss {
		r := d.Params.KTO(Unpaired{LogP: lp[i], RefLogP: rl[i], Desirable: ss[i].Desirable}, z)
		dlogp[i] = r.D * scale
		m.Sum += r.Loss
		m.Extra[RewardsMean] += r.Reward
		m.Extra[LogpsMean] += lp[i]
		// the implicit reward on the side the label wants
		if (r.Reward > 0) == ss[i].Desirable && r.Reward != 0 {
			m.Extra[RewardsAccuracy]++
		}
	}
	return m, nil
}

// Evaluate measures the objective on samples without a tape (dropout off),
// in batches of Batch: the summed metrics (means by Metrics.Mean). ref,
// when not nil, are the samples' precomputed reference log-probabilities.
func (d *DPO) Evaluate(samples []Sample, ref [][2]float64, maxBatches int) (Metrics, error) {
	var tot Metrics
	for lo, nb := 0, 0; lo < len(samples) && (maxBatches <= 0 || nb < maxBatches); lo, nb = lo+d.Batch, nb+1 {
		hi := min(len(samples), lo+d.Batch)
		var r [][2]float64
		if ref != nil {
			r = ref[lo:hi]
		}
		m, err := d.run(nil, samples[lo:hi], r, 0)
		if err != nil {
			return Metrics{}, err
		}
		tot.add(m)
	}
	return tot, nil
}

// Validate is the mean loss over the first n validation batches (all when
// n ≤ 0).
func (d *DPO) Validate(n int) (float64, error) {
	m, err := d.Evaluate(d.Val, d.RefVal, n)
	if err != nil {
		return math.NaN(), err
	}
	logVal(d.Log, m, RewardsAccuracy, RewardsMargin, RewardsChosen, RewardsRejected)
	return m.Sum / float64(max(1, m.Count)), nil
}

// ValBatches is the number of validation batches.
func (d *DPO) ValBatches() int { return (len(d.Val) + d.Batch - 1) / max(1, d.Batch) }

// Precompute computes the reference log-probabilities of samples once
// (TRL's precompute_ref_log_probs), Batch at a time: chosen's and
// rejected's (for unpaired samples only the first is meaningful).
func (d *DPO) Precompute(samples []Sample) ([][2]float64, error) {
	out := make([][2]float64, len(samples))
	for lo := 0; lo < len(samples); lo += d.Batch {
		hi := min(len(samples), lo+d.Batch)
		ss := samples[lo:hi]
		var b *batch
		if d.Params.Loss == KTO {
			b = unpairedBatch(ss)
		} else {
			b = pairBatch(ss)
		}
		lp, err := d.Policy.refLogProbs(b)
		if err != nil {
			return nil, err
		}
		for i := range ss {
			out[lo+i][0] = lp[i]
			if d.Params.Loss != KTO {
				out[lo+i][1] = lp[len(ss)+i]
			}
		}
	}
	return out, nil
}

// logVal writes a validation's metrics (their means) to w.
func logVal(w io.Writer, m Metrics, names ...string) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "validation (%d):", m.Count)
	for _, n := range names {
		fmt.Fprintf(w, " %s %.4f", n, m.Mean(n))
	}
	fmt.Fprintln(w)
}
