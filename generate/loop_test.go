package generate

import (
	"slices"
	"testing"
)

// TestOneSamplerPath: Session.Reply, the Scheduler and Tokens take the same
// decoding step, so with the same sampler settings — presence and
// frequency penalties included, which once only the server had — they
// write the same tokens.
func TestOneSamplerPath(t *testing.T) {
	m, tok := stories(t)
	prompt := tok.Encode("Once upon a time", true, false)
	for _, cfg := range []SamplerConfig{
		{},
		{PresencePenalty: 1.5, FrequencyPenalty: 0.7},
		{Temperature: 0.8, TopP: 0.9, Seed: 7, PresencePenalty: 0.5, FrequencyPenalty: 1},
	} {
		s := NewScheduler(m, tok, SchedulerConfig{})
		r := collect(t, mustSubmit(t, s, Request{Prompt: prompt, MaxTokens: 40, Sampler: cfg, Standalone: true}))
		s.Close()
		sess := (&Generator{Model: m, Tok: tok}).NewSession(0)
		if err := sess.SetTokens(prompt); err != nil {
			t.Fatal(err)
		}
		text, _, _, err := sess.Reply(40, NewSampler(cfg), Stop{}, func(string) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if text != r.text {
			t.Errorf("%+v: session %q, scheduler %q", cfg, text, r.text)
		}
		got, err := Tokens(m, prompt, 40, NewSampler(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got[len(prompt):], r.toks) {
			t.Errorf("%+v: Tokens %v, scheduler %v", cfg, got[len(prompt):], r.toks)
		}
	}
	// the penalties change the text (they are not ignored)
	a, _ := Tokens(m, prompt, 40, NewSampler(SamplerConfig{}))
	b, _ := Tokens(m, prompt, 40, NewSampler(SamplerConfig{FrequencyPenalty: 2}))
	if slices.Equal(a, b) {
		t.Error("a frequency penalty of 2 changed nothing")
	}
}

// TestValidate: one range check for every sampler (herd run's flags and
// the server's fields alike).
func TestValidate(t *testing.T) {
	for _, c := range []SamplerConfig{{Temperature: -1}, {TopP: 2}, {MinP: -0.1}, {TopK: -1}, {RepeatPenalty: -1}, {PresencePenalty: 3}, {FrequencyPenalty: -2.5}, {RepeatLastN: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, c := range []SamplerConfig{{}, {Temperature: 2, TopP: 1, MinP: 1, TopK: 40, RepeatPenalty: 1.1, PresencePenalty: -2, FrequencyPenalty: 2}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
