package sft

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
)

// evaluator measures a model's mean loss over the learned tokens of
// validation samples: the training loss's masking, without a tape, the
// adapters' dropout off. Its batches are fixed: the samples in their order,
// Batch examples each, or with packing Batch rows of as many consecutive
// examples as fit Pack tokens, as the training batches are drawn.
type evaluator struct {
	samples []Sample
	batches [][]int // indices into samples
	learned int     // positions with a loss, over every batch
	st      llama.State
	seqs    []llama.Seq
}

func newEvaluator(samples []Sample, batch, pack int) *evaluator {
	e := &evaluator{samples: samples}
	for at := 0; at < len(samples); {
		var b []int
		for range batch {
			for used := 0; at < len(samples); at++ {
				n := len(samples[at].Tokens)
				if used > 0 && (pack <= 0 || used+n > pack) {
					break
				}
				b = append(b, at)
				used += n
			}
		}
		e.batches = append(e.batches, b)
	}
	for i := range samples {
		e.learned += samples[i].Learned()
	}
	return e
}

// layout lays e's State out for its batch of the most positions, so that
// evaluating never grows it, and returns the bytes the State holds.
func (e *evaluator) layout(m *llama.Model, set *lora.Set) (int64, error) {
	most, tokens := 0, 0
	for i, b := range e.batches {
		n := 0
		for _, j := range b {
			n += len(e.samples[j].Tokens)
		}
		if n > tokens {
			most, tokens = i, n
		}
	}
	if _, _, err := e.batch(m, set, most); err != nil {
		return 0, err
	}
	return e.st.Bytes(), nil
}

// loss is the mean cross-entropy of m over the learned tokens of the first
// n batches (all of them when n is 0 or more than there are), and the
// number of those tokens. The adapters of set, if any, run without dropout
// and are left in the training mode they were in.
func (e *evaluator) loss(m *llama.Model, set *lora.Set, n int) (float64, int, error) {
	if n <= 0 || n > len(e.batches) {
		n = len(e.batches)
	}
	var sum float64
	count := 0
	for i := range n {
		s, c, err := e.batch(m, set, i)
		if err != nil {
			return math.NaN(), 0, err
		}
		sum, count = sum+s, count+c
	}
	if count == 0 {
		return math.NaN(), 0, nil
	}
	return sum / float64(count), count, nil
}

// batch is the summed cross-entropy of m over the learned tokens of batch
// i and their number (float64 sums of the per-token float32 losses, as the
// training loss is summed).
func (e *evaluator) batch(m *llama.Model, set *lora.Set, i int) (float64, int, error) {
	if set != nil {
		train := make([]bool, len(set.Adapters))
		for k, a := range set.Adapters {
			train[k], a.Train = a.Train, false
		}
		defer func() {
			for k, a := range set.Adapters {
				a.Train = train[k]
			}
		}()
	}
	e.seqs = e.seqs[:0]
	for _, j := range e.batches[i] {
		e.seqs = append(e.seqs, llama.Seq{Tokens: e.samples[j].Tokens, All: true})
	}
	logits, err := m.ForwardBatch(&e.st, e.seqs)
	if err != nil {
		return 0, 0, fmt.Errorf("sft validation: %w", err)
	}
	var sum float64
	count := 0
	for k, j := range e.batches[i] {
		s, c := autograd.CrossEntropy(nil, &autograd.Var{Data: logits[k]}, e.samples[j].Targets, m.Config.VocabSize, 0)
		sum, count = sum+s, count+c
	}
	return sum, count, nil
}
