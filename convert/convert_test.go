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
	for _, dir := range []string{"llama_st", "llama_bin", "llama_sharded", "llama_tied_bin", "baichuan_bin", "baichuan2_st", "meta", "falcon7_bin", "falcon40_st"} {
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
func TestFalconIncremental(t *testing.T) {
	for _, dir := range []string{"falcon7_bin", "falcon40_st"} {
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
		var ts llama.State
		var tape autograd.Tape
		lv, err := m.ForwardTape(&ts, &tape, nil, []llama.Seq{{Tokens: ref.Tokens, All: true}}, llama.TapeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkLogits(t, dir+" taped", lv.Data, ref)
	}
}
