// Package lora holds low-rank adapters for a llama.Model: creating them on
// chosen modules, attaching them to the layers (a Linear carries its
// adapters, so the one forward pass runs them at inference and in
// training), merging them into the weights and back out exactly, and
// reading and writing them in PEFT's layout (adapter_config.json +
// adapter_model.safetensors) and llama.cpp's GGUF LoRA layout.
package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
)

// Modules are the target names a LoRA may adapt, in layer order: the
// attention projections and the feed-forward matrices.
var Modules = func() []string {
	var ms []string
	for _, b := range llama.BlockMatrices {
		ms = append(ms, b.Module)
	}
	return ms
}()

// Config is an adapter set's shape.
type Config struct {
	Rank    int
	Alpha   float64
	Dropout float64
	Targets []string // of Modules
	// RSLoRA scales the branch by Alpha/sqrt(Rank) (Kalajdzievski 2023)
	// instead of Alpha/Rank.
	RSLoRA bool
}

// Scale is the factor on B·A.
func (c Config) Scale() float32 {
	if c.RSLoRA {
		return float32(c.Alpha / math.Sqrt(float64(c.Rank)))
	}
	return float32(c.Alpha / float64(c.Rank))
}

// Check reports an unusable configuration.
func (c Config) Check() error {
	if c.Rank <= 0 {
		return fmt.Errorf("lora: rank %d must be positive", c.Rank)
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora: alpha %g must be positive", c.Alpha)
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		return fmt.Errorf("lora: dropout %g must be in [0, 1)", c.Dropout)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("lora: no target modules (choose from %s)", strings.Join(Modules, ","))
	}
	for _, t := range c.Targets {
		if !slices.Contains(Modules, t) {
			return fmt.Errorf("lora: unknown target module %q (choose from %s)", t, strings.Join(Modules, ","))
		}
	}
	return nil
}

// Adapter is one module's LoRA: which layer and module it adapts.
type Adapter struct {
	Layer  int
	Module string
	*autograd.LoRA
}

// Set is the adapters of one model, in layer then module order.
type Set struct {
	Config   Config
	Adapters []Adapter
}

// module returns the Linear of layer l called name.
func module(l *llama.Layer, name string) *nn.Linear { return l.Matrix(name) }

// New creates adapters for c.Targets in every layer of m: A drawn
// uniformly from ±1/sqrt(In) (PEFT's Kaiming-uniform with a=√5), B zero, so
// the adapted model starts equal to the base. Gradients are allocated: the
// set is ready to train.
func New(m *llama.Model, c Config, seed uint64) (*Set, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x4c6f5241))
	s := &Set{Config: c}
	for li := range m.Layers {
		for _, name := range Modules {
			if !slices.Contains(c.Targets, name) {
				continue
			}
			w := module(&m.Layers[li], name)
			a := &autograd.LoRA{Rank: c.Rank, Out: w.Out, In: w.In, Scale: c.Scale(), Dropout: float32(c.Dropout),
				A: make([]float32, c.Rank*w.In), B: make([]float32, w.Out*c.Rank),
				GradA: make([]float32, c.Rank*w.In), GradB: make([]float32, w.Out*c.Rank)}
			bound := 1 / math.Sqrt(float64(w.In))
			for i := range a.A {
				a.A[i] = float32((2*rng.Float64() - 1) * bound)
			}
			s.Adapters = append(s.Adapters, Adapter{Layer: li, Module: name, LoRA: a})
		}
	}
	return s, nil
}

// check verifies that every adapter fits its module of m.
func (s *Set) check(m *llama.Model) error {
	for _, a := range s.Adapters {
		if a.Layer < 0 || a.Layer >= len(m.Layers) {
			return fmt.Errorf("lora: adapter for layer %d, the model has %d", a.Layer, len(m.Layers))
		}
		w := module(&m.Layers[a.Layer], a.Module)
		if w == nil {
			return fmt.Errorf("lora: layer %d: unknown module %q", a.Layer, a.Module)
		}
		if w.Out != a.Out || w.In != a.In {
			return fmt.Errorf("lora: %s is %d×%d, its adapter %d×%d", w.Name, w.Out, w.In, a.Out, a.In)
		}
	}
	return nil
}

// Attach makes m's layers carry the adapters, their branches scaled by
// weight (1: as trained). The same adapters may be attached to one model
// only once.
func (s *Set) Attach(m *llama.Model, weight float32) error {
	if err := s.check(m); err != nil {
		return err
	}
	for i := range s.Adapters {
		a := &s.Adapters[i]
		if weight != 1 {
			c := *a.LoRA
			c.Scale *= weight
			a.LoRA = &c
		}
		w := module(&m.Layers[a.Layer], a.Module)
		w.LoRA = append(w.LoRA, a.LoRA)
	}
	return nil
}

// Detach removes the set's adapters from m.
func (s *Set) Detach(m *llama.Model) {
	for _, a := range s.Adapters {
		if a.Layer >= len(m.Layers) {
			continue
		}
		w := module(&m.Layers[a.Layer], a.Module)
		w.LoRA = slices.DeleteFunc(w.LoRA, func(x *autograd.LoRA) bool { return x == a.LoRA })
	}
}

// Params lists the adapters' matrices for an optimizer, named as PEFT
// names them; they decay.
func (s *Set) Params() []autograd.Param {
	var ps []autograd.Param
	for _, a := range s.Adapters {
		ps = append(ps,
			autograd.Param{Name: PEFTName(a.Layer, a.Module, "A"), Data: a.A, Grad: a.GradA, Decay: true},
			autograd.Param{Name: PEFTName(a.Layer, a.Module, "B"), Data: a.B, Grad: a.GradB, Decay: true})
	}
	return ps
}

// Count is the number of adapter weights.
func (s *Set) Count() int64 {
	var n int64
	for _, a := range s.Adapters {
		n += int64(len(a.A) + len(a.B))
	}
	return n
}
