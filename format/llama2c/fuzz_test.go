package llama2c

import (
	"bytes"
	"math"
	"os"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// synthetic builds a checkpoint of cfg with deterministic pseudo-random weights.
func synthetic(cfg Config) *Checkpoint {
	c := &Checkpoint{Config: cfg}
	seed := uint32(1)
	for _, f := range cfg.families() {
		for l := 0; l < f.layers; l++ {
			x := make([]float32, f.elems())
			for i := range x {
				seed = seed*1664525 + 1013904223
				x[i] = float32(int32(seed)) / (1 << 33)
			}
			c.Tensors = append(c.Tensors, Tensor{Name: f.tensorName(l), DType: tensor.F32, Dims: f.dims, Data: tensor.BytesOfF32(x)})
		}
	}
	return c
}

// seeds returns small synthetic files of every version and both classifier kinds.
func seeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, cfg := range []Config{
		{Dim: 8, HiddenDim: 12, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 4, SeqLen: 3, SharedClassifier: true},
		{Dim: 8, HiddenDim: 12, NLayers: 2, NHeads: 2, NKVHeads: 2, VocabSize: 4, SeqLen: 2, Version: 1},
		{Dim: 32, HiddenDim: 40, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 3, SeqLen: 2, Version: 2, GroupSize: 32, SharedClassifier: true},
		{Dim: 8, HiddenDim: 12, NLayers: 1, NHeads: 2, NKVHeads: 1, VocabSize: 4, SeqLen: 2, Version: 2, GroupSize: 8},
	} {
		var buf bytes.Buffer
		if _, err := synthetic(cfg).WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

// FuzzParse feeds arbitrary bytes to Parse. Whatever parses as version 0 or
// 1 must write back byte for byte; version 2 must convert to version 1 and
// read back with the same values.
func FuzzParse(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	for _, path := range []string{v0File, v2File} {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		f.Add(raw[:300])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		if c.Config.Version != 2 {
			var buf bytes.Buffer
			if _, err := c.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), data) {
				t.Fatal("rewritten file differs")
			}
			return
		}
		d := &Checkpoint{Config: c.Config, Tensors: c.Tensors}
		d.Config.Version, d.Config.GroupSize = 1, 0
		var buf bytes.Buffer
		if _, err := d.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		e, err := Parse("v1", buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range c.Tensors {
			a, b := f32(t, &x), f32(t, &e.Tensors[i])
			for j := range a {
				if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
					t.Fatalf("%s[%d]: %g became %g", x.Name, j, a[j], b[j])
				}
			}
		}
	})
}

// FuzzParseTokenizer feeds arbitrary bytes to ParseTokenizer; whatever
// parses must write back byte for byte.
func FuzzParseTokenizer(f *testing.F) {
	raw, err := os.ReadFile(tokFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw, 0)
	f.Add(raw, 512)
	f.Add(raw[:100], 3)
	f.Fuzz(func(t *testing.T, data []byte, vocabSize int) {
		tok, err := ParseTokenizer("fuzz", data, vocabSize)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if _, err := tok.WriteTo(&buf); err != nil {
			if tok.MaxTokenLength == 0 {
				return // 0 means "recompute" to WriteTo
			}
			t.Fatal(err)
		}
		if tok.MaxTokenLength != 0 && !bytes.Equal(buf.Bytes(), data) {
			t.Fatal("rewritten tokenizer differs")
		}
	})
}
