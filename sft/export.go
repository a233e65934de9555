package sft

import (
	"io"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/train"
)

// Trained is the trainable set a fine-tuning method makes of a model, for
// objectives other than SFT's (package align's preference and reward
// objectives) to train with the same methods on the same loop.
type Trained struct {
	Model    *llama.Model // the model the loss runs on (a float32 copy for full and embed)
	Grads    *llama.Grads // gradients of the model's own weights (nil: none train)
	Adapters *lora.Set    // lora, qlora, embed with LoRA
	// Memory has the parts the method decides: Weights, Copies, State.
	Memory Memory
	params []autograd.Param
}

// Params lists the trained tensors (a train.Trainable).
func (t *Trained) Params() []autograd.Param { return t.params }

// AddParams appends tensors the objective trains besides the method's (a
// reward model's head).
func (t *Trained) AddParams(ps ...autograd.Param) {
	t.params = append(t.params, ps...)
	for _, p := range ps {
		t.Memory.State += 16 * int64(len(p.Data))
	}
}

// NewTrained sets m up for o.Method as Tune does (full and embed train a
// float32 copy; lora and qlora attach adapters to m) and returns what
// trains, with the memory the method holds.
func NewTrained(m *llama.Model, o Options, log io.Writer) (*Trained, error) {
	if err := ParseMethod(o.Method); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	mem := Memory{Weights: m.WeightBytes()}
	ts, err := newTrainable(m, o, &mem, log)
	if err != nil {
		return nil, err
	}
	n := train.Count(ts)
	if o.Method == Full || o.Method == Embed {
		mem.Copies = 4 * (ts.model.Params() - n)
		if ts.adapters != nil {
			mem.Copies += 4 * ts.adapters.Count()
		}
	}
	mem.State = 16 * n
	return &Trained{Model: ts.model, Grads: ts.grads, Adapters: ts.adapters, Memory: mem, params: ts.params}, nil
}

// TrainConfig is the loop's configuration from the options (the
// optimizer, schedule, accumulation, clipping, validation cadence,
// checkpoints' cadence and resume, metrics directory, progress), the plot
// titled title.
func (o Options) TrainConfig(title string, log io.Writer) train.Config {
	c := o.config(log)
	c.Title = title
	return c
}
