package autograd

import "math"

// Prefix is LLaMA-Adapter's adaption prompt for one layer (Zhang et al.
// 2023): Len learnable tokens P (Len×Dim) whose keys and values, made by
// the layer's own frozen Wk and Wv (without RoPE: they have no position),
// every query also attends to in a softmax of their own, the result added
// to the attention output scaled per head by tanh(Gate). The gate starts
// at zero, so training starts from the base model's exact outputs.
// GradP and GradGate receive the gradients when not nil.
type Prefix struct {
	Len, Dim        int
	P, Gate         []float32 // Len×Dim; one per query head
	GradP, GradGate []float32
}

// PrefixAttention adds p's gated attention to out (nt rows of
// nHeads·headDim) for the queries q (after RoPE), with wk and wv the
// layer's key and value projections.
func PrefixAttention(t *Tape, out, q *Var, p *Prefix, wk, wv Weight, nt, nHeads, nKVHeads, headDim int) {
	kvd := nKVHeads * headDim
	qd := nHeads * headDim
	pv := &Var{Data: p.P, Grad: p.GradP}
	kp, vp := NewVar(p.Len*kvd, t != nil), NewVar(p.Len*kvd, t != nil)
	wk.Grad, wv.Grad = nil, nil // frozen
	Linear(t, kp, pv, wk, p.Len)
	Linear(t, vp, pv, wv, p.Len)
	group := nHeads / nKVHeads
	scale := 1 / math.Sqrt(float64(headDim))
	probs := make([]float32, nt*nHeads*p.Len) // softmax weights
	ctx := make([]float32, nt*qd)             // Σ_j a_j v_j, before the gate
	for r := range nt {
		for h := range nHeads {
			qh := q.Data[r*qd+h*headDim : r*qd+(h+1)*headDim]
			kh := (h / group) * headDim
			a := probs[(r*nHeads+h)*p.Len : (r*nHeads+h+1)*p.Len]
			mx := math.Inf(-1)
			for j := range p.Len {
				var s float64
				for d, x := range qh {
					s += float64(x) * float64(kp.Data[j*kvd+kh+d])
				}
				s *= scale
				a[j] = float32(s)
				mx = math.Max(mx, s)
			}
			var sum float64
			for j := range a {
				e := math.Exp(float64(a[j]) - mx)
				a[j] = float32(e)
				sum += e
			}
			o := ctx[r*qd+h*headDim : r*qd+(h+1)*headDim]
			for j := range a {
				a[j] = float32(float64(a[j]) / sum)
				for d := range o {
					o[d] += a[j] * vp.Data[j*kvd+kh+d]
				}
			}
			g := float32(math.Tanh(float64(p.Gate[h])))
			if g == 0 {
				continue // exactly the base's output
			}
			dst := out.Data[r*qd+h*headDim : r*qd+(h+1)*headDim]
			for d := range dst {
				dst[d] += g * o[d]
			}
		}
	}
	if t == nil {
		return
	}
	t.Record(func() {
		da := make([]float32, p.Len)
		do := make([]float32, headDim)
		for r := range nt {
			for h := range nHeads {
				kh := (h / group) * headDim
				tg := math.Tanh(float64(p.Gate[h]))
				dout := out.Grad[r*qd+h*headDim : r*qd+(h+1)*headDim]
				o := ctx[r*qd+h*headDim : r*qd+(h+1)*headDim]
				if p.GradGate != nil {
					var s float64
					for d := range dout {
						s += float64(dout[d]) * float64(o[d])
					}
					p.GradGate[h] += float32((1 - tg*tg) * s)
				}
				if tg == 0 {
					continue
				}
				for d := range do {
					do[d] = float32(tg) * dout[d]
				}
				a := probs[(r*nHeads+h)*p.Len : (r*nHeads+h+1)*p.Len]
				var dot float64
				for j := range a {
					var s float64
					for d := range do {
						s += float64(do[d]) * float64(vp.Data[j*kvd+kh+d])
						vp.Grad[j*kvd+kh+d] += a[j] * do[d]
					}
					da[j] = float32(s)
					dot += float64(a[j]) * s
				}
				qh := q.Data[r*qd+h*headDim : r*qd+(h+1)*headDim]
				for j := range a {
					ds := float32(float64(a[j]) * (float64(da[j]) - dot) * scale)
					for d := range qh {
						if q.Grad != nil {
							q.Grad[r*qd+h*headDim+d] += ds * kp.Data[j*kvd+kh+d]
						}
						kp.Grad[j*kvd+kh+d] += ds * qh[d]
					}
				}
			}
		}
	})
}
