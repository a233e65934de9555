package imatrix

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/tensor"
)

// randomF16 writes a random 256-wide model of layers blocks with the
// embedded tok512 vocabulary as F16 GGUF (the same bytes on every run).
func randomF16(t *testing.T, dir string, layers int) string {
	t.Helper()
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := llama.Config{Dim: 256, NLayers: layers, NHeads: 4, NKVHeads: 4, FFNDim: 512, VocabSize: 512, ContextLen: 128,
		RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.Random(c, tensor.F32, 5)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, fmt.Sprintf("f16-%d.gguf", layers))
	if err := checkpoint.SaveGGUF(model, m, tok, checkpoint.SaveOptions{DType: tensor.F16, Convert: true}); err != nil {
		t.Fatal(err)
	}
	return model
}

// goldenSHA256 are the SHA-256 sums of llama-quantize's output (llama.cpp
// c392e50: `llama quantize --imatrix testdata/imatrix-256.dat F16 OUT TYPE
// 2`, run in this directory) for randomF16(dir, 1) and
// testdata/imatrix-256.dat, which llama-imatrix computed on that model
// (see testdata/README.md).
var goldenSHA256 = map[string]string{
	"Q4_K_M": "c28c238177433c7e7f522e6e7c97d93564859b27cd504847ad809482ae26acc5",
	"Q3_K_M": "d75907cf96f7c0f9c6bd661d6d5c80489be5445d449d0faf033023618d29c0ed",
	"IQ4_NL": "c9e00c931b50f2a85068ebd979b14b53b04bcb3e1c910cbf60463ab496a37c3d",
	"Q4_0":   "4d8f65cfa3b3f576ee69b09c887be8bdc9a4a35cd65646db907b00b27ad05fba",
	"Q2_K":   "66348eca117c96e951020b278b14aafe025831d5df5328bb8c84fdb284bb8e18",
	"Q5_K_M": "da6d134a0664c5587cd64e44fb00c0a95a86e084ddc27ec5af0b79f9e33211a5",
	"Q6_K":   "c694217ebed3e8e2423a809e9ab436776bf1c95ebb57de6c6cfbd240cd2eb053",
}

// TestGoldenWeightedQuantize checks herd's imatrix-weighted files against
// llama-quantize's recorded hashes, without the llama.cpp build.
func TestGoldenWeightedQuantize(t *testing.T) {
	const imat = "testdata/imatrix-256.dat"
	mat, err := Read(imat)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, err := gguf.Open(randomF16(t, dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if len(goldenSHA256) == 0 {
		t.Fatal("no golden hashes")
	}
	for name, want := range goldenSHA256 {
		ft, err := quant.ParseFileType(name)
		if err != nil {
			t.Fatal(err)
		}
		opt := quant.Options{Type: ft, Threads: 2}
		check, err := Apply(&opt, in, mat, imat)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+".gguf")
		if _, err := quant.File(in, out, opt); err != nil {
			t.Fatal(err)
		}
		if err := check(); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != want {
			t.Errorf("%s: SHA-256 %s, llama-quantize's %s", name, got, want)
		}
	}
}

// TestByteIdenticalToLlamaQuantize quantizes one F16 model with one
// llama-imatrix file both with herd and with llama-quantize --imatrix and
// compares the files byte for byte, when the llama.cpp build is present.
// The model is random, 256 wide (so the k-quants apply to every matrix),
// with the embedded tok512 vocabulary.
func TestByteIdenticalToLlamaQuantize(t *testing.T) {
	peer := "/work/shared/peers/llama"
	if _, err := os.Stat(peer); err != nil {
		t.Skip("no llama.cpp build in /work/shared/peers")
	}
	if testing.Short() {
		t.Skip("runs llama-imatrix and llama-quantize")
	}
	dir := t.TempDir()
	model, text, imat := randomF16(t, dir, 4), filepath.Join(dir, "calib.txt"), filepath.Join(dir, "imatrix.dat")
	story := strings.Repeat("Tom had a big dog named Max. Every day they ran to the lake and played with a stick. ", 30)
	if err := os.WriteFile(text, []byte(story), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) {
		if b, err := exec.Command(peer, args...).CombinedOutput(); err != nil {
			t.Fatalf("llama %s: %v\n%s", args[0], err, b)
		}
	}
	run("imatrix", "-m", model, "-f", text, "-o", imat, "-c", "64", "--chunks", "4", "-t", "2")
	mat, err := Read(imat)
	if err != nil {
		t.Fatal(err)
	}
	in, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for _, name := range []string{"Q4_K_M", "Q3_K_M", "IQ4_NL", "Q4_0", "Q2_K"} {
		ft, err := quant.ParseFileType(name)
		if err != nil {
			t.Fatal(err)
		}
		ours, theirs := filepath.Join(dir, "herd-"+name+".gguf"), filepath.Join(dir, "llama-"+name+".gguf")
		opt := quant.Options{Type: ft, Threads: 2}
		check, err := Apply(&opt, in, mat, imat)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := quant.File(in, ours, opt); err != nil {
			t.Fatal(err)
		}
		if err := check(); err != nil {
			t.Fatal(err)
		}
		run("quantize", "--imatrix", imat, model, theirs, name, "2")
		a, _ := os.ReadFile(ours)
		b, _ := os.ReadFile(theirs)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: herd's file (%d bytes) differs from llama-quantize's (%d bytes)", name, len(a), len(b))
		}
	}
}

// TestAgreesWithRecordedLlamaImatrix computes herd's imatrix on the model
// and text testdata/imatrix-256.dat was computed on by llama-imatrix and
// compares them (float tolerance: llama.cpp rounds activations to F16 in
// its F16 products, herd does not).
func TestAgreesWithRecordedLlamaImatrix(t *testing.T) {
	theirs, err := Read("testdata/imatrix-256.dat")
	if err != nil {
		t.Fatal(err)
	}
	m, tok, err := checkpoint.Load(randomF16(t, t.TempDir(), 1), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	text := strings.Repeat("Tom had a big dog named Max. Every day they ran to the lake and played with a stick. ", 30) + "\n"
	ours, err := Compute(m, tok.Encode(text, true, false), tok.BOS(), theirs.Dataset, Options{Ctx: 64, Chunks: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(ours.Entries) != len(theirs.Entries) || ours.LastCall != theirs.LastCall {
		t.Fatalf("herd: %d entries after %d chunks, llama-imatrix %d after %d", len(ours.Entries), ours.LastCall, len(theirs.Entries), theirs.LastCall)
	}
	tm := map[string]Entry{}
	for _, e := range theirs.Entries {
		tm[e.Name] = e
	}
	var worst float64
	for _, e := range ours.Entries {
		f := tm[e.Name]
		if f.NCall != e.NCall || len(f.Values) != len(e.Values) {
			t.Fatalf("%s: ncall %d / %d values, llama-imatrix %d / %d", e.Name, e.NCall, len(e.Values), f.NCall, len(f.Values))
		}
		for i, v := range e.Values {
			worst = max(worst, math.Abs(float64(v-f.Values[i]))/math.Max(1e-6, math.Abs(float64(f.Values[i]))))
		}
	}
	if worst > 5e-3 {
		t.Errorf("worst relative difference from llama-imatrix %.3g", worst)
	}
	t.Logf("worst relative difference from llama-imatrix: %.3g", worst)
}
