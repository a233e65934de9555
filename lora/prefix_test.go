package lora

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

var small = llama.Config{Dim: 32, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 64, VocabSize: 30, ContextLen: 32,
	RopeTheta: 10000, NormEps: 1e-5}

func logitsOf(t *testing.T, m *llama.Model, toks []int) []float32 {
	t.Helper()
	var st llama.State
	out, err := m.ForwardBatch(&st, []llama.Seq{{Tokens: toks, All: true}})
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out[0]...)
}

// TestAdapterStartsAtBase: with the gates at zero the logits are the
// base's, bit for bit; moved gates change them; a saved adapter loads back.
func TestAdapterStartsAtBase(t *testing.T) {
	m, err := llama.Random(small, tensor.F32, 1)
	if err != nil {
		t.Fatal(err)
	}
	toks := []int{1, 4, 7, 2, 9, 11}
	base := logitsOf(t, m, toks)
	ps, err := AddPrefixes(m, 5, 1, 3)
	if err != nil || len(ps) != 1 || m.Layers[1].Prefix == nil || m.Layers[0].Prefix != nil {
		t.Fatalf("AddPrefixes: %d prompts, %v", len(ps), err)
	}
	for i, v := range logitsOf(t, m, toks) {
		if v != base[i] {
			t.Fatalf("logit %d: %g with zero gates, base %g", i, v, base[i])
		}
	}
	ps[0].Gate[1] = 0.5
	moved := logitsOf(t, m, toks)
	if moved[3] == base[3] {
		t.Error("a gate of 0.5 changed nothing")
	}
	p := filepath.Join(t.TempDir(), "adapter.safetensors")
	if err := SavePrefixes(p, m); err != nil {
		t.Fatal(err)
	}
	m2, _ := llama.Random(small, tensor.F32, 1)
	if err := LoadPrefixes(p, m2); err != nil {
		t.Fatal(err)
	}
	for i, v := range logitsOf(t, m2, toks) {
		if v != moved[i] {
			t.Fatalf("loaded adapter: logit %d is %g, want %g", i, v, moved[i])
		}
	}
}

// TestAdapterGradient checks the prompts' and gates' gradients against
// central differences.
func TestAdapterGradient(t *testing.T) {
	m, _ := llama.Random(small, tensor.F32, 2)
	ps, _ := AddPrefixes(m, 3, 2, 5)
	r := rand.New(rand.NewPCG(1, 1))
	for _, p := range ps {
		for i := range p.Gate {
			p.Gate[i] = float32(r.NormFloat64())
		}
		for i := range p.P {
			p.P[i] = float32(r.NormFloat64())
		}
	}
	toks := []int{1, 4, 7, 2, 9, 11}
	targets := []int{4, 7, 2, 9, 11, 3}
	loss := func() float64 {
		out := logitsOf(t, m, toks)
		v := small.VocabSize
		var l float64
		for i, tg := range targets {
			row := out[i*v : (i+1)*v]
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
	var st llama.State
	var tape autograd.Tape
	lg, err := m.ForwardTape(&st, &tape, nil, []llama.Seq{{Tokens: toks, All: true}}, llama.TapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	autograd.CrossEntropy(&tape, lg, targets, small.VocabSize, 1)
	tape.Backward()
	for _, p := range PrefixParams(m) {
		for range 4 {
			i := r.IntN(len(p.Data))
			old := p.Data[i]
			const h = 1e-2
			p.Data[i] = old + h
			up := loss()
			p.Data[i] = old - h
			down := loss()
			p.Data[i] = old
			num := (up - down) / (2 * h)
			if math.Abs(num-float64(p.Grad[i])) > 1e-3+0.02*math.Abs(num) {
				t.Errorf("%s[%d]: gradient %g, central difference %g", p.Name, i, p.Grad[i], num)
			}
		}
	}
}

// ParseSpec reads ADAPTER[:SCALE]; a colon not followed by a number is
// part of the path.
func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		path string
		w    float32
		bad  bool
	}{{"a/dir", "a/dir", 1, false}, {"x.gguf:0.5", "x.gguf", 0.5, false}, {"c:/x", "c:/x", 1, false}, {"", "", 0, true}} {
		p, w, err := ParseSpec(c.in)
		if (err != nil) != c.bad || p != c.path || w != c.w {
			t.Errorf("%q: %q %v %v", c.in, p, w, err)
		}
	}
}
