package gptq

import (
	"fmt"
	"math/rand/v2"

	"github.com/herd-llm/herd/kernels"
)

// Hessian accumulates H = 2·X·Xᵀ/n over the n input rows a linear layer
// sees (X holds one input per column, as the paper writes it): the
// Hessian of the layer's reconstruction loss averaged over the calibration
// tokens. Each batch's X·Xᵀ is formed in single precision by the GEMM
// kernel and summed across batches in double precision.
type Hessian struct {
	Cols int
	N    int       // rows seen
	Sum  []float64 // Σ x·xᵀ, Cols×Cols
	tmp  []float32
}

// NewHessian returns an empty accumulator for inputs of cols features.
func NewHessian(cols int) *Hessian {
	return &Hessian{Cols: cols, Sum: make([]float64, cols*cols)}
}

// Add accumulates nt input rows x (nt×Cols).
func (h *Hessian) Add(x []float32, nt int) {
	if h.tmp == nil {
		h.tmp = make([]float32, h.Cols*h.Cols)
	}
	kernels.GemmTN(h.Cols, h.Cols, nt, x[:nt*h.Cols], x[:nt*h.Cols], h.tmp, false)
	for i, v := range h.tmp {
		h.Sum[i] += float64(v)
	}
	h.N += nt
}

// Matrix returns a fresh copy of H = 2·Σxxᵀ/N.
func (h *Hessian) Matrix() []float64 {
	out := make([]float64, len(h.Sum))
	if h.N == 0 {
		return out
	}
	f := 2 / float64(h.N)
	for i, v := range h.Sum {
		out[i] = v * f
	}
	return out
}

// Windows draws n calibration windows of ctx consecutive tokens from
// tokens at random start positions (seeded), as GPTQ-for-LLaMA samples
// its C4 and WikiText calibration sets. The text must hold at least one
// whole window.
func Windows(tokens []int, n, ctx int, seed uint64) ([][]int, error) {
	if n <= 0 || ctx <= 0 {
		return nil, fmt.Errorf("gptq: %d calibration samples of %d tokens: both must be positive", n, ctx)
	}
	if len(tokens) < ctx {
		return nil, fmt.Errorf("gptq: the calibration text is %d tokens, shorter than one window of %d (--calib-ctx)", len(tokens), ctx)
	}
	rng := rand.New(rand.NewPCG(seed, 0x67707471))
	out := make([][]int, n)
	for i := range out {
		s := rng.IntN(len(tokens) - ctx + 1)
		out[i] = tokens[s : s+ctx]
	}
	return out, nil
}
