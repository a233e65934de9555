// Package llamaref is an independent float64 LLaMA forward pass for tests
// outside package llama: written plainly from the paper's equations, one
// position after another, with nothing shared with llama's kernels but the
// weights' decoding. Tests compare the real forward against it.
//
// (llama's own tests keep their copy in forward_test.go: a test in
// package llama cannot import this package, which imports llama.)
package llamaref

import (
	"math"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// Model holds a model's weights widened to float64 once.
type Model struct {
	c      llama.Config
	emb    [][]float64
	layers []layer
	out    [][]float64
	norm   []float32
	// F16KV rounds keys and values to F16 as llama's default cache stores
	// them, so the reference sees the values the real pass attends to.
	F16KV bool
}

type layer struct {
	attnNorm, ffnNorm          []float32
	wq, wk, wv, wo, wg, wu, wd [][]float64
}

// New widens m's weights.
func New(m *llama.Model) *Model {
	r := &Model{c: m.Config, emb: mat(m.Embed), out: mat(m.Output), norm: m.OutNorm, F16KV: !m.KVF32}
	for _, l := range m.Layers {
		r.layers = append(r.layers, layer{l.AttnNorm, l.FFNNorm, mat(l.Wq), mat(l.Wk), mat(l.Wv), mat(l.Wo), mat(l.Gate), mat(l.Up), mat(l.Down)})
	}
	return r
}

func mat(l *nn.Linear) [][]float64 {
	w := make([][]float64, l.Out)
	row := make([]float32, l.In)
	for r := range w {
		l.Row(row, r)
		w[r] = make([]float64, l.In)
		for i, v := range row {
			w[r][i] = float64(v)
		}
	}
	return w
}

func mv(w [][]float64, x []float64) []float64 {
	y := make([]float64, len(w))
	for r := range w {
		var s float64
		for i, v := range x {
			s += w[r][i] * v
		}
		y[r] = s
	}
	return y
}

func (r *Model) rmsnorm(x []float64, g []float32) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	s := 1 / math.Sqrt(ss/float64(len(x))+float64(r.c.NormEps))
	y := make([]float64, len(x))
	for i := range x {
		y[i] = x[i] * s * float64(g[i])
	}
	return y
}

// rope rotates each head of x by pos (interleaved pairs, or rotate-half).
func (r *Model) rope(x []float64, heads, pos int) {
	hd := r.c.HeadDim()
	for h := range heads {
		v := x[h*hd : (h+1)*hd]
		for i := range hd / 2 {
			a := float64(pos) * math.Pow(float64(r.c.RopeTheta), -float64(2*i)/float64(hd))
			cs, sn := math.Cos(a), math.Sin(a)
			j0, j1 := 2*i, 2*i+1
			if r.c.Rope == llama.RopeHalf {
				j0, j1 = i, i+hd/2
			}
			x0, x1 := v[j0], v[j1]
			v[j0], v[j1] = x0*cs-x1*sn, x0*sn+x1*cs
		}
	}
}

func f16(v float64) float64 { return float64(tensor.F16ToF32(tensor.F32ToF16(float32(v)))) }

// attend is causal grouped-query attention of position t over 0..t.
func (r *Model) attend(q []float64, k, v [][]float64, t int) []float64 {
	c := r.c
	hd := c.HeadDim()
	att := make([]float64, c.Dim)
	for h := range c.NHeads {
		kh := h / (c.NHeads / c.NKVHeads)
		sc := make([]float64, t+1)
		mx := math.Inf(-1)
		for s := 0; s <= t; s++ {
			for i := range hd {
				sc[s] += q[h*hd+i] * k[s][kh*hd+i]
			}
			sc[s] /= math.Sqrt(float64(hd))
			mx = math.Max(mx, sc[s])
		}
		var sum float64
		for s := range sc {
			sc[s] = math.Exp(sc[s] - mx)
			sum += sc[s]
		}
		for s := range sc {
			for i := range hd {
				att[h*hd+i] += sc[s] / sum * v[s][kh*hd+i]
			}
		}
	}
	return att
}

// Logits runs tokens from position 0 and returns every position's logits.
func (r *Model) Logits(tokens []int) [][]float64 {
	c := r.c
	n := len(tokens)
	x := make([][]float64, n)
	for t, tok := range tokens {
		x[t] = append([]float64(nil), r.emb[tok]...)
	}
	for _, l := range r.layers {
		q, k, v := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for t := range x {
			h := r.rmsnorm(x[t], l.attnNorm)
			q[t], k[t], v[t] = mv(l.wq, h), mv(l.wk, h), mv(l.wv, h)
			r.rope(q[t], c.NHeads, t)
			r.rope(k[t], c.NKVHeads, t)
			if r.F16KV {
				for i := range k[t] {
					k[t][i], v[t][i] = f16(k[t][i]), f16(v[t][i])
				}
			}
		}
		for t := range x {
			o := mv(l.wo, r.attend(q[t], k, v, t))
			for i := range o {
				x[t][i] += o[i]
			}
			h := r.rmsnorm(x[t], l.ffnNorm)
			g, u := mv(l.wg, h), mv(l.wu, h)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := mv(l.wd, g)
			for i := range d {
				x[t][i] += d[i]
			}
		}
	}
	logits := make([][]float64, n)
	for t := range x {
		logits[t] = mv(r.out, r.rmsnorm(x[t], r.norm))
	}
	return logits
}

// LogProb is log softmax(logits)[tok] in float64.
func LogProb(logits []float64, tok int) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, v)
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(v - mx)
	}
	return logits[tok] - mx - math.Log(s)
}

// Continuation is Σ log p(tokens[i] | tokens[:i]) over the last n tokens.
func (r *Model) Continuation(tokens []int, n int) float64 {
	lg := r.Logits(tokens[:len(tokens)-1])
	var s float64
	for i := len(tokens) - n; i < len(tokens); i++ {
		s += LogProb(lg[i-1], tokens[i])
	}
	return s
}
