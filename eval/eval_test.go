package eval

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
)

func stories(t *testing.T) *llama.Model {
	t.Helper()
	m, _, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randomTokens(n, vocab int) []int {
	r := rand.New(rand.NewPCG(5, 6))
	toks := make([]int, n)
	toks[0] = 1
	for i := 1; i < n; i++ {
		toks[i] = 3 + r.IntN(vocab-3)
	}
	return toks
}

// TestPerplexityMatchesDecoding recomputes the perplexity independently:
// every chunk decoded one token at a time from an empty cache, each scored
// token's log-probability taken in float64, and llama.cpp's error formula.
// Batched chunks (several sequences per forward pass) must agree.
func TestPerplexityMatchesDecoding(t *testing.T) {
	m := stories(t)
	ctx := 64
	toks := randomTokens(5*ctx+17, m.Config.VocabSize)
	var running []float64
	res, err := Perplexity(m, toks, 1, Options{Ctx: ctx, Batch: 3 * ctx, OnChunk: func(i int, ppl float64) { running = append(running, ppl) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != 5 || res.Count != 5*(ctx-1-ctx/2) || len(running) != 5 || res.Seqs != 3 {
		t.Fatalf("chunks %d, count %d, running %d, seqs %d", res.Chunks, res.Count, len(running), res.Seqs)
	}
	var nll, nll2 float64
	n := 0
	for c := 0; c < 5; c++ {
		chunk := append([]int(nil), toks[c*ctx:(c+1)*ctx]...)
		chunk[0] = 1
		cache := m.NewKVCache(ctx)
		var s llama.State
		for p := 0; p < ctx-1; p++ {
			logits, err := m.Forward(&s, cache, chunk[p:p+1], p, false)
			if err != nil {
				t.Fatal(err)
			}
			if p < ctx/2 {
				continue
			}
			mx := math.Inf(-1)
			for _, v := range logits {
				mx = math.Max(mx, float64(v))
			}
			var sum float64
			for _, v := range logits {
				sum += math.Exp(float64(v) - mx)
			}
			v := -(float64(logits[chunk[p+1]]) - mx - math.Log(sum))
			nll += v
			nll2 += v * v
			n++
		}
		if want := math.Exp(nll / float64(n)); math.Abs(running[c]-want) > 1e-3*want {
			t.Errorf("chunk %d: running estimate %.5f, decoding gives %.5f", c+1, running[c], want)
		}
	}
	mean := nll / float64(n)
	ppl := math.Exp(mean)
	pplErr := math.Sqrt((nll2/float64(n)-mean*mean)/float64(n-1)) * ppl
	if math.Abs(res.PPL-ppl) > 1e-3*ppl || math.Abs(res.PPLErr-pplErr) > 1e-2*pplErr {
		t.Errorf("PPL %.5f ± %.5f, decoding gives %.5f ± %.5f", res.PPL, res.PPLErr, ppl, pplErr)
	}
	one, err := Perplexity(m, toks, 1, Options{Ctx: ctx, Batch: ctx, Chunks: 2})
	if err != nil {
		t.Fatal(err)
	}
	if one.Chunks != 2 || math.Abs(one.Running[1]-running[1]) > 1e-4*running[1] {
		t.Errorf("one chunk per pass: %v vs %v", one.Running, running[:2])
	}
}

func TestPerplexityShortText(t *testing.T) {
	m := stories(t)
	_, err := Perplexity(m, randomTokens(100, 512), 1, Options{Ctx: 64})
	if err == nil || !strings.Contains(err.Error(), "you need at least 128 tokens") {
		t.Fatalf("short text: %v", err)
	}
	_, err = Perplexity(m, append(randomTokens(200, 512), 9999), 1, Options{Ctx: 64})
	if err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Fatalf("bad token: %v", err)
	}
}

// sampledTokens draws n tokens from the model itself (temperature 1), a
// text it finds plausible, so log-probabilities stay in the range
// llama.cpp's stored base encoding covers (16 nats below the best token).
func sampledTokens(t *testing.T, m *llama.Model, n int) []int {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	toks := []int{1}
	cache := m.NewKVCache(n)
	var s llama.State
	for len(toks) < n {
		logits, err := m.Forward(&s, cache, toks[len(toks)-1:], len(toks)-1, false)
		if err != nil {
			t.Fatal(err)
		}
		mx := math.Inf(-1)
		for _, v := range logits {
			mx = math.Max(mx, float64(v))
		}
		var sum float64
		p := make([]float64, len(logits))
		for i, v := range logits {
			p[i] = math.Exp(float64(v) - mx)
			sum += p[i]
		}
		u := r.Float64() * sum
		next := len(p) - 1
		for i, pi := range p {
			if u -= pi; u <= 0 {
				next = i
				break
			}
		}
		toks = append(toks, next)
	}
	return toks
}

// TestKLDSelf compares a model with itself: the divergence is only the
// rounding of the stored base log-probabilities, the top tokens agree and
// both perplexities equal Perplexity's.
func TestKLDSelf(t *testing.T) {
	m := stories(t)
	ctx := 64
	toks := sampledTokens(t, m, 4*ctx)
	chunksSeen := 0
	res, err := KLDivergence(m, m, toks, 1, Options{Ctx: ctx, Batch: 2 * ctx}, func(int, *KLD) { chunksSeen++ })
	if err != nil {
		t.Fatal(err)
	}
	if chunksSeen != 4 || res.Count != 4*(ctx-1-ctx/2) || len(res.KLDValues) != res.Count {
		t.Fatalf("chunks %d, count %d", chunksSeen, res.Count)
	}
	kld, _ := res.MeanKLD()
	if math.Abs(kld) > 1e-5 {
		t.Errorf("mean KLD of a model with itself: %g", kld)
	}
	if p, _ := res.SameTopP(); p < 0.99 {
		t.Errorf("same top p %.3f", p)
	}
	ppl, _ := res.PPL()
	base, _ := res.PPLBase()
	want, err := Perplexity(m, toks, 1, Options{Ctx: ctx})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(ppl-want.PPL) > 1e-4*ppl || math.Abs(base-ppl) > 1e-3*ppl {
		t.Errorf("PPL(Q) %.5f, PPL(base) %.5f, Perplexity %.5f", ppl, base, want.PPL)
	}
	if r, _ := res.LogPPLRatio(); math.Abs(r) > 1e-3 {
		t.Errorf("ln ratio %g", r)
	}
	if Median([]float32{1, 2, 3, 4}) != 2.5 || Percentile([]float32{0, 10}, 0.5) != 5 {
		t.Error("median/percentile")
	}
}
