package train

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/llama"
)

// CausalLM is pretraining's objective: the mean cross-entropy of every next
// token of Batch windows of Seq+1 tokens from the training loader, micro-
// batch k of step s being the loader's batch s·Accum+k (so a resumed run
// draws the same data); validation runs the same loss over the validation
// loader's batches in order, without a tape.
type CausalLM struct {
	Model              *llama.Model
	Grads              *llama.Grads // where the backward pass writes
	Train, Val         *data.Loader // Val nil: no validation
	Batch, Seq, Accum  int
	Recompute          bool // recompute each block in the backward pass
	EvalBatches        int  // how many validation batches an evaluation covers (0: none)
	st                 llama.State
	window, in, target []int
	seqs               []llama.Seq
}

// Loss records micro-batch k of step on tape.
func (o *CausalLM) Loss(tape *autograd.Tape, step, k int) (Micro, error) {
	b, s := o.Batch, o.Seq
	if o.window == nil {
		o.window, o.in, o.target = make([]int, b*(s+1)), make([]int, b*s), make([]int, b*s)
		o.seqs = make([]llama.Seq, b)
	}
	o.Train.Batch(int64(step)*int64(o.Accum)+int64(k), o.window)
	w := s + 1
	for i := range b {
		copy(o.in[i*s:(i+1)*s], o.window[i*w:i*w+s])
		copy(o.target[i*s:(i+1)*s], o.window[i*w+1:(i+1)*w])
		o.seqs[i] = llama.Seq{Tokens: o.in[i*s : (i+1)*s], All: true}
	}
	logits, err := o.Model.ForwardTape(&o.st, tape, o.Grads, o.seqs, llama.TapeOptions{Recompute: o.Recompute})
	if err != nil {
		return Micro{}, err
	}
	// every position has a target: the step's mean divides by them all
	scale := float32(1 / float64(b*s*o.Accum))
	sum, n := autograd.CrossEntropy(tape, logits, o.target, o.Model.Config.VocabSize, scale)
	return Micro{Sum: sum, Count: n, Tokens: b * s}, nil
}

// ValBatches is the number of validation batches (0 without validation).
func (o *CausalLM) ValBatches() int {
	if o.Val == nil || o.EvalBatches <= 0 {
		return 0
	}
	return int(o.Val.StepsPerEpoch())
}

// Validate is the mean loss over the first n validation batches (all when
// n ≤ 0).
func (o *CausalLM) Validate(n int) (float64, error) {
	if n <= 0 {
		n = o.ValBatches()
	}
	return Evaluate(o.Model, o.Val, n), nil
}

// CheckModel runs the first validation batch (without validation data,
// the first training batch) through the model without a tape and reports
// a logit that is not finite.
func (o *CausalLM) CheckModel() error {
	l := o.Val
	if l == nil {
		l = o.Train
	}
	window := make([]int, l.BatchSize()*(l.SeqLen()+1))
	l.Batch(0, window)
	w := l.SeqLen() + 1
	seqs := make([]llama.Seq, l.BatchSize())
	for b := range seqs {
		seqs[b] = llama.Seq{Tokens: window[b*w : b*w+w-1], All: true}
	}
	var st llama.State
	logits, err := o.Model.ForwardBatch(&st, seqs)
	if err != nil {
		return err
	}
	return FiniteLogits(logits, o.Model.Config.VocabSize)
}

// FiniteLogits reports the first logit that is NaN or infinite, by
// sequence and position.
func FiniteLogits(logits [][]float32, vocab int) error {
	for s, lg := range logits {
		for i, v := range lg {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("the model's forward pass gives a logit of %g (sequence %d, position %d): not a model to keep", v, s, i/max(1, vocab))
			}
		}
	}
	return nil
}
