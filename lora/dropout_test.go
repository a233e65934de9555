package lora

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// TestDropoutGradient: in training mode the dropout mask is a function of
// the adapter's seed, so the loss is a function of the weights and the
// adapters' gradients (taped, and with recomputation, bit for bit the
// same) match its central differences; the sequence is longer than the
// dropout's row tile. Leaving training mode, the model infers without
// dropout.
func TestDropoutGradient(t *testing.T) {
	m, s := trained(t, tensor.F32, []string{"q", "v", "gate", "down"}, false)
	m.Config.ContextLen = 128
	s.Attach(m, 1)
	before := logits(t, m)
	r := rand.New(rand.NewPCG(5, 6))
	seq := make([]int, 90)
	targets := make([]int, len(seq))
	for i := range seq {
		seq[i], targets[i] = r.IntN(m.Config.VocabSize), r.IntN(m.Config.VocabSize)
	}
	for i, a := range s.Adapters {
		a.Dropout, a.Train, a.Seed = 0.3, true, uint64(100+i)
	}
	loss := func() float64 { return seqLoss(t, m, seq, targets) }
	grads := func(recompute bool) [][]float32 {
		for _, p := range s.Params() {
			clear(p.Grad)
		}
		var st llama.State
		var tape autograd.Tape
		lg, err := m.ForwardTape(&st, &tape, nil, []llama.Seq{{Tokens: seq, All: true}}, llama.TapeOptions{Recompute: recompute})
		if err != nil {
			t.Fatal(err)
		}
		autograd.CrossEntropy(&tape, lg, targets, m.Config.VocabSize, 1)
		tape.Backward()
		var g [][]float32
		for _, p := range s.Params() {
			g = append(g, slices.Clone(p.Grad))
		}
		return g
	}
	rec, taped := grads(true), grads(false)
	for i, p := range s.Params() {
		if !slices.Equal(rec[i], taped[i]) {
			t.Fatalf("%s: the gradient differs with recomputation", p.Name)
		}
	}
	checkCentralDifferences(t, s.Params(), loss, r)
	for _, a := range s.Adapters {
		a.Train = false
	}
	if !slices.Equal(logits(t, m), before) {
		t.Error("out of training mode, the adapters still drop")
	}
}
