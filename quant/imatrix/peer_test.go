package imatrix

import (
	"bytes"
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
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := llama.Config{Dim: 256, NLayers: 4, NHeads: 4, NKVHeads: 4, FFNDim: 512, VocabSize: 512, ContextLen: 128,
		RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.Random(c, tensor.F32, 5)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	model, text, imat := filepath.Join(dir, "f16.gguf"), filepath.Join(dir, "calib.txt"), filepath.Join(dir, "imatrix.dat")
	if err := checkpoint.SaveGGUF(model, m, tok, checkpoint.SaveOptions{DType: tensor.F16, Convert: true}); err != nil {
		t.Fatal(err)
	}
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
