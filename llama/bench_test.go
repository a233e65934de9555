package llama

import (
	"fmt"
	"testing"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// BenchmarkDecodeBatch decodes one token for each of n sequences in one
// ForwardBatch call, at position 64, in the stories260K shape: the step a
// continuous-batching server repeats. It reports tokens/s; for a model this
// small the per-call overhead of the pass, not the arithmetic, is the cost.
func BenchmarkDecodeBatch(b *testing.B) {
	p, err := LookupPreset("stories260k")
	if err != nil {
		b.Fatal(err)
	}
	c := p.Config
	m, err := Random(c, tensor.F32, 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, th := range []int{1, 2} {
		for _, n := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("threads=%d/seqs=%d", th, n), func(b *testing.B) {
				kernels.SetThreads(th)
				defer kernels.SetThreads(0)
				var s State
				seqs := make([]Seq, n)
				prompt := make([]int, 64)
				for i := range prompt {
					prompt[i] = (i*7 + 3) % c.VocabSize
				}
				for i := range seqs {
					seqs[i].Cache = m.NewKVCache(c.ContextLen)
					if _, err := m.Forward(&s, seqs[i].Cache, prompt, 0, false); err != nil {
						b.Fatal(err)
					}
				}
				tok := []int{5}
				for b.Loop() {
					for i := range seqs {
						seqs[i].Cache.Len = 64
						seqs[i].Tokens = tok
					}
					if _, err := m.ForwardBatch(&s, seqs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
