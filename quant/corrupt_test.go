package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

const corpusBase = "../format/gguf/testdata/stories260K-llamacpp.gguf"

// corruptions derives damaged copies of a real GGUF file: truncations,
// random byte flips (most in the header, metadata and tensor infos, where
// the structure is, some in the weights), and targeted edits of the
// integers a loader trusts (each tensor's first dim set to 0, 1 or a huge
// value; hyperparameters zeroed). Deterministic for a seed.
func corruptions(data []byte, seed uint64) map[string][]byte {
	out := map[string][]byte{}
	rng := rand.New(rand.NewPCG(seed, 1))
	f, err := gguf.Parse("base", data)
	if err != nil {
		panic(err)
	}
	dataStart := int(f.DataOffset) // the header region is before it
	for i := 0; i < 25; i++ {
		n := rng.IntN(len(data))
		if i < 15 {
			n = rng.IntN(dataStart)
		}
		out[fmt.Sprintf("truncate-%d", n)] = data[:n]
	}
	for i := 0; i < 120; i++ {
		b := bytes.Clone(data)
		at := rng.IntN(dataStart)
		if i%6 == 5 {
			at = dataStart + rng.IntN(len(data)-dataStart)
		}
		b[at] ^= byte(1 + rng.IntN(255))
		out[fmt.Sprintf("flip-%d", at)] = b
	}
	// the u64 dims of every tensor info, found by the name that precedes them
	for _, t := range f.Tensors {
		name := append(binary.LittleEndian.AppendUint64(nil, uint64(len(t.Name))), t.Name...)
		at := bytes.Index(data, name)
		if at < 0 {
			continue
		}
		dim := at + len(name) + 4 // after the u32 dim count
		for _, v := range []uint64{0, 1, 1 << 40} {
			b := bytes.Clone(data)
			binary.LittleEndian.PutUint64(b[dim:], v)
			out[fmt.Sprintf("%s-dim0=%d", t.Name, v)] = b
		}
	}
	// the u32 hyperparameters, zeroed
	for _, key := range []string{"llama.embedding_length", "llama.block_count", "llama.attention.head_count",
		"llama.feed_forward_length", "llama.context_length", "llama.attention.head_count_kv"} {
		k := append(binary.LittleEndian.AppendUint64(nil, uint64(len(key))), key...)
		if at := bytes.Index(data, k); at >= 0 {
			b := bytes.Clone(data)
			binary.LittleEndian.PutUint32(b[at+len(k)+4:], 0) // after the u32 value type
			out[key+"=0"] = b
		}
	}
	return out
}

// quantizeSafely runs File, turning a panic into an error that says so.
func quantizeSafely(path, out string) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("panic: %v", r), true
		}
	}()
	in, err := gguf.Open(path)
	if err != nil {
		return err, false
	}
	defer in.Close()
	_, err = File(in, out, Options{Type: MostlyQ8_0, Threads: 2})
	return err, false
}

// TestCorruptedInputs quantizes about 200 damaged copies of a real model:
// each must be refused with an error or give a file that herd's loader
// (model and tokenizer, as herd run loads them) accepts; none may panic.
// Before quantize validated its input, a zero dimension divided by zero
// and damaged hyperparameters were copied into files herd run refused.
func TestCorruptedInputs(t *testing.T) {
	data, err := os.ReadFile(corpusBase)
	if err != nil {
		t.Skipf("%s: %v", corpusBase, err)
	}
	dir := t.TempDir()
	cases := corruptions(data, 21)
	var refused, written int
	for name, b := range cases {
		in := filepath.Join(dir, "in.gguf")
		out := filepath.Join(dir, "out.gguf")
		os.Remove(out)
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
		err, panicked := quantizeSafely(in, out)
		if panicked {
			t.Errorf("%s: quantize panicked: %v", name, err)
			continue
		}
		if err != nil {
			refused++
			if _, statErr := os.Stat(out); statErr == nil {
				t.Errorf("%s: refused (%v) but wrote %s", name, err, out)
			}
			continue
		}
		written++
		if err := loadLikeRun(out); err != nil {
			t.Errorf("%s: quantize wrote a file herd cannot load: %v", name, err)
		}
	}
	t.Logf("%d corrupted inputs: %d refused, %d quantized to loadable files", len(cases), refused, written)
	if len(cases) < 150 {
		t.Errorf("only %d distinct corruptions", len(cases))
	}
}

// tinyModel is a 1-layer LLaMA of width 32 in F16 without a tokenizer
// (a few kilobytes: small enough for the fuzzer to mutate quickly).
func tinyModel(t testing.TB) []byte {
	c := llama.Config{Dim: 32, NLayers: 1, NHeads: 2, NKVHeads: 1, FFNDim: 32, VocabSize: 8, ContextLen: 16,
		RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.RandomInit(c, tensor.F16, 3, llama.InitOptions{Std: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := checkpoint.SaveGGUF(path, m, nil, checkpoint.SaveOptions{Name: "tiny"}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// loadLikeRun opens a quantized file as herd run does: the model, and its
// tokenizer when the file carries one (otherwise herd run needs
// --tokenizer, and the model alone must load).
func loadLikeRun(path string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	_, hasTok := f.Get("tokenizer.ggml.model")
	f.Close()
	if !hasTok {
		m, err := llama.Open(path)
		if err == nil {
			m.Close()
		}
		return err
	}
	m, _, err := checkpoint.Load(path, "")
	if err == nil {
		m.Close()
	}
	return err
}

// FuzzFile quantizes arbitrary bytes that parse as GGUF: File must return
// an error or write a file herd's loader accepts, and never panic.
func FuzzFile(f *testing.F) {
	tiny := tinyModel(f)
	f.Add(tiny)
	i := 0
	for _, b := range corruptions(tiny, 7) {
		if i++; i%4 == 0 {
			f.Add(b)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := gguf.Parse("fuzz.gguf", b)
		if err != nil {
			return
		}
		out := filepath.Join(dir, "out.gguf")
		os.Remove(out)
		if _, err := File(in, out, Options{Type: MostlyQ8_0, Threads: 1}); err != nil {
			return
		}
		if err := loadLikeRun(out); err != nil {
			t.Fatalf("quantize wrote a file herd cannot load: %v", err)
		}
	})
}
