package imatrix

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/tensor"
)

func TestWriteRead(t *testing.T) {
	m := &Matrix{Entries: []Entry{{"blk.0.attn_q.weight", 3, []float32{1, 2.5, 0}}, {"blk.0.ffn_down.weight", 7, []float32{4}}},
		LastCall: 7, Dataset: "calib.txt"}
	p := filepath.Join(t.TempDir(), "m.dat")
	if err := m.Write(p); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Entries) != 2 || got.LastCall != 7 || got.Dataset != "calib.txt" || got.Entries[0].Name != m.Entries[0].Name ||
		got.Entries[0].Values[1] != 2.5 || got.Entries[1].NCall != 7 {
		t.Errorf("read back %+v", got)
	}
	if v := got.Means()["blk.0.attn_q.weight"]; v[1] != 2.5/3 {
		t.Errorf("means %v", v)
	}
	b, _ := os.ReadFile(p)
	for _, n := range []int{0, 3, 10, len(b) - 20} {
		if _, err := Parse(b[:n]); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
}

func FuzzParse(f *testing.F) {
	m := &Matrix{Entries: []Entry{{"a", 1, []float32{1, 2}}}, LastCall: 1, Dataset: "x"}
	p := filepath.Join(f.TempDir(), "m.dat")
	if err := m.Write(p); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = Parse(b) })
}

// TestStatistic checks blk.0.attn_q's entry against a float64 computation
// of its input, rmsnorm(embedding)·attn_norm, over the chunks' tokens.
func TestStatistic(t *testing.T) {
	m, _, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	toks := make([]int, 3*40)
	for i := range toks {
		toks[i] = (i*37 + 11) % c.VocabSize
	}
	mat, err := Compute(m, toks, 1, "t", Options{Ctx: 40, UBatch: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(mat.Entries) != 7*c.NLayers || mat.LastCall != 3 {
		t.Fatalf("%d entries, last call %d", len(mat.Entries), mat.LastCall)
	}
	e := mat.Entries[0]
	if e.Name != "blk.0.attn_q.weight" || e.NCall != 6 { // 3 chunks × 2 passes of 20
		t.Fatalf("first entry %s ncall %d", e.Name, e.NCall)
	}
	want := make([]float64, c.Dim)
	row := make([]float32, c.Dim)
	for k := range 3 {
		for p := range 40 {
			tok := toks[k*40+p]
			if p == 0 {
				tok = 1
			}
			m.Embed.Row(row, tok)
			var ss float64
			for _, v := range row {
				ss += float64(v) * float64(v)
			}
			inv := 1 / math.Sqrt(ss/float64(c.Dim)+float64(c.NormEps))
			for j, v := range row {
				x := float64(v) * inv * float64(m.Layers[0].AttnNorm[j])
				want[j] += x * x / 120
			}
		}
	}
	means := mat.Means()["blk.0.attn_q.weight"]
	for j := range want {
		if math.Abs(float64(means[j])-want[j]) > 1e-5*math.Max(1, want[j]) {
			t.Fatalf("column %d: mean square %g, want %g", j, means[j], want[j])
		}
	}
	if _, err := Compute(m, toks[:30], 1, "t", Options{Ctx: 40}); err == nil || !strings.Contains(err.Error(), "shorter than one chunk") {
		t.Errorf("short text: %v", err)
	}
}

// TestAgainstLlamaImatrix compares herd's imatrix with llama-imatrix's on
// the same text and model, when the llama.cpp build is present.
func TestAgainstLlamaImatrix(t *testing.T) {
	peer := "/work/shared/peers/llama"
	if _, err := os.Stat(peer); err != nil {
		t.Skip("no llama.cpp build in /work/shared/peers")
	}
	if testing.Short() {
		t.Skip("runs llama-imatrix")
	}
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model, text := filepath.Join(dir, "f16.gguf"), filepath.Join(dir, "calib.txt")
	if err := checkpoint.SaveGGUF(model, m, tok, checkpoint.SaveOptions{DType: tensor.F16, Convert: true}); err != nil {
		t.Fatal(err)
	}
	story := strings.Repeat("Once upon a time, there was a little girl named Lily. She loved to play with her red ball in the park. ", 40)
	if err := os.WriteFile(text, []byte(story), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "llama.dat")
	cmd := exec.Command(peer, "imatrix", "-m", model, "-f", text, "-o", out, "-c", "128", "--chunks", "4", "-t", "2")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("llama imatrix: %v\n%s", err, b)
	}
	theirs, err := Read(out)
	if err != nil {
		t.Fatal(err)
	}
	fm, ftok, err := checkpoint.Load(model, "")
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	ours, err := Compute(fm, ftok.Encode(story, true, false), ftok.BOS(), text, Options{Ctx: 128, Chunks: 4})
	if err != nil {
		t.Fatal(err)
	}
	tm := map[string]Entry{}
	for _, e := range theirs.Entries {
		tm[e.Name] = e
	}
	if len(theirs.Entries) != len(ours.Entries) || theirs.LastCall != ours.LastCall {
		t.Fatalf("llama-imatrix: %d entries after %d chunks, herd %d after %d", len(theirs.Entries), theirs.LastCall, len(ours.Entries), ours.LastCall)
	}
	var worst float64
	for _, e := range ours.Entries {
		f, ok := tm[e.Name]
		if !ok || f.NCall != e.NCall || len(f.Values) != len(e.Values) {
			t.Fatalf("%s: llama-imatrix has %v (ncall %d), herd ncall %d", e.Name, ok, f.NCall, e.NCall)
		}
		for i, v := range e.Values {
			r := math.Abs(float64(v-f.Values[i])) / math.Max(1e-6, math.Abs(float64(f.Values[i])))
			worst = max(worst, r)
		}
	}
	// llama.cpp multiplies F16 weights with activations rounded to F16,
	// herd in float32, so later layers' inputs differ in the fourth digit
	if worst > 5e-3 {
		t.Errorf("worst relative difference from llama-imatrix %.3g", worst)
	}
	t.Logf("worst relative difference from llama-imatrix: %.3g", worst)
}

func TestApplyErrors(t *testing.T) {
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f16.gguf")
	if err := checkpoint.SaveGGUF(path, m, tok, checkpoint.SaveOptions{DType: tensor.F16, Convert: true}); err != nil {
		t.Fatal(err)
	}
	in, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bad := &Matrix{Entries: []Entry{{"blk.0.attn_q.weight", 1, make([]float32, 10)}}}
	opt := quant.Options{Type: quant.MostlyQ4_0}
	if _, err := Apply(&opt, in, bad, "x.dat"); err == nil || !strings.Contains(err.Error(), "has 10 values") {
		t.Errorf("short entry: %v", err)
	}
	nan := &Matrix{Entries: []Entry{{"blk.0.attn_q.weight", 1, []float32{float32(math.NaN())}}}}
	if _, err := Apply(&opt, in, nan, "x.dat"); err == nil || !strings.Contains(err.Error(), "non-finite") {
		t.Errorf("NaN entry: %v", err)
	}
}
