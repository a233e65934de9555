package serve

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkLoad streams chat completions from 1 and 32 concurrent clients
// through an in-process server with stories260K (parallel 32) and reports
// the aggregate generation speed and the times to first token. Each
// response is checked against the one the same request gets alone.
func BenchmarkLoad(b *testing.B) {
	_, hs := newTestServer(b, "", 32)
	ctx := context.Background()
	solo, err := Load(ctx, LoadConfig{URL: hs.URL, Model: "stories", Clients: 1, Requests: len(DefaultPrompts), MaxTokens: 64, Prompts: DefaultPrompts})
	if err != nil || solo.Errors > 0 {
		b.Fatalf("solo: %v %v", err, solo.FirstErrors)
	}
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			var tokens int
			var secs, p50, p99 float64
			for i := 0; i < b.N; i++ {
				r, err := Load(ctx, LoadConfig{URL: hs.URL, Model: "stories", Clients: clients, Requests: 2, MaxTokens: 64,
					Prompts: DefaultPrompts, Want: solo.Texts})
				if err != nil {
					b.Fatal(err)
				}
				if r.Errors > 0 || r.Mismatches > 0 {
					b.Fatalf("%d errors, %d mismatches: %v", r.Errors, r.Mismatches, r.FirstErrors)
				}
				tokens += r.Tokens
				secs += r.Elapsed.Seconds()
				p50 += r.Percentile(50).Seconds()
				p99 += r.Percentile(99).Seconds()
			}
			b.ReportMetric(float64(tokens)/secs, "tokens/s")
			b.ReportMetric(p50/float64(b.N)*1000, "ttft-p50-ms")
			b.ReportMetric(p99/float64(b.N)*1000, "ttft-p99-ms")
		})
	}
}
