package train

import (
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// benchStep measures one training step (forward, loss, backward, AdamW) of
// a preset at batch b × seq t on random tokens, reporting tokens/s and model
// GFLOP/s (FLOPsPerToken).
func benchStep(bm *testing.B, preset string, b, t int, recompute bool) {
	p, err := llama.LookupPreset(preset)
	if err != nil {
		bm.Fatal(err)
	}
	m, err := llama.RandomInit(p.Config, tensor.F32, 1, llama.InitOptions{ScaleResidual: true})
	if err != nil {
		bm.Fatal(err)
	}
	g := m.NewGrads()
	params := m.TrainParams(g)
	opt := NewAdamW(params, 0.9, 0.95, 1e-8, 0.1)
	r := rand.New(rand.NewPCG(1, 2))
	tokens := make([]int, b*t)
	targets := make([]int, b*t)
	for i := range tokens {
		tokens[i], targets[i] = r.IntN(p.Config.VocabSize), r.IntN(p.Config.VocabSize)
	}
	seqs := make([]llama.Seq, b)
	for i := range seqs {
		seqs[i] = llama.Seq{Tokens: tokens[i*t : (i+1)*t], All: true}
	}
	var st llama.State
	var tape autograd.Tape
	step := func() {
		ZeroGrads(params)
		logits, err := m.ForwardTape(&st, &tape, g, seqs, llama.TapeOptions{Recompute: recompute})
		if err != nil {
			bm.Fatal(err)
		}
		autograd.CrossEntropy(&tape, logits, targets, p.Config.VocabSize, 1/float32(b*t))
		tape.Backward()
		ScaleGrads(params, float32(1/max(1, GradNorm(params))))
		opt.Update(params, 1e-4)
	}
	step() // warm-up: buffers
	bm.ResetTimer()
	for range bm.N {
		step()
	}
	tps := float64(b*t) * float64(bm.N) / bm.Elapsed().Seconds()
	bm.ReportMetric(tps, "tokens/s")
	bm.ReportMetric(tps*FLOPsPerToken(p.Config, t)/1e9, "GFLOP/s")
}

func BenchmarkStepStories260K(b *testing.B) { benchStep(b, "stories260k", 8, 256, false) }
func BenchmarkStepStories15M(b *testing.B)  { benchStep(b, "stories15m", 8, 256, false) }
func BenchmarkStepStories15MRecompute(b *testing.B) {
	benchStep(b, "stories15m", 8, 256, true)
}
