package lora

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

var tiny = llama.Config{Dim: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 128, VocabSize: 40, ContextLen: 32,
	RopeTheta: 10000, NormEps: 1e-5}

// trained returns a model and a set whose B is not zero (as after
// training), so the adapters change the logits.
func trained(t *testing.T, dt tensor.DType, targets []string, rs bool) (*llama.Model, *Set) {
	t.Helper()
	c := tiny
	if dt == tensor.NF4DQ { // rows of whole 256-weight super-blocks
		c.Dim, c.FFNDim, c.NLayers = 256, 256, 1
	}
	m, err := llama.Random(c, tensor.F32, 1)
	if err != nil {
		t.Fatal(err)
	}
	if dt != tensor.F32 {
		if n, _, err := QuantizeBase(m, dt); err != nil || n != 7*c.NLayers {
			t.Fatalf("QuantizeBase: %d converted, %v", n, err)
		}
	}
	s, err := New(m, Config{Rank: 4, Alpha: 8, Targets: targets, RSLoRA: rs}, 2)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, a := range s.Adapters {
		for i := range a.B {
			a.B[i] = float32(r.NormFloat64() * 0.05)
		}
	}
	return m, s
}

var toks = []int{1, 5, 9, 3, 17, 2, 30, 11}

func logits(t *testing.T, m *llama.Model) []float32 {
	t.Helper()
	var st llama.State
	out, err := m.ForwardBatch(&st, []llama.Seq{{Tokens: toks, All: true}})
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out[0]...)
}

func maxRel(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i]-b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den
}

// TestAdapterEqualsMerged: the base carrying the adapters gives the merged
// model's logits; unmerging restores the base's bytes exactly; a fresh set
// (B = 0) leaves the base's logits unchanged.
func TestAdapterEqualsMerged(t *testing.T) {
	m, s := trained(t, tensor.F32, Modules, false)
	base := logits(t, m)
	orig := append([]byte(nil), m.Layers[1].Wq.Data...)
	if err := s.Attach(m, 1); err != nil {
		t.Fatal(err)
	}
	adapted := logits(t, m)
	if maxRel(adapted, base) < 1e-3 {
		t.Fatal("the adapters do not change the logits")
	}
	s.Detach(m)
	if got := logits(t, m); maxRel(got, base) != 0 {
		t.Fatal("detaching did not restore the base")
	}
	u, err := Merge(m, []Weighted{{s, 1}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxRel(logits(t, m), adapted); d > 1e-5 {
		t.Errorf("merged logits differ from base+adapter by %.2g relative (budget 1e-5)", d)
	}
	u.Unmerge()
	if !bytes.Equal(m.Layers[1].Wq.Data, orig) || maxRel(logits(t, m), base) != 0 {
		t.Error("unmerge did not restore the base exactly")
	}
	fresh, _ := New(m, Config{Rank: 2, Alpha: 4, Targets: []string{"q", "v"}}, 9)
	fresh.Attach(m, 1)
	if maxRel(logits(t, m), base) != 0 {
		t.Error("a fresh adapter (B = 0) changed the logits")
	}
}

// TestQuantizedBase: adapters on an NF4 base, and merging into it
// (dequantize, add, requantize).
func TestQuantizedBase(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.NF4, tensor.NF4DQ, tensor.Q4_0, tensor.Q8_0} {
		m, s := trained(t, dt, []string{"q", "k", "v", "o"}, true)
		s.Attach(m, 1)
		adapted := logits(t, m)
		s.Detach(m)
		u, err := Merge(m, []Weighted{{s, 1}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		// requantizing costs 4-bit formats more than 8-bit ones
		budget := 0.3
		if dt == tensor.Q8_0 {
			budget = 0.02
		}
		if d := maxRel(logits(t, m), adapted); d > budget || m.Layers[0].Wq.DType != dt {
			t.Errorf("%s: merged (requantized) logits differ by %.2g relative", dt, d)
		}
		u.Unmerge()
	}
}

// TestFiles: PEFT and GGUF adapters load back to the same logits.
func TestFiles(t *testing.T) {
	m, s := trained(t, tensor.F32, []string{"q", "k", "v", "o", "down"}, true)
	s.Attach(m, 1)
	want := logits(t, m)
	s.Detach(m)
	dir := t.TempDir()
	if err := SavePEFT(filepath.Join(dir, "peft"), s, m.Config, "stories"); err != nil {
		t.Fatal(err)
	}
	if err := SaveGGUF(filepath.Join(dir, "a.gguf"), s); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "peft"), filepath.Join(dir, "a.gguf")} {
		l, err := Load(p, m.Config)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Adapters) != len(s.Adapters) || l.Config.Rank != 4 {
			t.Fatalf("%s: %d adapters of rank %d", p, len(l.Adapters), l.Config.Rank)
		}
		l.Attach(m, 1)
		if d := maxRel(logits(t, m), want); d > 1e-6 {
			t.Errorf("%s: logits differ by %.2g", p, d)
		}
		l.Detach(m)
	}
	// PEFT's q rows are in Hugging Face's order: the B it stored is not ours
	if _, err := LoadPEFT(dir, m.Config); err == nil {
		t.Error("loaded a directory without an adapter")
	}
}

// TestGradient checks the adapters' gradients against central differences
// of the loss.
func TestGradient(t *testing.T) {
	m, s := trained(t, tensor.F32, []string{"q", "v", "gate", "down"}, false)
	s.Attach(m, 1)
	targets := []int{5, 9, 3, 17, 2, 30, 11, -1}
	loss := func() float64 { return seqLoss(t, m, toks, targets) }
	var st llama.State
	var tape autograd.Tape
	lg, err := m.ForwardTape(&st, &tape, nil, []llama.Seq{{Tokens: toks, All: true}}, llama.TapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	autograd.CrossEntropy(&tape, lg, targets, m.Config.VocabSize, 1)
	tape.Backward()
	checkCentralDifferences(t, s.Params(), loss, rand.New(rand.NewPCG(7, 8)))
}

// seqLoss is the summed cross entropy of one sequence's logits against
// targets (negative: not counted), in float64.
func seqLoss(t *testing.T, m *llama.Model, seq, targets []int) float64 {
	var st llama.State
	out, err := m.ForwardBatch(&st, []llama.Seq{{Tokens: seq, All: true}})
	if err != nil {
		t.Fatal(err)
	}
	var l float64
	v := m.Config.VocabSize
	for p, tg := range targets {
		if tg < 0 {
			continue
		}
		row := out[0][p*v : (p+1)*v]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, float64(x))
		}
		var e float64
		for _, x := range row {
			e += math.Exp(float64(x) - mx)
		}
		l += math.Log(e) + mx - float64(row[tg])
	}
	return l
}

// checkCentralDifferences compares three random elements of each
// parameter's gradient with central differences of loss.
func checkCentralDifferences(t *testing.T, params []autograd.Param, loss func() float64, r *rand.Rand) {
	t.Helper()
	for _, p := range params {
		for range 3 {
			i := r.IntN(len(p.Data))
			old := p.Data[i]
			const h = 1e-2
			p.Data[i] = old + h
			up := loss()
			p.Data[i] = old - h
			down := loss()
			p.Data[i] = old
			num := (up - down) / (2 * h)
			if math.Abs(num-float64(p.Grad[i])) > 2e-3+0.02*math.Abs(num) {
				t.Errorf("%s[%d]: gradient %g, central difference %g", p.Name, i, p.Grad[i], num)
			}
		}
	}
}
