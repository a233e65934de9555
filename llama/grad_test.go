package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/tensor"
)

// refLoss is Σ over the sequences of the cross-entropy of refForward's
// float64 logits against targets (-1 ignored), times scale.
func refLoss(m *Model, seqs [][]int, targets [][]int, scale float64) float64 {
	var l float64
	for i, toks := range seqs {
		logits := refForward(m, toks)
		for p, row := range logits {
			t := targets[i][p]
			if t < 0 {
				continue
			}
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, v)
			}
			var s float64
			for _, v := range row {
				s += math.Exp(v - mx)
			}
			l += math.Log(s) + mx - row[t]
		}
	}
	return scale * l
}

// taped runs ForwardTape, the loss and Backward, returning the gradients.
func taped(t *testing.T, m *Model, seqs, targets [][]int, scale float32, opt TapeOptions) (*Grads, *State, float64) {
	t.Helper()
	var s State
	var tape autograd.Tape
	g := m.NewGrads()
	ss := make([]Seq, len(seqs))
	var tg []int
	for i := range seqs {
		ss[i] = Seq{Tokens: seqs[i], All: true}
		tg = append(tg, targets[i]...)
	}
	logits, err := m.ForwardTape(&s, &tape, g, ss, opt)
	if err != nil {
		t.Fatal(err)
	}
	loss, _ := autograd.CrossEntropy(&tape, logits, tg, m.Config.VocabSize, scale)
	tape.Backward()
	return g, &s, loss
}

// The gradient of the whole model (every weight of a two-layer model with
// grouped-query attention) against central differences of a float64
// reference forward.
func TestModelGradient(t *testing.T) {
	for _, tc := range []struct {
		name string
		rope RopeLayout
		tied bool
	}{{"interleaved", RopeInterleaved, false}, {"half-tied", RopeHalf, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Dim: 16, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 24, VocabSize: 11, ContextLen: 16,
				RopeTheta: 10000, NormEps: 1e-5, Rope: tc.rope, TiedEmbeddings: tc.tied}
			m := randomModel(t, c, tensor.F32)
			// larger weights than 0.02 make every path of the gradient matter
			r := rand.New(rand.NewPCG(5, 6))
			for _, p := range m.TrainParams(m.NewGrads()) {
				if p.Decay {
					for i := range p.Data {
						p.Data[i] = float32(r.NormFloat64() * 0.3)
					}
				}
			}
			seqs := [][]int{{1, 5, 9, 3, 0}, {7, 7, 2, 10}}
			targets := [][]int{{5, 9, 3, -1, 4}, {7, 2, 10, 1}}
			const scale = 0.125
			g, _, loss := taped(t, m, seqs, targets, scale, TapeOptions{})
			if want := refLoss(m, seqs, targets, 1); math.Abs(loss-want) > 1e-4*want {
				t.Fatalf("loss %g, reference %g", loss, want)
			}
			for _, p := range m.TrainParams(g) {
				idx := r.Perm(len(p.Data))
				if len(idx) > 6 {
					idx = idx[:6]
				}
				var worst, big float64
				for _, i := range idx {
					v := p.Data[i]
					const h = 1e-3
					p.Data[i] = v + h
					hp, lp := float64(p.Data[i]), refLoss(m, seqs, targets, scale)
					p.Data[i] = v - h
					hm, lm := float64(p.Data[i]), refLoss(m, seqs, targets, scale)
					p.Data[i] = v
					fd := (lp - lm) / (hp - hm)
					worst = math.Max(worst, math.Abs(fd-float64(p.Grad[i])))
					big = math.Max(big, math.Abs(fd))
				}
				if worst > 2e-3*math.Max(big, 1e-2) {
					t.Errorf("%s: gradient differs from finite differences by %.3g (largest %.3g)", p.Name, worst, big)
				}
			}
		})
	}
}

// The taped pass computes the logits of a batch pass with State.Batch bit
// for bit, and those of inference (decoding's kernels) within rounding;
// recomputation gives the same gradients bit for bit, and the State holds
// what ActivationBytes predicts.
func TestForwardTapeAgreesWithInference(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	seqs := [][]int{{1, 5, 9, 36, 0, 17}, {17, 3, 22}}
	targets := [][]int{{5, 9, 36, 0, 17, 2}, {3, 22, 11}}

	var s State
	var tape autograd.Tape
	batch := []Seq{{Tokens: seqs[0], All: true}, {Tokens: seqs[1], All: true}}
	logits, err := m.ForwardTape(&s, &tape, nil, batch, TapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sb := State{Batch: true}
	same, err := m.ForwardBatch(&sb, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, sq := range seqs {
		var si State
		want, err := m.Forward(&si, m.NewKVCacheType(c.ContextLen, tensor.F32), sq, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		off := 0
		if i == 1 {
			off = len(seqs[0]) * c.VocabSize
		}
		for j, w := range want {
			got := logits.Data[off+j]
			if same[i][j] != got {
				t.Fatalf("sequence %d: taped logit %d = %g, batch pass %g", i, j, got, same[i][j])
			}
			if math.Abs(float64(got-w)) > 1e-5*(1+math.Abs(float64(w))) {
				t.Fatalf("sequence %d: taped logit %d = %g, inference %g", i, j, got, w)
			}
		}
	}

	full, sf, lf := taped(t, m, seqs, targets, 1, TapeOptions{})
	rec, sr, lr := taped(t, m, seqs, targets, 1, TapeOptions{Recompute: true})
	if lf != lr {
		t.Fatalf("loss %g with recomputation, %g without", lr, lf)
	}
	pf, pr := m.TrainParams(full), m.TrainParams(rec)
	for i := range pf {
		for j := range pf[i].Grad {
			if pf[i].Grad[j] != pr[i].Grad[j] {
				t.Fatalf("%s[%d]: gradient %g with recomputation, %g without", pf[i].Name, j, pr[i].Grad[j], pf[i].Grad[j])
			}
		}
	}
	nt := len(seqs[0]) + len(seqs[1])
	for _, x := range []struct {
		s         *State
		recompute bool
	}{{sf, false}, {sr, true}} {
		if got, want := x.s.Bytes(), ActivationBytes(c, nt, x.recompute); got != want {
			t.Errorf("recompute=%v: the state holds %d bytes, ActivationBytes predicts %d", x.recompute, got, want)
		}
	}
	if ActivationBytes(c, nt, true) >= ActivationBytes(c, nt, false) {
		t.Error("recomputation saves no memory")
	}
}

func TestForwardTapeErrors(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	var s State
	var tape autograd.Tape
	for i, seqs := range [][]Seq{
		{{Tokens: []int{1, 2}, All: false}},
		{{Tokens: []int{1, 2}, All: true, Cache: m.NewKVCache(4)}},
		{{Tokens: []int{1, 99}, All: true}},
	} {
		if _, err := m.ForwardTape(&s, &tape, nil, seqs, TapeOptions{}); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
	if _, err := m.ForwardTape(&s, nil, nil, []Seq{{Tokens: []int{1}, All: true}}, TapeOptions{}); err == nil {
		t.Error("a nil tape accepted")
	}
}

func TestRandomInitScalesResidual(t *testing.T) {
	c := Config{Dim: 64, NLayers: 8, NHeads: 4, NKVHeads: 4, FFNDim: 128, VocabSize: 50, ContextLen: 8, RopeTheta: 10000, NormEps: 1e-5}
	m, err := RandomInit(c, tensor.F32, 1, InitOptions{ScaleResidual: true})
	if err != nil {
		t.Fatal(err)
	}
	std := func(b []byte) float64 {
		var s float64
		x := tensor.F32s(b)
		for _, v := range x {
			s += float64(v) * float64(v)
		}
		return math.Sqrt(s / float64(len(x)))
	}
	want := 0.02 / math.Sqrt(2*8)
	for _, l := range m.Layers {
		for _, w := range []struct {
			name string
			got  float64
			want float64
		}{{"wo", std(l.Wo.Data), want}, {"down", std(l.Down.Data), want}, {"wq", std(l.Wq.Data), 0.02}} {
			if math.Abs(w.got-w.want) > 0.05*w.want {
				t.Errorf("%s: std %.5f, want %.5f", w.name, w.got, w.want)
			}
		}
	}
	plain, _ := Random(c, tensor.F32, 1)
	if fmt.Sprint(tensor.F32s(plain.Layers[0].Wq.Data)[:4]) != fmt.Sprint(tensor.F32s(m.Layers[0].Wq.Data)[:4]) {
		t.Error("the option changed the unscaled matrices")
	}
}

func TestCloneF32(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F16)
	f, err := m.CloneF32()
	if err != nil {
		t.Fatal(err)
	}
	var s1, s2 State
	a, _ := m.Forward(&s1, m.NewKVCache(8), []int{1, 2, 3}, 0, true)
	b, _ := f.Forward(&s2, f.NewKVCache(8), []int{1, 2, 3}, 0, true)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-4 {
			t.Fatalf("logit %d: %g from F16, %g from the F32 copy", i, a[i], b[i])
		}
	}
	if f.Embed.DType != tensor.F32 || len(m.TrainParams(m.NewGrads())) != 2*c.NLayers+1 {
		t.Error("F16 matrices should be frozen and the copy F32")
	}
}
