package generate

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkScheduler generates 64 tokens for each of n concurrent
// requests on stories260K (n sequences decoded together) and reports the
// aggregate generation speed: what continuous batching gains, without HTTP.
func BenchmarkScheduler(b *testing.B) {
	m, tok := stories(b)
	for _, n := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("seqs=%d", n), func(b *testing.B) {
			s := NewScheduler(m, tok, SchedulerConfig{Parallel: n})
			defer s.Close()
			tokens := 0
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				var wg sync.WaitGroup
				var mu sync.Mutex
				for k := 0; k < n; k++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ch, err := s.Submit(context.Background(), Request{Prompt: tok.Encode(prompts[k%len(prompts)], true, false), MaxTokens: 64})
						if err != nil {
							b.Error(err)
							return
						}
						for ev := range ch {
							if ev.Done {
								mu.Lock()
								tokens += ev.Tokens
								mu.Unlock()
							}
						}
					}()
				}
				wg.Wait()
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(tokens)/elapsed.Seconds(), "tokens/s")
		})
	}
}
