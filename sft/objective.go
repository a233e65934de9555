package sft

import (
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/train"
)

// objective is SFT's train.Objective: cross-entropy over the learned
// tokens of each micro-batch's examples (the assistant's spans), as a mean
// over the step's learned tokens. Micro-batch k of step s is the batcher's
// draw s·Accum+k, so a resumed run replays the order up to where it
// stopped; LoRA dropout draws its masks from a generator seeded by the
// step, the same in a resumed run and in a block's recomputation.
type objective struct {
	ts        *trainable
	samples   []Sample
	o         Options
	bt        *batcher
	drawn     int     // batches the batcher has drawn
	micro     [][]int // the current step's micro-batches (indices into samples)
	learned   int     // learned tokens of the current step
	seeds     *rand.Rand
	step      int // 1 + the step drawn
	next      int // the micro-batch the next seeds are for
	st        llama.State
	seqs      []llama.Seq
	targets   []int
	val       *evaluator
	largest   []llama.Seq // the batch of the most positions there can be
	vocab     int
	recompute bool
}

func newObjective(ts *trainable, samples []Sample, o Options) *objective {
	return &objective{ts: ts, samples: samples, o: o, bt: newBatcher(samples, o), vocab: ts.model.Config.VocabSize, recompute: o.Recompute}
}

// prepare predicts the activations, sets validation up and lays the
// training State out once for the largest batch there can be, so that it
// never grows mid-run and leaves its smaller layouts to the garbage
// collector.
func (ob *objective) prepare(mem *Memory, log io.Writer) error {
	m, set := ob.ts.model, ob.ts.adapters
	ob.largest = ob.bt.largest()
	for _, q := range ob.largest {
		mem.Tokens += len(q.Tokens)
	}
	mem.Activations = llama.ActivationBytes(m.Config, mem.Tokens, ob.recompute)
	if set != nil {
		for _, a := range set.Adapters {
			mem.Activations += 4 * int64(mem.Tokens) * int64(a.Rank) // A·x
			if a.Dropout > 0 {
				mem.Activations += int64(mem.Tokens) * int64(a.In) // the mask
			}
		}
	}
	if len(ob.o.Val) > 0 {
		if err := ob.prepareVal(mem, log); err != nil {
			return err
		}
	}
	var tape autograd.Tape
	if _, err := m.ForwardTape(&ob.st, &tape, nil, ob.largest, llama.TapeOptions{Recompute: ob.recompute}); err != nil {
		return fmt.Errorf("sft: %w", err)
	}
	tape.Backward()
	return nil
}

// prepareVal sets up the validation batches and logs them.
func (ob *objective) prepareVal(mem *Memory, log io.Writer) error {
	o := ob.o
	ob.val = newEvaluator(o.Val, o.Batch, o.Pack)
	if ob.val.learned == 0 {
		return fmt.Errorf("sft: the %d validation samples have no token to learn", len(o.Val))
	}
	var err error
	if mem.Eval, err = ob.val.layout(ob.ts.model, ob.ts.adapters); err != nil {
		return err
	}
	every := "after the last step only"
	if o.EvalEvery > 0 {
		part := "all"
		if o.EvalBatches > 0 && o.EvalBatches < len(ob.val.batches) {
			part = fmt.Sprintf("%d of the", o.EvalBatches)
		}
		every = fmt.Sprintf("every %d steps (%s %d batches) and after the last (all)", o.EvalEvery, part, len(ob.val.batches))
	}
	fmt.Fprintf(log, "validation: %d samples, %d learned tokens, %d batches; %s\n", len(o.Val), ob.val.learned, len(ob.val.batches), every)
	return nil
}

// draw takes the micro-batches of step from the batcher (replaying the
// draws before it on a resumed run) and seeds the step's dropout.
func (ob *objective) draw(step int) {
	for ob.drawn < step*ob.o.GlobalAccum() {
		ob.bt.next()
		ob.drawn++
	}
	ob.micro, ob.learned = ob.micro[:0], 0
	for range ob.o.GlobalAccum() {
		b := append([]int(nil), ob.bt.next()...)
		ob.drawn++
		for _, i := range b {
			ob.learned += ob.samples[i].Learned()
		}
		ob.micro = append(ob.micro, b)
	}
	ob.seeds = rand.New(rand.NewPCG(ob.o.Seed, uint64(step)))
	ob.step, ob.next = step+1, 0
}

// Loss records micro-batch k of step on tape.
func (ob *objective) Loss(tape *autograd.Tape, step, k int) (train.Micro, error) {
	if k == 0 || ob.step != step+1 { // a rank of several starts at its own k
		ob.draw(step)
	}
	if set := ob.ts.adapters; set != nil {
		for ; ob.next < k; ob.next++ { // the dropout seeds of the micro-batches before k
			for range set.Adapters {
				ob.seeds.Uint64()
			}
		}
		for _, a := range set.Adapters {
			a.Train, a.Seed = true, ob.seeds.Uint64()
		}
		ob.next++
	}
	ob.seqs, ob.targets = ob.seqs[:0], ob.targets[:0]
	for _, i := range ob.micro[k] {
		s := &ob.samples[i]
		ob.seqs = append(ob.seqs, llama.Seq{Tokens: s.Tokens, All: true})
		ob.targets = append(ob.targets, s.Targets...)
	}
	logits, err := ob.ts.model.ForwardTape(&ob.st, tape, ob.ts.grads, ob.seqs, llama.TapeOptions{Recompute: ob.recompute})
	if err != nil {
		return train.Micro{}, err
	}
	sum, n := autograd.CrossEntropy(tape, logits, ob.targets, ob.vocab, float32(1/float64(max(1, ob.learned))))
	return train.Micro{Sum: sum, Count: n, Tokens: len(ob.targets)}, nil
}

// ValBatches is the number of validation batches (0: no validation).
func (ob *objective) ValBatches() int {
	if ob.val == nil {
		return 0
	}
	return len(ob.val.batches)
}

// Validate is the mean loss over the learned tokens of the first n
// validation batches (all when n ≤ 0), dropout off.
func (ob *objective) Validate(n int) (float64, error) {
	l, _, err := ob.val.loss(ob.ts.model, ob.ts.adapters, n)
	return l, err
}

// CheckModel runs the first validation batch (without validation samples,
// the first training example) through the model without a tape, dropout
// off, and reports a logit that is not finite.
func (ob *objective) CheckModel() error {
	var seqs []llama.Seq
	st := new(llama.State) // one example: small
	if ob.val != nil {
		for _, j := range ob.val.batches[0] {
			seqs = append(seqs, llama.Seq{Tokens: ob.val.samples[j].Tokens, All: true})
		}
		st = &ob.val.st // laid out for the largest validation batch already
	} else {
		seqs = []llama.Seq{{Tokens: ob.samples[0].Tokens, All: true}}
	}
	if set := ob.ts.adapters; set != nil {
		was := make([]bool, len(set.Adapters))
		for k, a := range set.Adapters {
			was[k], a.Train = a.Train, false
		}
		defer func() {
			for k, a := range set.Adapters {
				a.Train = was[k]
			}
		}()
	}
	logits, err := ob.ts.model.ForwardBatch(st, seqs)
	if err != nil {
		return err
	}
	return train.FiniteLogits(logits, ob.vocab)
}
