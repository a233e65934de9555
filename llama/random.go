package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// Random builds a model of shape c with weights drawn from N(0, std²) (std
// 0.02, as LLaMA-style pretraining starts) and norm gains of one (a
// LayerNorm's biases zero; a parallel block gets Falcon-7B's one norm), the
// matrices stored as dt (F32, F16, BF16, Q8_0 or Q4_0). Each tensor has its
// own random stream derived from seed and its name, so the result does not
// depend on the thread count.
func Random(c Config, dt tensor.DType, seed uint64) (*Model, error) {
	return RandomInit(c, dt, seed, InitOptions{})
}

// InitOptions tune RandomInit.
type InitOptions struct {
	// Std is the standard deviation of the matrices; 0 means 0.02.
	Std float64
	// ScaleResidual divides the standard deviation of the projections that
	// write into the residual stream (attn_output and ffn_down) by
	// sqrt(2·NLayers), so the stream's variance does not grow with depth
	// (GPT-2's initialisation, the usual start of pretraining).
	ScaleResidual bool
}

// RandomInit is Random with the initialisation set by opt.
func RandomInit(c Config, dt tensor.DType, seed uint64, opt InitOptions) (*Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !kernels.Supports(dt) {
		return nil, fmt.Errorf("random model: no kernel for weight type %s", dt)
	}
	std := opt.Std
	if std == 0 {
		std = 0.02
	}
	resStd := std
	if opt.ScaleResidual {
		resStd = std / math.Sqrt(2*float64(c.NLayers))
	}
	type job struct {
		dst      **nn.Linear
		name     string
		out, in  int
		streamID uint64
		std      float64
	}
	m := &Model{Config: c, Layers: make([]Layer, c.NLayers)}
	ones := func() []float32 {
		v := make([]float32, c.Dim)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	m.OutNorm = ones()
	layerNorm := c.Norm == NormLayer // Falcon: LayerNorm biases, zero at the start
	if layerNorm {
		m.OutNormB = make([]float32, c.Dim)
	}
	jobs := []job{{&m.Embed, EmbedName, c.VocabSize, c.Dim, 0, std}}
	if !c.TiedEmbeddings {
		jobs = append(jobs, job{&m.Output, OutputName, c.VocabSize, c.Dim, 1, std})
	}
	for i := range m.Layers {
		l := &m.Layers[i]
		l.layerIndex = i
		l.AttnNorm, l.FFNNorm = ones(), ones()
		if c.Parallel { // one norm feeds attention and the feed-forward (Falcon-7B)
			l.FFNNorm = nil
		}
		if layerNorm {
			l.AttnNormB = make([]float32, c.Dim)
		}
		p := fmt.Sprintf("blk.%d.", i)
		base := uint64(16 + 16*i)
		for k, w := range l.Matrices() {
			b := BlockMatrices[k]
			if b.Module == "gate" && c.FFN != FFNSwiGLU {
				continue // a GELU feed-forward has no gate
			}
			out, in := b.Shape(c)
			sd := std
			if b.Module == "o" || b.Module == "down" { // they write into the residual stream
				sd = resStd
			}
			jobs = append(jobs, job{w, p + b.GGUF + ".weight", out, in, base + uint64(k), sd})
		}
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, kernels.Threads())
	for ji, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rng := rand.New(rand.NewPCG(seed, j.streamID))
			rb, err := dt.RowBytes(j.in)
			if err != nil {
				errs[ji] = fmt.Errorf("tensor %s: %w", j.name, err)
				return
			}
			data := make([]byte, rb*j.out)
			row := make([]float32, j.in)
			for r := 0; r < j.out; r++ {
				for k := range row {
					row[k] = float32(rng.NormFloat64() * j.std)
				}
				if err := tensor.Quantize(dt, data[r*rb:(r+1)*rb], row); err != nil {
					errs[ji] = fmt.Errorf("tensor %s: %w", j.name, err)
					return
				}
			}
			*j.dst, errs[ji] = nn.NewLinear(j.name, dt, j.out, j.in, data)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if c.TiedEmbeddings {
		m.Output = m.Embed
	}
	return m, m.check()
}
