package llama

import (
	"fmt"

	"github.com/herd-llm/herd/nn"
)

// BlockMatrix names one of a block's weight matrices, once for every
// user: Module is herd's short name (LoRA's targets), GGUF the middle of
// its GGUF tensor name (blk.N.<GGUF>.weight), HF its Hugging Face module
// path (PEFT's adapter names).
type BlockMatrix struct {
	Module, GGUF, HF string
}

// BlockMatrices are a block's weight matrices in herd's order (Layer's
// fields, LoRA's Modules): attention's q, k, v, o, then the SwiGLU
// feed-forward's gate, up and down.
var BlockMatrices = []BlockMatrix{
	{"q", "attn_q", "self_attn.q_proj"},
	{"k", "attn_k", "self_attn.k_proj"},
	{"v", "attn_v", "self_attn.v_proj"},
	{"o", "attn_output", "self_attn.o_proj"},
	{"gate", "ffn_gate", "mlp.gate_proj"},
	{"up", "ffn_up", "mlp.up_proj"},
	{"down", "ffn_down", "mlp.down_proj"},
}

// Shape is the matrix's rows (outputs) and columns (inputs) in a model of
// configuration c.
func (b BlockMatrix) Shape(c Config) (out, in int) {
	switch b.Module {
	case "k", "v":
		return c.KVDim(), c.Dim
	case "gate", "up":
		return c.FFNDim, c.Dim
	case "down":
		return c.Dim, c.FFNDim
	}
	return c.Dim, c.Dim
}

// Matrices are l's weight matrices in BlockMatrices order, as pointers to
// its fields (so that a loader or a quantizer can set them).
func (l *Layer) Matrices() []**nn.Linear {
	return []**nn.Linear{&l.Wq, &l.Wk, &l.Wv, &l.Wo, &l.Gate, &l.Up, &l.Down}
}

// Matrices are g's matrix gradients in BlockMatrices order.
func (g *LayerGrads) Matrices() []*[]float32 {
	return []*[]float32{&g.Wq, &g.Wk, &g.Wv, &g.Wo, &g.Gate, &g.Up, &g.Down}
}

// Matrix is l's matrix called module (BlockMatrix.Module), nil for an
// unknown name.
func (l *Layer) Matrix(module string) *nn.Linear {
	for i, b := range BlockMatrices {
		if b.Module == module {
			return *l.Matrices()[i]
		}
	}
	return nil
}

// GGUF names of the tensors outside the blocks, and of a block's norm
// gains (after "blk.N.").
const (
	EmbedName    = "token_embd.weight"
	OutNormName  = "output_norm.weight"
	OutputName   = "output.weight"
	AttnNormName = "attn_norm.weight"
	FFNNormName  = "ffn_norm.weight"
)

// BlockTensor is one tensor of a block: a norm gain or a weight matrix.
type BlockTensor struct {
	Name   string      // its GGUF name, blk.N.…
	Norm   *[]float32  // the norm gain, or nil
	Mat    **nn.Linear // the matrix, or nil
	Matrix int         // the matrix's index in BlockMatrices (-1 for a norm)
}

// Tensors are the tensors of l, block i of its model, in the order of a
// GGUF file's (llama.cpp's): attn_norm, attn_q, attn_k, attn_v,
// attn_output, ffn_norm, ffn_gate, ffn_down, ffn_up.
func (l *Layer) Tensors(i int) []BlockTensor {
	p := fmt.Sprintf("blk.%d.", i)
	ms := l.Matrices()
	mat := func(k int) BlockTensor {
		return BlockTensor{Name: p + BlockMatrices[k].GGUF + ".weight", Mat: ms[k], Matrix: k}
	}
	return []BlockTensor{
		{Name: p + AttnNormName, Norm: &l.AttnNorm, Matrix: -1}, mat(0), mat(1), mat(2), mat(3),
		{Name: p + FFNNormName, Norm: &l.FFNNorm, Matrix: -1}, mat(4), mat(6), mat(5),
	}
}
