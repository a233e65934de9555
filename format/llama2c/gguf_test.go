package llama2c_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/llama2c"
)

// TestMatchesLlamaCppConversion checks names, dims and bytes against the
// GGUF file llama.cpp's own llama2.c converter made from stories260K.bin,
// so both formats hand the model loader the same tensors.
func TestMatchesLlamaCppConversion(t *testing.T) {
	c, err := llama2c.Open("testdata/stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, err := gguf.Open("../gguf/testdata/stories260K-llamacpp.gguf")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, x := range c.Tensors {
		y, ok := g.Tensor(x.Name)
		if !ok {
			t.Fatalf("%s not in the GGUF file", x.Name)
		}
		if y.DType != x.DType || !slices.Equal(y.Dims, x.Dims) || !bytes.Equal(y.Data, x.Data) {
			t.Errorf("%s: %s %v, GGUF has %s %v (bytes equal: %v)", x.Name, x.DType, x.Dims, y.DType, y.Dims, bytes.Equal(y.Data, x.Data))
		}
	}
	// llama.cpp writes the shared classifier out as output.weight.
	emb, _ := c.Tensor("token_embd.weight")
	if out, ok := g.Tensor("output.weight"); !ok || !bytes.Equal(out.Data, emb.Data) {
		t.Error("GGUF output.weight is not the token embedding")
	}
	if len(g.Tensors) != len(c.Tensors)+1 {
		t.Errorf("GGUF has %d tensors, llama2c %d", len(g.Tensors), len(c.Tensors))
	}
}
