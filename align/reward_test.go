package align

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/autograd"
)

// The reward model's gradient (trunk and head, full and LoRA) by central
// differences of the Bradley–Terry loss, with a margin column; and the
// taped pass's loss equals the batched scoring's.
func TestRewardModelGradient(t *testing.T) {
	for _, method := range []string{"full", "lora"} {
		m := tinyModel(t, 31)
		var pol *Policy
		var params []autograd.Param
		if method == "full" {
			g := m.NewGrads()
			pol = &Policy{Model: m, Grads: g}
			params = m.TrainParams(g)
		} else {
			pol = loraPolicy(t, m)
			params = pol.Adapters.Params()
			r := rand.New(rand.NewPCG(32, 33))
			for _, q := range params {
				for i := range q.Data {
					q.Data[i] = float32(r.NormFloat64() * 0.3)
				}
			}
		}
		ss := tinyPairs(4, 34)
		ss[1].Margin = 0.7
		rm := &RewardModel{Policy: pol, Head: NewHead(tinyConfig.Dim, 35), Train: ss, Batch: 4}
		for i := range rm.Head {
			rm.Head[i] *= 20 // a head that matters
		}
		if err := rm.Init(); err != nil {
			t.Fatal(err)
		}
		params = append(params, rm.HeadParam())
		for _, p := range params {
			clear(p.Grad)
		}
		var tape autograd.Tape
		st, err := rm.Step(&tape, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		tape.Backward()
		loss := func() float64 {
			e, err := rm.Evaluate(ss, 0)
			if err != nil {
				t.Fatal(err)
			}
			return e.Sum / float64(e.Count)
		}
		if l := loss(); math.Abs(l-st.Sum/float64(st.Count)) > 1e-5 {
			t.Errorf("%s: taped loss %.8g, scored %.8g", method, st.Sum/float64(st.Count), l)
		}
		const h = 1e-2
		for _, pr := range append(probes(params, 10, 36), probe{rm.HeadParam(), 3}, probe{rm.HeadParam(), 11}) {
			v := pr.p.Data[pr.i]
			pr.p.Data[pr.i] = v + h
			hi := loss()
			pr.p.Data[pr.i] = v - h
			lo := loss()
			pr.p.Data[pr.i] = v
			fd, g := (hi-lo)/(2*h), float64(pr.p.Grad[pr.i])
			if math.Abs(fd-g) > 2e-4+2e-2*math.Abs(fd) {
				t.Errorf("%s: %s[%d]: gradient %.6g, central difference %.6g", method, pr.p.Name, pr.i, g, fd)
			}
		}
	}
}
