package lora

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
)

// LLaMA-Adapter (Zhang et al. 2023): learnable adaption prompts that the
// queries of the top layers also attend to, through zero-initialised
// gates. The attention op and its backward pass are autograd.Prefix and
// autograd.PrefixAttention; the prompts ride on llama.Layer.Prefix.

// AddPrefixes gives the top layers of m (all when layers exceeds them) a
// LLaMA-Adapter adaption prompt of n tokens: prompt weights drawn from a
// normal of standard deviation 0.02, gates zero (so the model's outputs are
// unchanged until training moves the gates), gradients allocated.
func AddPrefixes(m *llama.Model, n, layers int, seed uint64) ([]*autograd.Prefix, error) {
	c := m.Config
	if n <= 0 || layers <= 0 {
		return nil, fmt.Errorf("lora: adaption prompts: %d prompt tokens in %d layers: both must be positive", n, layers)
	}
	rng := rand.New(rand.NewPCG(seed, 0xada))
	var ps []*autograd.Prefix
	for li := max(0, c.NLayers-layers); li < c.NLayers; li++ {
		p := &autograd.Prefix{Len: n, Dim: c.Dim, P: make([]float32, n*c.Dim), Gate: make([]float32, c.NHeads),
			GradP: make([]float32, n*c.Dim), GradGate: make([]float32, c.NHeads)}
		for i := range p.P {
			p.P[i] = float32(rng.NormFloat64() * 0.02)
		}
		m.Layers[li].Prefix = p
		ps = append(ps, p)
	}
	return ps, nil
}

// PrefixParams lists the prompts and gates of m's layers for an optimizer.
func PrefixParams(m *llama.Model) []autograd.Param {
	var out []autograd.Param
	for li, l := range m.Layers {
		if p := l.Prefix; p != nil {
			out = append(out, autograd.Param{Name: fmt.Sprintf("blk.%d.adapter.prefix", li), Data: p.P, Grad: p.GradP},
				autograd.Param{Name: fmt.Sprintf("blk.%d.adapter.gate", li), Data: p.Gate, Grad: p.GradGate})
		}
	}
	return out
}

// SavePrefixes writes the adaption prompts of m as safetensors:
// blk.N.adapter.prefix [Len, Dim] and blk.N.adapter.gate [NHeads], F32.
func SavePrefixes(path string, m *llama.Model) error {
	var ts []safetensors.Tensor
	for _, p := range PrefixParams(m) {
		shape := []int64{int64(len(p.Data))}
		if len(p.Data) != m.Config.NHeads {
			shape = []int64{int64(len(p.Data) / m.Config.Dim), int64(m.Config.Dim)}
		}
		t, err := safetensors.FromFloat32(p.Name, safetensors.F32, shape, p.Data)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	return safetensors.WriteFile(path, map[string]string{"format": "herd-llama-adapter"}, ts)
}

var prefixName = regexp.MustCompile(`^blk\.(\d+)\.adapter\.(prefix|gate)$`)

// LoadPrefixes reads adaption prompts SavePrefixes wrote into m's layers.
func LoadPrefixes(path string, m *llama.Model) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c := m.Config
	for _, t := range f.Tensors {
		mm := prefixName.FindStringSubmatch(t.Name)
		if mm == nil {
			return fmt.Errorf("%s: tensor %q is not an adaption prompt", path, t.Name)
		}
		li, _ := strconv.Atoi(mm[1])
		if li >= c.NLayers {
			return fmt.Errorf("%s: %s: the model has %d layers", path, t.Name, c.NLayers)
		}
		v, err := t.Float32()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		p := m.Layers[li].Prefix
		if p == nil {
			p = &autograd.Prefix{Dim: c.Dim}
			m.Layers[li].Prefix = p
		}
		if mm[2] == "gate" {
			if len(v) != c.NHeads {
				return fmt.Errorf("%s: %s has %d gates, the model %d heads", path, t.Name, len(v), c.NHeads)
			}
			p.Gate = v
		} else {
			if len(t.Shape) != 2 || t.Shape[1] != int64(c.Dim) || t.Shape[0] == 0 {
				return fmt.Errorf("%s: %s has shape %v, want [n, %d]", path, t.Name, t.Shape, c.Dim)
			}
			p.P, p.Len = v, int(t.Shape[0])
		}
	}
	for li, l := range m.Layers {
		if p := l.Prefix; p != nil && (p.P == nil || p.Gate == nil) {
			return fmt.Errorf("%s: layer %d has a prompt or a gate but not both", path, li)
		}
	}
	return nil
}
