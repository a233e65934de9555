package llama

import (
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

// ggufOrder is the order of BlockMatrices in a GGUF file's tensors (and
// TrainParams'): ffn_down before ffn_up.
var ggufOrder = []int{0, 1, 2, 3, 4, 6, 5}
