package train

import (
	"github.com/herd-llm/herd/autograd"
)

// An Objective is what differs between ways of training: given a step, it
// draws the step's data, builds the loss on the tape and says what the
// loss was. The loop (Fit) owns everything else: the optimizer, the
// schedule, accumulation, clipping, the divergence stop, validation,
// checkpoints, metrics and progress.
//
// Loss is called Config.Accum times a step, k = 0 … Accum−1, each time on
// a tape the objective's forward pass resets; after each call the loop runs
// the tape's backward pass, so gradients accumulate into the trainable
// set's Grad slices, which the loop zeroes before k = 0.
//
// How the ways of training plug in:
//   - causal language modelling (pretraining): the micro-batch's windows,
//     cross-entropy over every next token;
//   - SFT: cross-entropy masked to the assistant's tokens;
//   - a reward model: a scalar head on the last hidden state of chosen and
//     rejected answers in one batch, the pairwise loss −log σ(r_c − r_r),
//     Count the pairs, Extra "accuracy" (a sum of 0/1 per pair);
//   - DPO and its family: the policy's and the reference's log-probabilities
//     of chosen and rejected in one batch, where the reference is the same
//     model with its adapters switched off (no tape, no second copy);
//     Extra "rewards/chosen", "rewards/rejected", "rewards/margins";
//   - PPO: the objective samples rollouts with the current policy when k
//     is 0 of a step that starts a rollout phase (the loop never looks at
//     the data), then scores and optimises them over the following steps.
//
// An objective that keeps state across steps (a data order, a rollout
// buffer) must reproduce it from the step number alone or by replaying
// the steps before it: a resumed run calls Loss from the resumed step on,
// and must compute bit for bit what the uninterrupted run computed.
type Objective interface {
	Loss(tape *autograd.Tape, step, k int) (Micro, error)
}

// Micro is what an objective reports of one micro-batch.
type Micro struct {
	// Sum is the loss of the micro-batch summed over its Count items
	// (tokens with a target, preference pairs, rollouts). The step's loss
	// is ΣSum / ΣCount over its micro-batches. The gradient the objective
	// seeds on the tape must be the step's mean's: each item's loss
	// scaled by 1/(the step's ΣCount), which the objective knows before
	// it seeds (pretraining: batch·seq·accum; SFT: the learned tokens of
	// the step's examples).
	Sum   float64
	Count int
	// Tokens are the positions the forward pass processed (the
	// throughput and the FLOP estimate count them).
	Tokens int
	// Extra are further sums over the same Count items, logged per step
	// as ΣExtra / ΣCount under their names in metrics.jsonl and in
	// Progress.Extra (DPO's rewards/chosen, a reward model's accuracy).
	Extra map[string]float64
	// Skip says the micro-batch has nothing to learn (PPO's early stop of
	// an epoch whose approximate KL ran away): its Sum, Count and Tokens
	// should be 0 and it seeds no gradient. A step whose every micro-batch
	// skips makes no optimizer update (AdamW's moments would otherwise
	// still move the weights).
	Skip  bool
	skips int // micro-batches that skipped, when summed into a step
}

// A Validator is an Objective that can measure itself on held-out data:
// Validate is the mean loss over the first n validation batches (all of
// them when n ≤ 0 or more than there are), computed without a tape and
// without changing anything the training computes (dropout off, no
// random draws, the same data order afterwards). The loop validates before
// the first step, every Config.EvalEvery steps on Config.EvalBatches
// batches, and after the last step on all of them.
type Validator interface {
	Validate(n int) (float64, error)
	// ValBatches is how many validation batches there are.
	ValBatches() int
}

// A Checker is an Objective that can tell whether the model is fit to be
// kept: CheckModel runs a forward pass the way inference runs it (no tape)
// on one validation batch (or, without validation data, one training
// batch) and returns an error naming what is wrong when a logit is NaN or
// infinite. The loop checks before every checkpoint and keeps only models
// that pass ("the last good checkpoint").
type Checker interface {
	CheckModel() error
}

// An InitialSaver is a Checkpointer that can write the run's starting
// point as a step-0 checkpoint (rebuilt from what the run started from,
// without the moments). The loop asks for it only when a run diverges
// before its first checkpoint, so that there is a good one to go back to.
type InitialSaver interface {
	SaveInitial() (string, error)
}

// A Trainable set is what the optimizer updates: the float32 values and
// gradients of whichever tensors train (every weight, LoRA matrices, an
// adaption prompt, the embeddings, a reward head, or several joined).
// Which parameters train is a property of the set, never of the loop;
// each Param's Decay says whether weight decay applies (matrices yes,
// norm gains and biases no). The order and the names are fixed for a run:
// checkpoints store the optimizer's moments by position and name.
type Trainable interface {
	Params() []autograd.Param
}

// Params is a Trainable of a fixed list.
type Params []autograd.Param

// Params returns the list.
func (p Params) Params() []autograd.Param { return p }

// Count is the number of values the set trains.
func Count(t Trainable) int64 {
	var n int64
	for _, p := range t.Params() {
		n += int64(len(p.Data))
	}
	return n
}

// A Checkpointer writes and restores the state of a run so that a resumed
// run continues bit for bit: the trainable values, the optimizer's moments
// and step, and whatever its objective's model needs to be used on its own
// (pretraining writes the whole model; SFT the trained tensors).
type Checkpointer interface {
	// Latest is the step of the newest complete checkpoint (0: none) and
	// where it is, for messages.
	Latest() (step int, where string, err error)
	// Restore loads the newest checkpoint into params (a Checkpointer
	// whose caller built the model from the checkpoint may leave them) and
	// opt, and returns its step.
	Restore(params []autograd.Param, opt *AdamW) (int, error)
	// Save writes the checkpoint of s.Step atomically (a kill at any
	// moment leaves the previous one or this one whole) and returns
	// where it is.
	Save(s Snapshot) (string, error)
}

// Snapshot is what a checkpoint is made of.
type Snapshot struct {
	Step          int // steps done
	Params        []autograd.Param
	Opt           *AdamW
	Loss, ValLoss float64 // of the step (ValLoss NaN when it did not validate)
}
