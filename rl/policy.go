package rl

import (
	"fmt"
	"math/rand/v2"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
)

// Policy is the model being trained and its reference: for LoRA (Adapters
// set) the same model with its adapters detached, so the base is in memory
// once; otherwise Ref, a frozen model (the base as loaded beside the
// float32 copy that trains). Head, when set, is PPO's value head on the
// policy's trunk: V(h) = Head·h + Bias[0] of the final normed hidden state
// h of the position that predicts a token. LoRA dropout is off throughout
// (rollouts, their log-probabilities and the update must see one policy).
type Policy struct {
	Model    *llama.Model
	Grads    *llama.Grads // nil: the model's own weights are frozen
	Adapters *lora.Set
	Ref      *llama.Model
	Tape     llama.TapeOptions
	// Head and Bias are the value head, HeadGrad and BiasGrad their
	// gradients (nil Head: no value head).
	Head, Bias, HeadGrad, BiasGrad []float32
	// Value, when set (a LoRA policy only), is a second adapter set on
	// the same base that the value head reads instead of the policy's
	// trunk: the base with Value attached in place of Adapters (one base
	// in memory still). It is detached except during the value passes.
	Value *lora.Set

	st, infer, ref, stV, inferV llama.State
	logits                      autograd.Var
}

// ValuePrefix names the value adapters' parameters in a checkpoint.
const ValuePrefix = "value."

// ValueParams are the value adapters as an optimizer sees them (their
// names prefixed, the values shared).
func (p *Policy) ValueParams() []autograd.Param {
	if p.Value == nil {
		return nil
	}
	ps := p.Value.Params()
	for i := range ps {
		ps[i].Name = ValuePrefix + ps[i].Name
	}
	return ps
}

// valuePass is the final hidden states of seqs under the value trunk (on
// tape when not nil; the policy's adapters are put back after).
func (p *Policy) valuePass(tape *autograd.Tape, seqs []llama.Seq) (*autograd.Var, error) {
	m := p.Model
	p.Adapters.Detach(m)
	if err := p.Value.Attach(m, 1); err != nil {
		return nil, err
	}
	defer func() {
		p.Value.Detach(m)
		_ = p.Adapters.Attach(m, 1) // attached before: it fits
	}()
	if tape != nil {
		return m.HiddenTape(&p.stV, tape, nil, seqs, llama.TapeOptions{})
	}
	hs, err := m.Hidden(&p.inferV, seqs)
	if err != nil {
		return nil, err
	}
	return &autograd.Var{Data: joined(hs)}, nil
}

// NewHead is a value head for width dim: normal with standard deviation
// 1/√(dim+1) (TRL's ValueHead is an nn.Linear, initialised so), bias 0.
func NewHead(dim int, seed uint64) (head, bias []float32) {
	r := rand.New(rand.NewPCG(seed, 0x7a1e))
	head = make([]float32, dim)
	s := 1 / float64(dim+1)
	for i := range head {
		head[i] = float32(r.NormFloat64() * s)
	}
	return head, []float32{0}
}

// HeadParams are the value head as an optimizer sees it.
func (p *Policy) HeadParams() []autograd.Param {
	if p.Head == nil {
		return nil
	}
	if p.HeadGrad == nil {
		p.HeadGrad, p.BiasGrad = make([]float32, len(p.Head)), make([]float32, 1)
	}
	return []autograd.Param{{Name: "v_head.summary.weight", Data: p.Head, Grad: p.HeadGrad, Decay: true},
		{Name: "v_head.summary.bias", Data: p.Bias, Grad: p.BiasGrad}}
}

// dropoutOff switches LoRA dropout off for good.
func (p *Policy) dropoutOff() {
	for _, set := range []*lora.Set{p.Adapters, p.Value} {
		if set == nil {
			continue
		}
		for _, a := range set.Adapters {
			a.Train = false
		}
	}
}

// pass runs the policy over seqs (on tape when not nil) and returns the
// logits of every row (a Var whose gradient shares its buffer when
// taped) and, with a value head, the final hidden states (nil without).
func (p *Policy) pass(tape *autograd.Tape, seqs []llama.Seq) (logits, hidden *autograd.Var, err error) {
	m := p.Model
	// the untaped passes multiply as the taped one does, so that at step 0
	// the ratios are exactly 1 (see llama.State.Batch)
	p.infer.Batch, p.inferV.Batch = true, true
	if p.Head == nil || p.Value != nil {
		if tape != nil {
			if logits, err = m.ForwardTape(&p.st, tape, p.Grads, seqs, p.Tape); err != nil || p.Head == nil {
				return logits, nil, err
			}
			hidden, err = p.valuePass(tape, seqs)
			return logits, hidden, err
		}
		out, err := m.ForwardBatch(&p.infer, seqs)
		if err != nil {
			return nil, nil, err
		}
		logits = &autograd.Var{Data: joined(out)}
		if p.Head == nil {
			return logits, nil, nil
		}
		hidden, err = p.valuePass(nil, seqs)
		return logits, hidden, err
	}
	if tape != nil {
		hidden, err = m.HiddenTape(&p.st, tape, p.Grads, seqs, p.Tape)
	} else {
		var hs [][]float32
		hs, err = m.Hidden(&p.infer, seqs)
		if err == nil {
			hidden = &autograd.Var{Data: joined(hs)}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	// the output head on the hidden states, as the forward pass ends
	rows := len(hidden.Data) / m.Config.Dim
	n := rows * m.Config.VocabSize
	if cap(p.logits.Data) < n {
		p.logits.Data = make([]float32, n)
	}
	logits = &autograd.Var{Data: p.logits.Data[:n]}
	if tape != nil {
		logits.Grad = logits.Data
	}
	var g []float32
	if p.Grads != nil {
		g = p.Grads.Output
	}
	o := m.Output
	// Batch: the products of ForwardTape's and ForwardBatch's heads (see llama.State.Batch)
	autograd.Linear(tape, logits, hidden, autograd.Weight{Name: o.Name, DType: o.DType, Data: o.Data, Out: o.Out, In: o.In, Grad: g, Batch: true}, rows)
	for _, a := range o.LoRA {
		autograd.ApplyLoRA(tape, logits, hidden, a, rows)
	}
	return logits, hidden, nil
}

// joined is the rows of a batch's outputs as one slice (they are one
// buffer, sequence after sequence).
func joined(out [][]float32) []float32 {
	n := 0
	for _, o := range out {
		n += len(o)
	}
	return out[0][:n:n]
}

// values is the value head over every row of hidden.
func (p *Policy) values(hidden *autograd.Var) []float64 {
	dim := len(p.Head)
	rows := len(hidden.Data) / dim
	v := make([]float64, rows)
	for r := range v {
		s := float64(p.Bias[0])
		for j, w := range p.Head {
			s += float64(w) * float64(hidden.Data[r*dim+j])
		}
		v[r] = s
	}
	return v
}

// recordValues records the value head's backward step: dL/dv of row r is
// dv[r] (filled by the caller before the backward pass; rows without a
// value loss 0), added into hidden's gradient and the head's.
func (p *Policy) recordValues(tape *autograd.Tape, hidden *autograd.Var, dv []float64) {
	dim := len(p.Head)
	tape.Record(func() {
		for r, d := range dv {
			if d == 0 {
				continue
			}
			g := float32(d)
			h := hidden.Data[r*dim : (r+1)*dim]
			hg := hidden.Grad[r*dim : (r+1)*dim]
			for j, w := range p.Head {
				hg[j] += g * w
				p.HeadGrad[j] += g * h[j]
			}
			p.BiasGrad[0] += g
		}
	})
}

// refLogits is the reference's logits of every row of seqs.
func (p *Policy) refLogits(seqs []llama.Seq) ([]float32, error) {
	p.ref.Batch = true // the policy's products, bit for bit
	switch {
	case p.Ref != nil:
		out, err := p.Ref.ForwardBatch(&p.ref, seqs)
		if err != nil {
			return nil, err
		}
		return joined(out), nil
	case p.Adapters != nil:
		p.Adapters.Detach(p.Model)
		out, err := p.Model.ForwardBatch(&p.ref, seqs)
		if aerr := p.Adapters.Attach(p.Model, 1); aerr != nil && err == nil {
			err = aerr
		}
		if err != nil {
			return nil, err
		}
		return joined(out), nil
	}
	return nil, fmt.Errorf("rl: no reference: full training needs Ref (a frozen copy of the base)")
}

// TokenLogProbs is log p(target) of every row of logits (rows of vocab)
// whose target is not negative, in row order, and with ent not nil the
// entropy of those rows' distributions appended to *ent. The logits are
// replaced by their probabilities. With a tape it records the backward
// step: dL/dlogits of the i-th counted row is dlogp[i]·(onehot − p), read
// from dlogp when the step runs (the caller fills it after computing the
// loss); rows without a target get 0.
func TokenLogProbs(t *autograd.Tape, logits *autograd.Var, targets []int, vocab int, dlogp []float64, ent *[]float64) []float64 {
	losses := make([]float32, len(targets))
	kernels.SoftmaxCrossEntropy(losses, logits.Data[:len(targets)*vocab], targets, vocab)
	var lp []float64
	idx := make([]int, len(targets)) // the counted row's index, or −1
	for r, tg := range targets {
		idx[r] = -1
		if tg >= 0 {
			idx[r] = len(lp)
			lp = append(lp, -float64(losses[r]))
			if ent != nil {
				*ent = append(*ent, Entropy(logits.Data[r*vocab:(r+1)*vocab]))
			}
		}
	}
	if t == nil {
		return lp
	}
	t.Record(func() {
		probs, grad := logits.Data, logits.Grad
		kernels.ParallelFor(len(targets), max(1, (1<<15)/max(vocab, 1)), func(lo, hi int) {
			for r := lo; r < hi; r++ {
				d, pr := grad[r*vocab:(r+1)*vocab], probs[r*vocab:(r+1)*vocab]
				if idx[r] < 0 {
					clear(d)
					continue
				}
				g := float32(-dlogp[idx[r]]) // dL/dz = −dL/dlogp · (onehot − p)
				for j, pj := range pr {
					d[j] = g * pj
				}
				d[targets[r]] -= g
			}
		})
	})
	return lp
}
