package llama

import "github.com/herd-llm/herd/tensor"

// Tensor is a named weight as a converter from another checkpoint layout
// supplies it: in GGUF naming (token_embd.weight, blk.N.attn_q.weight, …),
// ggml dimension order (Dims[0] is the row length), and the bytes of its
// dtype.
type Tensor struct {
	Name  string
	DType tensor.DType
	Dims  []uint64
	Data  []byte
}

// FromTensors builds a model of config c over ts (the model aliases their
// Data). A zero VocabSize is taken from the embedding; without
// output.weight the head is tied to the embedding. src names the
// checkpoint in errors. A Falcon config (IsFalcon) takes llama.cpp's
// falcon names (see Falcon).
func FromTensors(src string, c Config, ts []Tensor) (*Model, error) {
	raw := make([]rawTensor, len(ts))
	for i, t := range ts {
		raw[i] = rawTensor{t.Name, t.DType, t.Dims, t.Data}
	}
	if c.IsFalcon() {
		return buildFalcon(src, c, raw)
	}
	return build(src, c, raw)
}
