package align

import (
	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
)

// SeqLogProbs sums, per sequence, log p(target) over the rows of logits
// (rows of vocab, the sequences' rows one after another, rows[i] of them
// for sequence i) whose target is not negative, and counts those rows.
// The logits are replaced by their probabilities.
//
// With a tape it records the backward step: dL/dlogits of row r of
// sequence i is dL/dlogp_i · (onehot(target) − p), where dL/dlogp_i is
// read from dlogp[i] when the step runs, so the caller computes the loss
// from the sums, fills dlogp, and then runs the tape's backward pass. The
// gradient is written into logits.Grad (which may alias logits.Data);
// rows without a target get 0.
func SeqLogProbs(t *autograd.Tape, logits *autograd.Var, targets, rows []int, vocab int, dlogp []float64) (sums []float64, counts []int) {
	losses := make([]float32, len(targets))
	kernels.SoftmaxCrossEntropy(losses, logits.Data[:len(targets)*vocab], targets, vocab)
	sums, counts = make([]float64, len(rows)), make([]int, len(rows))
	seqOf := make([]int, len(targets)) // the sequence of each row
	r := 0
	for i, n := range rows {
		for j := r; j < r+n; j++ {
			seqOf[j] = i
			if targets[j] >= 0 {
				sums[i] -= float64(losses[j])
				counts[i]++
			}
		}
		r += n
	}
	if t == nil {
		return sums, counts
	}
	t.Record(func() {
		probs, grad := logits.Data, logits.Grad
		kernels.ParallelFor(len(targets), max(1, (1<<15)/max(vocab, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				d, p := grad[r*vocab:(r+1)*vocab], probs[r*vocab:(r+1)*vocab]
				tg := targets[r]
				if tg < 0 {
					clear(d)
					continue
				}
				g := float32(-dlogp[seqOf[r]]) // dL/dz = −dL/dlogp · (onehot − p)
				for j, pj := range p {
					d[j] = g * pj
				}
				d[tg] -= g
			}
		})
	})
	return sums, counts
}

// batch lays samples out for one forward pass: the sequences (every
// sample's chosen response, then every paired sample's rejected one, or
// for an unpaired sample its response with the prompt of resps[i] when
// given), their targets and row counts.
type batch struct {
	seqs    []llama.Seq
	targets []int
	rows    []int
	tokens  int
}

func (b *batch) add(s *Sample, resp []int) {
	tok, tg := s.Seq(resp)
	b.seqs = append(b.seqs, llama.Seq{Tokens: tok, All: true})
	b.targets = append(b.targets, tg...)
	b.rows = append(b.rows, len(tok))
	b.tokens += len(tok)
}

// pairBatch is chosen then rejected of every pair, in one batch.
func pairBatch(ss []Sample) *batch {
	b := &batch{}
	for i := range ss {
		b.add(&ss[i], ss[i].Chosen)
	}
	for i := range ss {
		b.add(&ss[i], ss[i].Rejected)
	}
	return b
}

// unpairedBatch is every sample's response.
func unpairedBatch(ss []Sample) *batch {
	b := &batch{}
	for i := range ss {
		b.add(&ss[i], ss[i].Chosen)
	}
	return b
}

// mismatchedBatch pairs each sample's prompt with the next sample's
// response (KTO's KL estimate).
func mismatchedBatch(ss []Sample) *batch {
	b := &batch{}
	for i := range ss {
		j := (i + 1) % len(ss)
		s := Sample{Prompt: ss[i].Prompt}
		b.add(&s, ss[j].Chosen)
	}
	return b
}

// logProbs runs m over b without a tape and returns each sequence's
// response log-probability sum (the reference pass, or a validation one).
func logProbs(m *llama.Model, st *llama.State, b *batch) ([]float64, error) {
	st.Batch = true // the taped pass's products, so the policy starts equal to its reference bit for bit
	out, err := m.ForwardBatch(st, b.seqs)
	if err != nil {
		return nil, err
	}
	// the rows are one buffer, sequence after sequence
	n := b.tokens * m.Config.VocabSize
	all := out[0][:n:n]
	sums, _ := SeqLogProbs(nil, &autograd.Var{Data: all}, b.targets, b.rows, m.Config.VocabSize, nil)
	return sums, nil
}
