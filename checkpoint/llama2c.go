package checkpoint

import (
	"fmt"
	"strings"

	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// SaveLlama2c writes m as a llama2.c checkpoint of the given version (0:
// the legacy header run.c reads; 1: float32 with the "ak42" header; 2:
// Q8_0 groups, for runq.c) and, when tokPath is not "", tok as a llama2.c
// tokenizer.bin (a SentencePiece vocabulary only).
func SaveLlama2c(path string, m *llama.Model, version int, tokPath string, tok tokenizer.Tokenizer) error {
	ck, err := ToLlama2c(m, version)
	if err != nil {
		return err
	}
	if err := ck.WriteFile(path); err != nil {
		return err
	}
	if tokPath == "" {
		return nil
	}
	spm, ok := tok.(*tokenizer.SPM)
	if !ok {
		return fmt.Errorf("the model's tokenizer cannot be written as a llama2.c tokenizer.bin")
	}
	return llama2c.WriteTokenizer(tokPath, Llama2cTokenizer(spm))
}

// ToLlama2c describes m as a llama2.c checkpoint of the given version.
func ToLlama2c(m *llama.Model, version int) (*llama2c.Checkpoint, error) {
	c := m.Config
	if c.Rope != llama.RopeInterleaved {
		return nil, fmt.Errorf("llama2.c rotates interleaved pairs; this model uses rotate-half RoPE")
	}
	if c.NormEps != 1e-5 || c.RopeTheta != 10000 {
		return nil, fmt.Errorf("llama2.c fixes RMSNorm epsilon 1e-5 and RoPE theta 10000; this model has %g and %g", c.NormEps, c.RopeTheta)
	}
	ck := &llama2c.Checkpoint{Config: llama2c.Config{Dim: c.Dim, HiddenDim: c.FFNDim, NLayers: c.NLayers, NHeads: c.NHeads,
		NKVHeads: c.NKVHeads, VocabSize: c.VocabSize, SeqLen: c.ContextLen, SharedClassifier: c.TiedEmbeddings, Version: version}}
	if version == 2 {
		ck.Config.GroupSize = 32
	}
	mat := func(l *nn.Linear) {
		ck.Tensors = append(ck.Tensors, llama2c.Tensor{Name: l.Name, DType: l.DType, Dims: []uint64{uint64(l.In), uint64(l.Out)}, Data: l.Data})
	}
	vec := func(name string, v []float32) {
		ck.Tensors = append(ck.Tensors, llama2c.Tensor{Name: name, DType: tensor.F32, Dims: []uint64{uint64(len(v))}, Data: tensor.BytesOfF32(v)})
	}
	mat(m.Embed)
	for i := range m.Layers {
		l := &m.Layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", l.AttnNorm)
		vec(p+"ffn_norm.weight", l.FFNNorm)
		for _, w := range l.Matrices() {
			mat(*w)
		}
	}
	vec("output_norm.weight", m.OutNorm)
	if !c.TiedEmbeddings {
		mat(m.Output)
	}
	return ck, nil
}

// Llama2cTokenizer is an SPM vocabulary as llama2.c stores it: '▁' as a
// space, and ids 0, 1, 2 as "<unk>", "\n<s>\n", "\n</s>\n".
func Llama2cTokenizer(t *tokenizer.SPM) *llama2c.Tokenizer {
	n := t.VocabSize()
	out := &llama2c.Tokenizer{Pieces: make([]string, n), Scores: make([]float32, n)}
	for i := range n {
		p := t.Piece(i)
		switch {
		case i == 1 && p == "<s>":
			p = "\n<s>\n"
		case i == 2 && p == "</s>":
			p = "\n</s>\n"
		default:
			p = strings.ReplaceAll(p, "▁", " ")
		}
		out.Pieces[i], out.Scores[i] = p, t.Score(i)
	}
	return out
}
