package generate

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

func stories(t testing.TB) (*llama.Model, tokenizer.Tokenizer) {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

type result struct {
	text   string
	toks   []int
	finish string
	n      int
}

func collect(t testing.TB, ch <-chan Event) result {
	t.Helper()
	var r result
	var sb strings.Builder
	for ev := range ch {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		sb.WriteString(ev.Text)
		if ev.Token != nil {
			r.toks = append(r.toks, ev.Token.ID)
		}
		if ev.Done {
			r.finish, r.n = ev.Finish, ev.Tokens
		}
	}
	r.text = sb.String()
	return r
}

var prompts = []string{"Once upon a time", "Lily and Tom", "The dog", "One day, a big", "Sam had a red ball", "The sun was", "Mom said", "A little bird"}

// TestSchedulerBatchedEqualsSolo checks that at temperature 0 every
// response of a batch of concurrent requests equals the one the same
// request gets alone, for F32 weights and for Q8_0 weights, with the
// default configuration (no padding rows: kernels.MatMul computes every
// row the same way whatever the batch).
func TestSchedulerBatchedEqualsSolo(t *testing.T) {
	q8, q8tok, err := checkpoint.Load("../format/llama2c/testdata/stories260K_q80_v2.bin", "../assets/tok512.bin")
	if err != nil {
		t.Fatal(err)
	}
	f32, f32tok := stories(t)
	for _, tc := range []struct {
		name string
		m    *llama.Model
		tok  tokenizer.Tokenizer
	}{{"F32", f32, f32tok}, {"Q8_0", q8, q8tok}} {
		t.Run(tc.name, func(t *testing.T) {
			m, tok := tc.m, tc.tok
			req := func(i int) Request {
				return Request{Prompt: tok.Encode(prompts[i%len(prompts)], true, false), MaxTokens: 60 + 7*i, Logprobs: true}
			}
			solo := NewScheduler(m, tok, SchedulerConfig{Parallel: 1})
			defer solo.Close()
			n := 12
			want := make([]result, n)
			for i := range want {
				ch, err := solo.Submit(context.Background(), req(i))
				if err != nil {
					t.Fatal(err)
				}
				want[i] = collect(t, ch)
			}
			batched := NewScheduler(m, tok, SchedulerConfig{Parallel: 5, PrefillChunk: 7})
			defer batched.Close()
			got := make([]result, n)
			var wg sync.WaitGroup
			for i := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ch, err := batched.Submit(context.Background(), req(i))
					if err != nil {
						t.Error(err)
						return
					}
					got[i] = collect(t, ch)
				}()
			}
			wg.Wait()
			for i := range got {
				if got[i].text != want[i].text || !slices.Equal(got[i].toks, want[i].toks) || got[i].finish != want[i].finish {
					t.Errorf("request %d: batched %q (%s), alone %q (%s)", i, got[i].text, got[i].finish, want[i].text, want[i].finish)
				}
				if got[i].n != len(got[i].toks) || got[i].n == 0 {
					t.Errorf("request %d: %d tokens reported, %d streamed", i, got[i].n, len(got[i].toks))
				}
			}
		})
	}
}

func TestSchedulerStops(t *testing.T) {
	m, tok := stories(t)
	s := NewScheduler(m, tok, SchedulerConfig{Parallel: 2})
	defer s.Close()
	prompt := tok.Encode("Once upon a time", true, false)
	run := func(r Request) result {
		ch, err := s.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		return collect(t, ch)
	}
	full := run(Request{Prompt: prompt, MaxTokens: 60})
	if full.finish != FinishLength || full.n != 60 {
		t.Fatalf("60 tokens: finish %s after %d", full.finish, full.n)
	}
	// a stop string cuts the text right before it
	word := "Lily"
	i := strings.Index(full.text, word)
	if i < 0 {
		t.Fatalf("no %q in %q", word, full.text)
	}
	r := run(Request{Prompt: prompt, MaxTokens: 60, Stop: Stop{Strings: []string{word}}})
	if r.text != full.text[:i] || r.finish != FinishStop {
		t.Errorf("stop string: %q (%s), want %q", r.text, r.finish, full.text[:i])
	}
	// a stop token ends it before the token
	r = run(Request{Prompt: prompt, MaxTokens: 60, Stop: Stop{IDs: []int{full.toks[5]}}})
	if r.finish != FinishStop || r.n != 6 || !strings.HasPrefix(full.text, r.text) {
		t.Errorf("stop token: %d tokens %q (%s)", r.n, r.text, r.finish)
	}
	// the context ends a generation with "length"
	small := NewScheduler(m, tok, SchedulerConfig{Context: len(prompt) + 5})
	defer small.Close()
	ch, err := small.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 100})
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(t, ch); r.n != 5 || r.finish != FinishLength {
		t.Errorf("context: %d tokens, finish %s", r.n, r.finish)
	}
	if _, err := small.Submit(context.Background(), Request{Prompt: make([]int, len(prompt)+5), MaxTokens: 1}); err == nil || !strings.Contains(err.Error(), "context") {
		t.Errorf("a prompt as long as the context: %v", err)
	}
}

// TestSchedulerCancel checks that a cancelled request frees its slot at
// once, so a queued one runs.
func TestSchedulerCancel(t *testing.T) {
	m, tok := stories(t)
	s := NewScheduler(m, tok, SchedulerConfig{Parallel: 1})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	long, err := s.Submit(ctx, Request{Prompt: tok.Encode("Once", true, false), MaxTokens: 400})
	if err != nil {
		t.Fatal(err)
	}
	<-long // the first token: it is running
	next, err := s.Submit(context.Background(), Request{Prompt: tok.Encode("Tom", true, false), MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if q, a := s.Load(); q != 1 || a != 1 {
		t.Errorf("load %d queued %d active, want 1 and 1", q, a)
	}
	cancel()
	done := make(chan result)
	go func() { done <- collect(t, next) }()
	select {
	case r := <-done:
		if r.n != 5 {
			t.Errorf("the queued request got %d tokens", r.n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the queued request never ran")
	}
	for range long { // drained and closed
	}
}

func TestSchedulerPenaltiesAndLogprobs(t *testing.T) {
	m, tok := stories(t)
	s := NewScheduler(m, tok, SchedulerConfig{Parallel: 2})
	defer s.Close()
	prompt := tok.Encode("Once upon a time", true, false)
	ch, _ := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 30, Logprobs: true, TopLogprobs: 3})
	var evs []Event
	for ev := range ch {
		evs = append(evs, ev)
	}
	for _, ev := range evs[:len(evs)-1] {
		if len(ev.Top) != 3 || ev.Token == nil {
			t.Fatalf("event %+v", ev)
		}
		// greedy picks the most likely token
		if ev.Token.ID != ev.Top[0].ID || ev.Token.Logprob != ev.Top[0].Logprob || ev.Top[0].Logprob < ev.Top[1].Logprob || ev.Top[0].Logprob > 0 {
			t.Errorf("token %+v, top %+v", ev.Token, ev.Top)
		}
	}
	plain := collect(t, mustSubmit(t, s, Request{Prompt: prompt, MaxTokens: 60}))
	pen := collect(t, mustSubmit(t, s, Request{Prompt: prompt, MaxTokens: 60, FrequencyPenalty: 2, PresencePenalty: 1}))
	distinct := func(x []int) int { return len(uniq(x)) }
	if plain.text == pen.text || distinct(pen.toks) <= distinct(plain.toks) {
		t.Errorf("penalties changed nothing: %d distinct tokens vs %d", distinct(pen.toks), distinct(plain.toks))
	}
}

func uniq(x []int) map[int]bool {
	u := map[int]bool{}
	for _, v := range x {
		u[v] = true
	}
	return u
}

func mustSubmit(t *testing.T, s *Scheduler, r Request) <-chan Event {
	t.Helper()
	ch, err := s.Submit(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestEmbed: for one token the embedding is the final hidden state, so its
// product with the (tied) output matrix is the model's own logits, scaled.
func TestEmbed(t *testing.T) {
	m, tok := stories(t)
	s := NewScheduler(m, tok, SchedulerConfig{})
	defer s.Close()
	toks := tok.Encode("Once upon a time there was a cat", true, false)
	// one token: the hidden state itself, whose product with the head is the logits
	v, err := s.Embed(context.Background(), toks[:1])
	if err != nil {
		t.Fatal(err)
	}
	var st llama.State
	logits, err := m.Forward(&st, m.NewKVCache(1), toks[:1], 0, false)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]float32(nil), logits...)
	got := make([]float32, m.Config.VocabSize)
	m.Output.Forward(got, v, 1)
	// v is normalised: the logits are a multiple of the model's
	scale := want[0] / got[0]
	for i := range got {
		if d := math.Abs(float64(got[i]*scale - want[i])); d > 1e-3*math.Abs(float64(want[i]))+1e-3 {
			t.Fatalf("logit %d: %g × %g vs %g", i, got[i], scale, want[i])
		}
	}
	a, _ := s.Embed(context.Background(), toks)
	b, _ := s.Embed(context.Background(), toks)
	var n float64
	for i := range a {
		n += float64(a[i]) * float64(a[i])
		if a[i] != b[i] {
			t.Fatal("the same text embedded twice differs")
		}
	}
	if math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² %g, want 1", n)
	}
	if _, err := s.Embed(context.Background(), nil); err == nil {
		t.Error("empty input: no error")
	}
}

func TestSessionReply(t *testing.T) {
	m, tok := stories(t)
	g := &Generator{Model: m, Tok: tok}
	sess := g.NewSession(0)
	first := tok.Encode("Once upon a time", true, false)
	if err := sess.SetTokens(first); err != nil {
		t.Fatal(err)
	}
	var streamed strings.Builder
	text, finish, st, err := sess.Reply(30, NewSampler(SamplerConfig{}), Stop{IDs: []int{tok.EOS()}}, func(s string) error {
		streamed.WriteString(s)
		return nil
	})
	if err != nil || finish != FinishLength || st.GenTokens != 30 || text != streamed.String() {
		t.Fatalf("reply %q %s %d %v", text, finish, st.GenTokens, err)
	}
	// the same as a scheduler's standalone completion
	s := NewScheduler(m, tok, SchedulerConfig{})
	defer s.Close()
	r := collect(t, mustSubmit(t, s, Request{Prompt: first, MaxTokens: 30, Standalone: true}))
	if r.text != text {
		t.Errorf("session %q, scheduler %q", text, r.text)
	}
	// a second turn that shares the prefix reuses the cache
	next := append(append([]int(nil), sess.Tokens()...), tok.Encode(" The end", false, false)...)
	if err := sess.SetTokens(next); err != nil {
		t.Fatal(err)
	}
	if sess.cache.Len != len(next) {
		t.Errorf("cache holds %d of %d", sess.cache.Len, len(next))
	}
}
