package lora

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// Weighted is an adapter set and the weight its change is merged with.
type Weighted struct {
	Set    *Set
	Weight float32
}

// Undo holds the weights a merge replaced, so Unmerge can put back the
// very bytes.
type Undo struct {
	saved []saved
}

type saved struct {
	l     *nn.Linear
	dtype tensor.DType
	data  []byte
}

// Unmerge restores every weight the merge changed, bit for bit.
func (u *Undo) Unmerge() {
	for _, s := range u.saved {
		s.l.DType, s.l.Data = s.dtype, s.data
	}
	u.saved = nil
}

// Options choose how several adapters combine.
type Options struct {
	// TIES merges the adapters' changes with TIES-merging (Yadav et al.
	// 2023) instead of summing them: each change is trimmed to its Density
	// share of largest magnitudes, every element takes the sign of the
	// trimmed changes' sum, and the changes that agree with it are
	// averaged (each scaled by its weight first).
	TIES    bool
	Density float64 // of TIES, in (0, 1]
}

// Merge adds the weighted changes of the sets into m's weights: W' = W +
// Σ weight·scale·B·A (or their TIES combination). Each changed weight is
// expanded to float32, changed, and stored back in its own dtype (a
// quantized weight is requantized: the cost is the caller's to measure) in
// new memory; the returned Undo restores the originals exactly.
func Merge(m *llama.Model, sets []Weighted, opt Options) (*Undo, error) {
	if opt.TIES && !(opt.Density > 0 && opt.Density <= 1) {
		return nil, fmt.Errorf("lora: TIES density %g must be in (0, 1]", opt.Density)
	}
	type target struct {
		layer  int
		module string
	}
	deltas := map[target][][]float32{}
	var order []target
	for _, ws := range sets {
		if err := ws.Set.check(m); err != nil {
			return nil, err
		}
		for _, a := range ws.Set.Adapters {
			d := a.Delta()
			for i := range d {
				d[i] *= ws.Weight
			}
			k := target{a.Layer, a.Module}
			if _, ok := deltas[k]; !ok {
				order = append(order, k)
			}
			deltas[k] = append(deltas[k], d)
		}
	}
	u := &Undo{}
	for _, k := range order {
		l := module(&m.Layers[k.layer], k.module)
		var d []float32
		if opt.TIES {
			d = ties(deltas[k], opt.Density)
		} else {
			d = deltas[k][0]
			for _, o := range deltas[k][1:] {
				for i, v := range o {
					d[i] += v
				}
			}
		}
		w := make([]float32, l.Out*l.In)
		if err := tensor.Dequantize(l.DType, w, l.Data); err != nil {
			u.Unmerge()
			return nil, fmt.Errorf("lora: %s: %w", l.Name, err)
		}
		for i, v := range d {
			w[i] += v
		}
		rb, _ := l.DType.RowBytes(l.In)
		out := make([]byte, rb*l.Out)
		for r := range l.Out {
			if err := tensor.Quantize(l.DType, out[r*rb:(r+1)*rb], w[r*l.In:(r+1)*l.In]); err != nil {
				u.Unmerge()
				return nil, fmt.Errorf("lora: %s: %w", l.Name, err)
			}
		}
		u.saved = append(u.saved, saved{l, l.DType, l.Data})
		l.Data = out
	}
	return u, nil
}

// ties is TIES-merging of changes: trim, elect sign, disjoint mean.
func ties(ds [][]float32, density float64) []float32 {
	n := len(ds[0])
	keep := max(1, int(math.Ceil(density*float64(n))))
	for _, d := range ds {
		if keep >= n {
			break
		}
		mags := make([]float32, n)
		for i, v := range d {
			mags[i] = float32(math.Abs(float64(v)))
		}
		slices.SortFunc(mags, func(a, b float32) int { return cmp.Compare(b, a) })
		thr := mags[keep-1]
		for i, v := range d {
			if float32(math.Abs(float64(v))) < thr {
				d[i] = 0
			}
		}
	}
	out := make([]float32, n)
	for i := range out {
		var sum float64
		for _, d := range ds {
			sum += float64(d[i])
		}
		var acc float64
		cnt := 0
		for _, d := range ds {
			if v := float64(d[i]); v != 0 && (v > 0) == (sum > 0) {
				acc += v
				cnt++
			}
		}
		if cnt > 0 {
			out[i] = float32(acc / float64(cnt))
		}
	}
	return out
}
