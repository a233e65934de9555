package generate

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/llama"
)

// nanModel is stories260K with one NaN in its output norm: every logit of
// every position is NaN, as after a NaN in a GGUF tensor or an adapter.
func nanModel(t *testing.T) *llama.Model {
	m, _ := stories(t)
	m.OutNorm = append([]float32(nil), m.OutNorm...)
	m.OutNorm[3] = float32(math.NaN())
	return m
}

// TestSampleNonFinite: the sampler never panics on NaN or infinite logits,
// whatever the filters (top-p < 1 once indexed an empty slice), and Next
// refuses them with the position.
func TestSampleNonFinite(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	rows := map[string][]float32{
		"all NaN":  {nan, nan, nan, nan},
		"one NaN":  {1, nan, 0.5, 0.2},
		"+Inf":     {1, inf, 0.5, 0.2},
		"-Inf all": {float32(math.Inf(-1)), float32(math.Inf(-1))},
		"empty":    {},
	}
	cfgs := []SamplerConfig{
		{}, {Temperature: 1}, {Temperature: 1, TopP: 0.9}, {Temperature: 0.7, TopK: 2, TopP: 0.5},
		{Temperature: 1, MinP: 0.1}, {Temperature: 1, TopP: 0.9, RepeatPenalty: 1.3},
	}
	for name, row := range rows {
		for _, c := range cfgs {
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s, %+v: Sample panicked: %v", name, c, p)
					}
				}()
				s := NewSampler(c)
				got := s.Sample(append([]float32(nil), row...), []int{0, 1})
				if len(row) > 0 && (got < 0 || got >= len(row)) {
					t.Errorf("%s, %+v: token %d outside the row", name, c, got)
				}
				if name == "one NaN" && got == 1 && c.Temperature > 0 {
					t.Errorf("%s, %+v: drew the NaN", name, c)
				}
				_, err := s.Next(append([]float32(nil), row...), []int{0, 1}, 7)
				var nf *NonFiniteError
				if err == nil || (len(row) > 0 && (!errors.As(err, &nf) || nf.Pos != 7)) {
					t.Errorf("%s, %+v: Next gave %v, want a NonFiniteError at position 7", name, c, err)
				}
			}()
		}
	}
	if err := CheckLogits([]float32{1, 2, float32(math.NaN())}, 4); err == nil || !strings.Contains(err.Error(), "NaN at position 4") {
		t.Errorf("CheckLogits: %v", err)
	}
}

// TestSessionNonFinite: herd run's and herd chat's loops return the error.
func TestSessionNonFinite(t *testing.T) {
	m := nanModel(t)
	_, tok := stories(t)
	g := &Generator{Model: m, Tok: tok}
	_, err := g.Generate("Once", Options{MaxTokens: 5}, NewSampler(SamplerConfig{Temperature: 1, TopP: 0.9}), func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "NaN at position") {
		t.Errorf("Generate: %v", err)
	}
	sess := g.NewSession(0)
	if err := sess.SetTokens(tok.Encode("Once", true, false)); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = sess.Reply(5, NewSampler(SamplerConfig{Temperature: 1, TopP: 0.9}), Stop{}, func(string) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "NaN at position") {
		t.Errorf("Reply: %v", err)
	}
}

// TestSchedulerNonFinite: a NaN model fails its requests with the error and
// the scheduler goes on serving the next ones.
func TestSchedulerNonFinite(t *testing.T) {
	m := nanModel(t)
	_, tok := stories(t)
	s := NewScheduler(m, tok, SchedulerConfig{Parallel: 2})
	defer s.Close()
	for i := 0; i < 3; i++ {
		ch := mustSubmit(t, s, Request{Prompt: tok.Encode("Once", true, false), MaxTokens: 5, Sampler: SamplerConfig{Temperature: 1, TopP: 0.9}})
		var last Event
		for ev := range ch {
			last = ev
		}
		if !last.Done || last.Err == nil || !strings.Contains(last.Err.Error(), "NaN at position") {
			t.Fatalf("request %d: last event %+v", i, last)
		}
	}
}

// TestSchedulerRecovers: a panic inside a step fails that step's
// sequences, and the scheduler serves the next request.
func TestSchedulerRecovers(t *testing.T) {
	m, tok := stories(t)
	s := NewScheduler(m, tok, SchedulerConfig{})
	defer s.Close()
	bad := *m
	bad.Layers = append([]llama.Layer(nil), m.Layers...)
	bad.Layers[1].Wq = nil // the pass dereferences a nil weight
	s.mu.Lock()
	s.m = &bad
	s.mu.Unlock()
	ch := mustSubmit(t, s, Request{Prompt: tok.Encode("Once", true, false), MaxTokens: 3})
	var last Event
	for ev := range ch {
		last = ev
	}
	if last.Err == nil {
		t.Fatal("a broken model gave no error")
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	r := collect(t, mustSubmit(t, s, Request{Prompt: tok.Encode("Once", true, false), MaxTokens: 3}))
	if r.n != 3 {
		t.Errorf("after the panic: %d tokens", r.n)
	}
}

// TestSchedulerBudget: the KV budget lowers the context to what it holds,
// queues requests whose reservation does not fit beside the running ones,
// and a request without a token budget on a huge context is answered.
func TestSchedulerBudget(t *testing.T) {
	m, tok := stories(t)
	c := m.Config
	c.ContextLen = 1 << 31
	huge := *m
	huge.Config = c
	per := c.KVCacheBytes(1, 0x1) // F16
	s := NewScheduler(&huge, tok, SchedulerConfig{Parallel: 4, KVBudget: 300 * per})
	defer s.Close()
	if got := s.Config().Context; got != 300 {
		t.Fatalf("context %d under a budget of 300 positions", got)
	}
	prompt := tok.Encode("Once upon a time", true, false)
	// two requests of 200 positions each cannot run together
	a := mustSubmit(t, s, Request{Prompt: prompt, MaxTokens: 200 - len(prompt)})
	b := mustSubmit(t, s, Request{Prompt: prompt, MaxTokens: 200 - len(prompt)})
	time.Sleep(20 * time.Millisecond)
	if _, active := s.Load(); active > 1 {
		t.Errorf("%d sequences in flight; the budget holds one", active)
	}
	collect(t, a)
	collect(t, b)
	// "as many as fit": the context's rest
	r := collect(t, mustSubmit(t, s, Request{Prompt: prompt, MaxTokens: 1 << 31}))
	if r.n == 0 || r.n > 300-len(prompt) {
		t.Errorf("unbounded request: %d tokens", r.n)
	}
	if _, err := s.Submit(context.Background(), Request{Prompt: make([]int, 400), MaxTokens: 1}); err == nil {
		t.Error("a prompt beyond the budget was accepted")
	}
}
