package llama

import (
	"fmt"

	"github.com/herd-llm/herd/autograd"
)

// HiddenTape is ForwardTape without the output head: the same taped pass,
// returning every token's final hidden state after the output norm (rows
// of Dim, sequences one after another) as a Var whose gradient the pass
// has zeroed. A head on the hidden states (a reward model's score) adds
// its gradient to the Var's Grad, then tape.Backward() carries it into g.
// The Var is owned by s and valid until its next use.
func (m *Model) HiddenTape(s *State, tape *autograd.Tape, g *Grads, seqs []Seq, opt TapeOptions) (*autograd.Var, error) {
	if tape == nil {
		return nil, fmt.Errorf("forward: a taped pass needs a tape")
	}
	for i, sq := range seqs {
		if sq.Cache != nil || !sq.All {
			return nil, fmt.Errorf("forward: sequence %d: a taped pass takes sequences without a cache and with all rows", i)
		}
	}
	mode := modeTape
	if opt.Recompute {
		mode = modeRecompute
	}
	return m.forward(s, tape, g, seqs, mode, true)
}
