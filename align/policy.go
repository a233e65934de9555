package align

import (
	"fmt"
	"math/rand/v2"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
)

// Policy is the model being tuned and where its reference comes from: for
// LoRA (Adapters set) the same model with its adapters switched off, so
// the base is in memory once; for full fine-tuning Ref, a frozen model
// (the base as loaded, beside the float32 copy that trains). A
// reference-free loss, or reference log-probabilities computed once
// (Precompute), needs neither.
type Policy struct {
	Model    *llama.Model
	Grads    *llama.Grads // the trained weights' gradients (nil: the base is frozen)
	Adapters *lora.Set
	Ref      *llama.Model
	Tape     llama.TapeOptions
	// Seed draws LoRA dropout masks per step (from the step number, so a
	// resumed run and a recomputed block draw the same).
	Seed uint64

	st, infer, ref llama.State
}

// forward runs the policy over b on tape and returns the sequences'
// log-probability sums and counts; the caller fills dlogp before the
// backward pass.
func (p *Policy) forward(tape *autograd.Tape, b *batch, dlogp []float64) ([]float64, []int, error) {
	logits, err := p.Model.ForwardTape(&p.st, tape, p.Grads, b.seqs, p.Tape)
	if err != nil {
		return nil, nil, err
	}
	s, c := SeqLogProbs(tape, logits, b.targets, b.rows, p.Model.Config.VocabSize, dlogp)
	return s, c, nil
}

// train switches LoRA dropout on for a step (masks drawn from the step
// and micro-batch) or off (on false). It stays on through the tape's
// backward pass.
func (p *Policy) train(on bool, step, k int) {
	if p.Adapters == nil {
		return
	}
	seeds := rand.New(rand.NewPCG(p.Seed, uint64(step)<<16|uint64(k)))
	for _, a := range p.Adapters.Adapters {
		a.Train, a.Seed = on, seeds.Uint64()
	}
}

// noDropout runs f with LoRA dropout off (an untaped pass: validation,
// scoring, KTO's reference point), then restores it: a taped pass that
// recomputes its blocks in the backward pass must draw the same masks.
func (p *Policy) noDropout(f func() error) error {
	if p.Adapters != nil {
		on := make([]bool, len(p.Adapters.Adapters))
		for i, a := range p.Adapters.Adapters {
			on[i], a.Train = a.Train, false
		}
		defer func() {
			for i, a := range p.Adapters.Adapters {
				a.Train = on[i]
			}
		}()
	}
	return f()
}

// policyLogProbs is the policy without a tape (dropout off).
func (p *Policy) policyLogProbs(b *batch) ([]float64, error) {
	var lp []float64
	err := p.noDropout(func() (err error) {
		lp, err = logProbs(p.Model, &p.infer, b)
		return err
	})
	return lp, err
}

// refLogProbs is the reference's log-probabilities of b.
func (p *Policy) refLogProbs(b *batch) ([]float64, error) {
	switch {
	case p.Ref != nil:
		return logProbs(p.Ref, &p.ref, b)
	case p.Adapters != nil:
		p.Adapters.Detach(p.Model)
		lp, err := logProbs(p.Model, &p.ref, b)
		if aerr := p.Adapters.Attach(p.Model, 1); aerr != nil && err == nil {
			err = aerr
		}
		return lp, err
	}
	return nil, fmt.Errorf("dpo: no reference model: full fine-tuning needs Ref (a frozen copy) or precomputed reference log-probabilities")
}

// order is a data order reproducible from the step alone: position i of
// the endless sequence of epochs, each a permutation of n drawn from seed
// and the epoch number.
type order struct {
	n     int
	seed  uint64
	epoch int
	perm  []int
}

func (o *order) at(i int) int {
	if e := i / o.n; e != o.epoch || o.perm == nil {
		o.epoch = e
		o.perm = rand.New(rand.NewPCG(o.seed, uint64(e))).Perm(o.n)
	}
	return o.perm[i%o.n]
}
