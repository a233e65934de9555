package llama

import (
	"fmt"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// Grads holds dL/dW for the weights of a model, float32, shaped like the
// weights (matrices row-major Out×In). A nil slice is a frozen weight: only
// F32 weights get gradients.
type Grads struct {
	Embed   []float32
	Output  []float32 // the same slice as Embed when the embeddings are tied
	OutNorm []float32
	Layers  []LayerGrads
}

// LayerGrads are the gradients of one block's weights.
type LayerGrads struct {
	AttnNorm, Wq, Wk, Wv, Wo, FFNNorm, Gate, Up, Down []float32
}

// all lists the block's gradients (nil ones included).
func (g LayerGrads) all() [][]float32 {
	return [][]float32{g.AttnNorm, g.Wq, g.Wk, g.Wv, g.Wo, g.FFNNorm, g.Gate, g.Up, g.Down}
}

// NewGrads allocates zeroed gradients for every F32 weight of m (norm gains
// are always float32 and always get one).
func (m *Model) NewGrads() *Grads {
	mat := func(l *nn.Linear) []float32 {
		if l == nil || l.DType != tensor.F32 {
			return nil
		}
		return make([]float32, l.Out*l.In)
	}
	g := &Grads{Embed: mat(m.Embed), OutNorm: make([]float32, len(m.OutNorm)), Layers: make([]LayerGrads, len(m.Layers))}
	if m.Output == m.Embed {
		g.Output = g.Embed
	} else {
		g.Output = mat(m.Output)
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		g.Layers[i] = LayerGrads{AttnNorm: make([]float32, len(l.AttnNorm)), FFNNorm: make([]float32, len(l.FFNNorm))}
		gm := g.Layers[i].Matrices()
		for k, w := range l.Matrices() {
			*gm[k] = mat(*w)
		}
	}
	return g
}

// TrainParams lists the weights of m that g has gradients for, with their
// GGUF names, in GGUF order (token embedding, blocks, output norm, output
// head; a tied head once). Matrices decay; norm gains do not. The matrices'
// Data are float32 views of the weights' bytes, so an optimizer updates the
// model in place: the weights must be writable (see CloneF32).
func (m *Model) TrainParams(g *Grads) []autograd.Param {
	var ps []autograd.Param
	mat := func(l *nn.Linear, grad []float32) {
		if grad != nil {
			ps = append(ps, autograd.Param{Name: l.Name, Data: tensor.F32s(l.Data), Grad: grad, Decay: true})
		}
	}
	vec := func(name string, v, grad []float32) {
		if grad != nil {
			ps = append(ps, autograd.Param{Name: name, Data: v, Grad: grad})
		}
	}
	mat(m.Embed, g.Embed)
	for i := range m.Layers {
		l, lg := &m.Layers[i], &g.Layers[i]
		gs := lg.Matrices()
		for _, t := range l.Tensors(i) {
			switch {
			case t.Mat != nil:
				mat(*t.Mat, *gs[t.Matrix])
			case t.Norm == &l.AttnNorm:
				vec(t.Name, l.AttnNorm, lg.AttnNorm)
			default:
				vec(t.Name, l.FFNNorm, lg.FFNNorm)
			}
		}
	}
	vec(OutNormName, m.OutNorm, g.OutNorm)
	if m.Output != m.Embed {
		mat(m.Output, g.Output)
	}
	return ps
}

// CloneF32 returns a copy of m whose weights are float32 in memory of its
// own (whatever their dtype and wherever they lived, a read-only mapping
// included): a model an optimizer can train. The copy needs no Close.
func (m *Model) CloneF32() (*Model, error) {
	conv := func(l *nn.Linear) (*nn.Linear, error) {
		buf := make([]float32, l.Out*l.In)
		rb, err := l.DType.RowBytes(l.In)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
		}
		if err := tensor.Dequantize(l.DType, buf, l.Data[:rb*l.Out]); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
		}
		return nn.NewLinear(l.Name, tensor.F32, l.Out, l.In, tensor.BytesOfF32(buf))
	}
	vec := func(v []float32) []float32 { return append([]float32(nil), v...) }
	c := &Model{Config: m.Config, Layers: make([]Layer, len(m.Layers)), OutNorm: vec(m.OutNorm), OutNormB: vec(m.OutNormB)}
	var err error
	if c.Embed, err = conv(m.Embed); err != nil {
		return nil, err
	}
	if m.Output == m.Embed {
		c.Output = c.Embed
	} else if c.Output, err = conv(m.Output); err != nil {
		return nil, err
	}
	for i := range m.Layers {
		s, d := &m.Layers[i], &c.Layers[i]
		d.layerIndex = i
		d.AttnNorm, d.FFNNorm = vec(s.AttnNorm), vec(s.FFNNorm)
		d.AttnNormB, d.FFNNormB = vec(s.AttnNormB), vec(s.FFNNormB)
		dm := d.Matrices()
		for k, w := range s.Matrices() {
			if *w == nil { // a GELU block has no gate
				continue
			}
			if *dm[k], err = conv(*w); err != nil {
				return nil, err
			}
		}
	}
	return c, c.check()
}
