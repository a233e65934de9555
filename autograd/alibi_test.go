package autograd

import (
	"math"
	"math/rand/v2"
	"testing"
)

// refALiBi is causal attention with ALiBi bias in float64, from the
// definition: softmax_j(q_i·k_j/√d + slope_h·(j − i)) v_j.
func refALiBi(q, k, v []float32, rows, heads, kvh, hd int, slopes []float32) []float64 {
	qd, kvd := heads*hd, kvh*hd
	out := make([]float64, rows*qd)
	for h := range heads {
		g := h / (heads / kvh)
		for i := range rows {
			s := make([]float64, i+1)
			mx := math.Inf(-1)
			for j := range s {
				var d float64
				for x := range hd {
					d += float64(q[i*qd+h*hd+x]) * float64(k[j*kvd+g*hd+x])
				}
				s[j] = d/math.Sqrt(float64(hd)) + float64(slopes[h])*float64(j-i)
				mx = math.Max(mx, s[j])
			}
			var z float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				z += s[j]
			}
			for j := range s {
				for x := range hd {
					out[i*qd+h*hd+x] += s[j] / z * float64(v[j*kvd+g*hd+x])
				}
			}
		}
	}
	return out
}

// TestAttentionALiBi checks ALiBi attention against the float64 reference
// (one pass, and the last rows after a float32 and an F16-free cache of the
// first ones) and its backward against central differences.
func TestAttentionALiBi(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	heads, kvh, hd, rows := 4, 2, 8, 70 // more than one block of 64 keys
	qd, kvd := heads*hd, kvh*hd
	q, gq := randVec(r, rows*qd, 1), make([]float32, rows*qd)
	k, gk := randVec(r, rows*kvd, 1), make([]float32, rows*kvd)
	v, gv := randVec(r, rows*kvd, 1), make([]float32, rows*kvd)
	slopes := []float32{0.5, 0.25, 0.125, 0.0625}
	want := refALiBi(q, k, v, rows, heads, kvh, hd, slopes)
	out := NewVar(rows*qd, false)
	AttentionALiBi(nil, out, &Var{Data: q}, &Var{Data: k}, &Var{Data: v}, []Span{{Row: 0, N: rows}}, heads, kvh, hd, slopes)
	// the last 5 rows again, attending to a cache of all 70 positions
	tail := NewVar(5*qd, false)
	AttentionALiBi(nil, tail, &Var{Data: q[65*qd:]}, nil, nil, []Span{{Row: 0, N: 5, Pos0: 65, K: k, V: v}}, heads, kvh, hd, slopes)
	for i, w := range want {
		if math.Abs(float64(out.Data[i])-w) > 1e-5 {
			t.Fatalf("out[%d] = %g, want %g", i, out.Data[i], w)
		}
		if i >= 65*qd && math.Abs(float64(tail.Data[i-65*qd])-w) > 1e-5 {
			t.Fatalf("cached out[%d] = %g, want %g", i, tail.Data[i-65*qd], w)
		}
	}
	n := 9
	build := func(tp *Tape) *Var {
		o := NewVar(n*qd, true)
		AttentionALiBi(tp, o, &Var{Data: q[:n*qd], Grad: gq[:n*qd]}, &Var{Data: k[:n*kvd], Grad: gk[:n*kvd]},
			&Var{Data: v[:n*kvd], Grad: gv[:n*kvd]}, []Span{{Row: 0, N: n}}, heads, kvh, hd, slopes)
		return o
	}
	checkGrads(t, "AttentionALiBi", build, []leaf{{"q", q[:n*qd], gq[:n*qd]}, {"k", k[:n*kvd], gk[:n*kvd]}, {"v", v[:n*kvd], gv[:n*kvd]}}, 2e-3)
}
