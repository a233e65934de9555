package align

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
)

var tinyConfig = llama.Config{Dim: 16, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 24, VocabSize: 11, ContextLen: 32,
	RopeTheta: 10000, NormEps: 1e-5}

// tinyModel is a random float32 model with weights large enough that
// every path of the gradient matters.
func tinyModel(t *testing.T, seed uint64) *llama.Model {
	t.Helper()
	m, err := llama.Random(tinyConfig, tensor.F32, seed)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 6))
	for _, p := range m.TrainParams(m.NewGrads()) {
		if p.Decay {
			for i := range p.Data {
				p.Data[i] = float32(r.NormFloat64() * 0.3)
			}
		}
	}
	return m
}

// tinyPairs are random pairs: a prompt starting with token 1 (BOS) and two
// different responses.
func tinyPairs(n int, seed uint64) []Sample {
	r := rand.New(rand.NewPCG(seed, 7))
	seq := func(k int) []int {
		s := make([]int, k)
		for i := range s {
			s[i] = 2 + r.IntN(tinyConfig.VocabSize-2)
		}
		return s
	}
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{Prompt: append([]int{1}, seq(2+r.IntN(3))...), Chosen: seq(2 + r.IntN(3)), Rejected: seq(1 + r.IntN(4)), Paired: true, Where: "tiny"}
	}
	return out
}

// loraPolicy attaches fresh adapters (B = 0: the policy equals the base).
func loraPolicy(t *testing.T, m *llama.Model) *Policy {
	t.Helper()
	set, err := lora.New(m, lora.Config{Rank: 2, Alpha: 4, Targets: lora.Modules}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Attach(m, 1); err != nil {
		t.Fatal(err)
	}
	return &Policy{Model: m, Adapters: set}
}

// With the policy equal to the reference (LoRA's B = 0 at step 0), DPO's
// loss is exactly log 2 and every reward exactly 0.
func TestDPOStepZeroIsLog2(t *testing.T) {
	m := tinyModel(t, 1)
	ss := tinyPairs(6, 2)
	d := &DPO{Policy: loraPolicy(t, m), Params: Params{Loss: Sigmoid, Beta: 0.1}, Train: ss, Batch: 6}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	var tape autograd.Tape
	mt, err := d.Step(&tape, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	tape.Backward()
	if l := mt.Sum / float64(mt.Count); l != math.Ln2 {
		t.Errorf("loss %.17g, want ln 2 = %.17g", l, math.Ln2)
	}
	for _, k := range []string{RewardsChosen, RewardsRejected, RewardsMargin, RewardsAccuracy} {
		if mt.Extra[k] != 0 {
			t.Errorf("%s = %g, want 0", k, mt.Extra[k])
		}
	}
	if mt.Extra[LogpsChosen] >= 0 || mt.Extra[LogpsRejected] >= 0 {
		t.Errorf("log-probabilities %g %g", mt.Extra[LogpsChosen], mt.Extra[LogpsRejected])
	}
}

// perturbable lists (parameter, index) pairs for a central-difference check.
type probe struct {
	p autograd.Param
	i int
}

func probes(ps []autograd.Param, n int, seed uint64) []probe {
	r := rand.New(rand.NewPCG(seed, 9))
	var out []probe
	for range n {
		p := ps[r.IntN(len(ps))]
		out = append(out, probe{p, r.IntN(len(p.Data))})
	}
	return out
}

// checkObjective compares the gradient Step seeds (after Backward) with
// central differences of the loss Evaluate measures (float32 forward
// passes, the loss summed in float64).
func checkObjective(t *testing.T, d *DPO, params []autograd.Param, what string) {
	t.Helper()
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	var tape autograd.Tape
	for _, p := range params {
		clear(p.Grad)
	}
	if _, err := d.Step(&tape, 0, 0); err != nil {
		t.Fatal(err)
	}
	tape.Backward()
	loss := func() float64 {
		m, err := d.Evaluate(d.Train, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return m.Sum / float64(m.Count)
	}
	const h = 1e-2
	bad := 0
	for _, pr := range probes(params, 12, 4) {
		v := pr.p.Data[pr.i]
		pr.p.Data[pr.i] = v + h
		hi := loss()
		pr.p.Data[pr.i] = v - h
		lo := loss()
		pr.p.Data[pr.i] = v
		fd, g := (hi-lo)/(2*h), float64(pr.p.Grad[pr.i])
		if math.Abs(fd-g) > 2e-4+2e-2*math.Abs(fd) {
			bad++
			t.Errorf("%s: %s[%d]: gradient %.6g, central difference %.6g", what, pr.p.Name, pr.i, g, fd)
		}
	}
}

// The whole objective's gradient, every loss, by central differences on a
// tiny model: full fine-tuning against a frozen reference, and LoRA
// against the same model with its adapters off.
func TestObjectiveGradients(t *testing.T) {
	for _, p := range []Params{
		{Loss: Sigmoid, Beta: 0.5}, {Loss: Sigmoid, Beta: 0.5, LabelSmoothing: 0.2}, {Loss: Robust, Beta: 0.5, LabelSmoothing: 0.1},
		{Loss: IPO, Beta: 0.5}, {Loss: Hinge, Beta: 0.05}, {Loss: SimPO, Beta: 2, Gamma: 0.3}, {Loss: ORPO, Beta: 0.5},
		{Loss: KTO, Beta: 0.5, DesirableWeight: 1, UndesirableWeight: 1.5},
	} {
		base := tinyModel(t, 11)
		pol, err := base.CloneF32()
		if err != nil {
			t.Fatal(err)
		}
		g := pol.NewGrads()
		params := pol.TrainParams(g)
		r := rand.New(rand.NewPCG(12, 13))
		for _, q := range params { // the policy away from the reference
			for i := range q.Data {
				q.Data[i] += float32(r.NormFloat64() * 0.05)
			}
		}
		d := &DPO{Policy: &Policy{Model: pol, Grads: g, Ref: base}, Params: p, Train: tinyPairs(4, 14), Batch: 4}
		if p.Loss == KTO {
			d.Batch = 8
			d.fixZ = true
		}
		checkObjective(t, d, params, "full "+p.Loss)

		lm := tinyModel(t, 15)
		lp := loraPolicy(t, lm)
		lparams := lp.Adapters.Params()
		for _, q := range lparams {
			for i := range q.Data {
				q.Data[i] = float32(r.NormFloat64() * 0.3)
			}
		}
		d = &DPO{Policy: lp, Params: p, Train: tinyPairs(3, 16), Batch: 3}
		if p.Loss == KTO {
			d.Batch = 6
			d.fixZ = true
		}
		checkObjective(t, d, lparams, "lora "+p.Loss)
	}
}

// Precomputed reference log-probabilities give the same losses as the
// reference run at each step.
func TestPrecomputeMatches(t *testing.T) {
	m := tinyModel(t, 21)
	pol := loraPolicy(t, m)
	r := rand.New(rand.NewPCG(22, 23))
	for _, q := range pol.Adapters.Params() {
		for i := range q.Data {
			q.Data[i] = float32(r.NormFloat64() * 0.2)
		}
	}
	ss := tinyPairs(5, 24)
	d := &DPO{Policy: pol, Params: Params{Loss: Sigmoid, Beta: 0.3}, Train: ss, Batch: 2}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	ref, err := d.Precompute(ss)
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.Evaluate(ss, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Evaluate(ss, ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Sum != b.Sum || a.Extra[RewardsMargin] != b.Extra[RewardsMargin] {
		t.Errorf("reference run %v, precomputed %v", a, b)
	}
}

// With LoRA dropout, recomputing the blocks in the backward pass draws the
// same masks: the gradients equal the stored pass's.
func TestDropoutRecompute(t *testing.T) {
	var grads [2][]float32
	for i, rec := range []bool{false, true} {
		m := tinyModel(t, 51)
		set, err := lora.New(m, lora.Config{Rank: 2, Alpha: 4, Dropout: 0.3, Targets: lora.Modules}, 3)
		if err != nil {
			t.Fatal(err)
		}
		set.Attach(m, 1)
		r := rand.New(rand.NewPCG(52, 53))
		for _, q := range set.Params() {
			for j := range q.Data {
				q.Data[j] = float32(r.NormFloat64() * 0.3)
			}
		}
		d := &DPO{Policy: &Policy{Model: m, Adapters: set, Tape: llama.TapeOptions{Recompute: rec}, Seed: 9}, Params: Params{Loss: Sigmoid, Beta: 0.5}, Train: tinyPairs(4, 54), Batch: 4}
		if err := d.Init(); err != nil {
			t.Fatal(err)
		}
		var tape autograd.Tape
		if _, err := d.Step(&tape, 3, 0); err != nil {
			t.Fatal(err)
		}
		tape.Backward()
		for _, q := range set.Params() {
			grads[i] = append(grads[i], q.Grad...)
		}
	}
	nonzero := 0
	for j := range grads[0] {
		if grads[0][j] != grads[1][j] {
			t.Fatalf("gradient %d: %g stored, %g recomputed", j, grads[0][j], grads[1][j])
		}
		if grads[0][j] != 0 {
			nonzero++
		}
	}
	if nonzero == 0 {
		t.Fatal("no gradient")
	}
}

// Two micro-batches of two pairs accumulate the gradient of one batch of
// the same four pairs (each scaled by the step's pair count).
func TestAccumulationMatchesBatch(t *testing.T) {
	var grads [2][]float32
	var sums [2]float64
	for i, shape := range [][2]int{{4, 1}, {2, 2}} {
		m := tinyModel(t, 61)
		pol, err := m.CloneF32()
		if err != nil {
			t.Fatal(err)
		}
		g := pol.NewGrads()
		r := rand.New(rand.NewPCG(62, 63))
		for _, q := range pol.TrainParams(g) {
			for j := range q.Data {
				q.Data[j] += float32(r.NormFloat64() * 0.05)
			}
		}
		d := &DPO{Policy: &Policy{Model: pol, Grads: g, Ref: m}, Params: Params{Loss: Sigmoid, Beta: 0.5}, Train: tinyPairs(8, 64), Batch: shape[0], Accum: shape[1]}
		if err := d.Init(); err != nil {
			t.Fatal(err)
		}
		for k := range shape[1] {
			var tape autograd.Tape
			mt, err := d.Step(&tape, 1, k)
			if err != nil {
				t.Fatal(err)
			}
			tape.Backward()
			sums[i] += mt.Sum
		}
		for _, q := range pol.TrainParams(g) {
			grads[i] = append(grads[i], q.Grad...)
		}
	}
	if math.Abs(sums[0]-sums[1]) > 1e-6 {
		t.Errorf("loss sums %g (one batch) and %g (accumulated)", sums[0], sums[1])
	}
	for j := range grads[0] {
		if d := math.Abs(float64(grads[0][j] - grads[1][j])); d > 1e-6+1e-4*math.Abs(float64(grads[0][j])) {
			t.Fatalf("gradient %d: %g one batch, %g accumulated", j, grads[0][j], grads[1][j])
		}
	}
}
