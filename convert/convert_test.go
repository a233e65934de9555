package convert

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
)

// reference is a directory's reference.json and logits.f64 (testdata/make.py).
type reference struct {
	Tokens []int `json:"tokens"`
	Rows   int   `json:"rows"`
	Vocab  int   `json:"vocab"`
	logits []float64
}

func readReference(t *testing.T, dir string) reference {
	t.Helper()
	var r reference
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "logits.f64"))
	if err != nil {
		t.Fatal(err)
	}
	r.logits = make([]float64, len(raw)/8)
	for i := range r.logits {
		r.logits[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	if len(r.logits) != r.Rows*r.Vocab {
		t.Fatalf("%s: %d logits for %d×%d", dir, len(r.logits), r.Rows, r.Vocab)
	}
	return r
}

// logitsOf runs m over tokens (float32 KV cache) and returns every row.
func logitsOf(t *testing.T, m *llama.Model, tokens []int) []float32 {
	t.Helper()
	m.KVF32 = true
	var s llama.State
	out, err := m.Forward(&s, m.NewKVCache(len(tokens)), tokens, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out...)
}

// checkLogits compares logits with the float64 reference: every element
// within 1e-5 of the largest reference logit's magnitude.
func checkLogits(t *testing.T, what string, got []float32, ref reference) {
	t.Helper()
	if len(got) != len(ref.logits) {
		t.Fatalf("%s: %d logits, want %d", what, len(got), len(ref.logits))
	}
	var scale, worst float64
	for _, x := range ref.logits {
		scale = math.Max(scale, math.Abs(x))
	}
	for i, x := range ref.logits {
		worst = math.Max(worst, math.Abs(float64(got[i])-x))
	}
	t.Logf("%s: max error %.3g of the largest logit %.3g", what, worst/scale, scale)
	if worst > 1e-5*scale {
		t.Errorf("%s: max |herd - torch| = %.3g, %.3g of the largest logit %.3g (want ≤ 1e-5)", what, worst, worst/scale, scale)
	}
}

// TestLogitsEqualTorch opens each reference checkpoint, in every layout,
// and checks herd's logits against the float64 PyTorch forward pass of the
// architecture's published definition (testdata/make.py).
func TestLogitsEqualTorch(t *testing.T) {
	for _, dir := range []string{"llama_st", "llama_bin", "llama_sharded", "llama_tied_bin", "baichuan_bin", "baichuan2_st", "meta", "falcon7_bin", "falcon40_st", "baichuan13_bin",
		"llama_bf16_bin", "llama_f16_st"} {
		t.Run(dir, func(t *testing.T) {
			p := filepath.Join("testdata", dir)
			ref := readReference(t, p)
			src, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			m, err := src.Model()
			if err != nil {
				t.Fatal(err)
			}
			checkLogits(t, dir, logitsOf(t, m, ref.Tokens), ref)
		})
	}
}

// TestFalconIncremental: the parallel block decodes token by token (KV
// cache, shared inference buffers) to the logits of the one-pass forward,
// and a taped pass gives the same logits too.
func TestIncremental(t *testing.T) {
	for _, dir := range []string{"falcon7_bin", "falcon40_st", "baichuan13_bin"} {
		p := filepath.Join("testdata", dir)
		ref := readReference(t, p)
		src, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := src.Model()
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		m.KVF32 = true
		var s llama.State
		cache := m.NewKVCache(len(ref.Tokens))
		var got []float32
		for i, tok := range ref.Tokens {
			out, err := m.Forward(&s, cache, []int{tok}, i, false)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, out...)
		}
		checkLogits(t, dir+" incremental", got, ref)
		// with the default F16 cache (keys and values rounded once): close
		m.KVF32 = false
		f16, err := m.Forward(&s, m.NewKVCache(len(ref.Tokens)), ref.Tokens, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range f16 {
			if math.Abs(float64(x)-ref.logits[i]) > 1e-2*(1+math.Abs(ref.logits[i])) {
				t.Fatalf("%s: F16 cache logit %d = %g, torch %g", dir, i, x, ref.logits[i])
			}
		}
		m.KVF32 = true
		var ts llama.State
		var tape autograd.Tape
		lv, err := m.ForwardTape(&ts, &tape, nil, []llama.Seq{{Tokens: ref.Tokens, All: true}}, llama.TapeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkLogits(t, dir+" taped", lv.Data, ref)
	}
}

// TestFalconGradient checks the gradient of every Falcon matrix and norm
// gain (the taped parallel block) against central differences of the
// inference pass's loss.
func TestFalconGradient(t *testing.T) {
	src, err := Open("testdata/falcon40_st")
	if err != nil {
		t.Fatal(err)
	}
	m, err := src.Model()
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	m.KVF32 = true
	toks, targets := []int{1, 5, 9, 3, 17}, []int{5, 9, 3, 17, 2}
	loss := func() float64 {
		var s llama.State
		out, err := m.Forward(&s, m.NewKVCache(len(toks)), toks, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		var l float64
		v := m.Config.VocabSize
		for p, tg := range targets {
			row := out[p*v : (p+1)*v]
			mx := math.Inf(-1)
			for _, x := range row {
				mx = math.Max(mx, float64(x))
			}
			var z float64
			for _, x := range row {
				z += math.Exp(float64(x) - mx)
			}
			l += math.Log(z) + mx - float64(row[tg])
		}
		return l
	}
	g := m.NewGrads()
	var s llama.State
	var tape autograd.Tape
	logits, err := m.ForwardTape(&s, &tape, g, []llama.Seq{{Tokens: toks, All: true}}, llama.TapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	autograd.CrossEntropy(&tape, logits, targets, m.Config.VocabSize, 1)
	tape.Backward()
	for _, p := range m.TrainParams(g) {
		var worst, big float64
		for _, i := range []int{0, len(p.Data) / 3, len(p.Data) - 1} {
			v := p.Data[i]
			const h = 1e-2
			p.Data[i] = v + h
			lp := loss()
			p.Data[i] = v - h
			lm := loss()
			p.Data[i] = v
			fd := (lp - lm) / (2 * h)
			worst = math.Max(worst, math.Abs(fd-float64(p.Grad[i])))
			big = math.Max(big, math.Abs(fd))
		}
		if worst > 1e-2*math.Max(big, 1e-2) {
			t.Errorf("%s: gradient differs from finite differences by %.3g (largest %.3g)", p.Name, worst, big)
		}
	}
}
