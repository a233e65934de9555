package sft

import (
	"fmt"
	"io"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
)

// trainable is what a method trains: a train.Trainable, with the model it
// belongs to and where the backward pass writes.
type trainable struct {
	model    *llama.Model // the model the loss runs on (a float32 copy for full and embed)
	grads    *llama.Grads // gradients of the model's own weights (nil: none train)
	params   []autograd.Param
	adapters *lora.Set // lora, qlora, embed with LoRA
}

// Params lists the trained tensors.
func (t *trainable) Params() []autograd.Param { return t.params }

// newTrainable sets m up for o.Method and returns what trains; the
// memory the method copies is added to mem.
func newTrainable(m *llama.Model, o Options, mem *Memory, log io.Writer) (*trainable, error) {
	switch o.Method {
	case Full:
		c, err := m.CloneF32()
		if err != nil {
			return nil, err
		}
		g := c.NewGrads()
		return &trainable{model: c, grads: g, params: c.TrainParams(g)}, nil
	case Embed:
		return embedTrainable(m, o)
	case Adapter:
		if _, err := lora.AddPrefixes(m, o.PrefixLen, o.PrefixLayers, o.Seed); err != nil {
			return nil, fmt.Errorf("sft: %w", err)
		}
		return &trainable{model: m, params: lora.PrefixParams(m)}, nil
	case QLoRA:
		dt := o.BaseType
		if dt == 0 {
			dt = tensor.NF4
		}
		n, kept, err := lora.QuantizeBase(m, dt)
		if err != nil {
			return nil, err
		}
		mem.Copies = m.WeightBytes()
		fmt.Fprintf(log, "qlora: %d matrices stored as %s, %d kept (rows not whole %s blocks)\n", n, dt, kept, dt)
		fallthrough
	case LoRA:
		t := &trainable{model: m}
		return t, t.addLoRA(o)
	}
	return nil, fmt.Errorf("sft: unknown method %q (want one of %v)", o.Method, Methods)
}

// embedTrainable is the embed method's set: a float32 copy of m whose
// embedding and/or output head train, with LoRA adapters too when asked.
func embedTrainable(m *llama.Model, o Options) (*trainable, error) {
	c, err := m.CloneF32()
	if err != nil {
		return nil, err
	}
	g := &llama.Grads{Layers: make([]llama.LayerGrads, len(c.Layers))}
	tensors := o.EmbedTensors
	if len(tensors) == 0 { // what the model has: a tied head trains with the embedding
		tensors = []string{"embed"}
		if c.Output != c.Embed {
			tensors = append(tensors, "output")
		}
	}
	for _, t := range tensors {
		switch t {
		case "embed":
			g.Embed = make([]float32, c.Embed.Out*c.Embed.In)
			if c.Output == c.Embed {
				g.Output = g.Embed
			}
		case "output":
			if c.Output == c.Embed {
				return nil, fmt.Errorf("sft: the output head is tied to the embedding: train embed")
			}
			g.Output = make([]float32, c.Output.Out*c.Output.In)
		default:
			return nil, fmt.Errorf("sft: embed method: unknown tensor %q (want embed, output)", t)
		}
	}
	t := &trainable{model: c, grads: g, params: c.TrainParams(g)}
	if len(t.params) == 0 {
		return nil, fmt.Errorf("sft: embed method: no tensors chosen")
	}
	if o.EmbedLoRA { // Chinese-LLaMA's stage 2: embeddings and LoRA together
		return t, t.addLoRA(o)
	}
	return t, nil
}

// addLoRA attaches new adapters (o.LoRA) to the set's model and trains them.
func (t *trainable) addLoRA(o Options) error {
	set, err := lora.New(t.model, o.LoRA, o.Seed)
	if err != nil {
		return err
	}
	if err := set.Attach(t.model, 1); err != nil {
		return err
	}
	t.adapters = set
	t.params = append(t.params, set.Params()...)
	return nil
}

// setTrain turns the adapters' training mode (dropout) on or off.
func setTrain(set *lora.Set, on bool) {
	for _, a := range set.Adapters {
		a.Train = on
	}
}
