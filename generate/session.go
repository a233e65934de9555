package generate

import (
	"fmt"
	"time"

	"github.com/herd-llm/herd/llama"
)

// Session is a conversation with a model that keeps its KV cache between
// turns, so each turn processes only its new tokens. The last sampled token
// is fed to the model lazily, at the start of the next turn, so a turn that
// ends the generation costs no extra forward pass.
type Session struct {
	g       *Generator
	cache   *llama.KVCache
	state   llama.State
	history []int     // every token of the conversation, fed or pending
	fed     int       // tokens of history already in the cache
	logits  []float32 // logits after history[:fed]
}

// NewSession starts an empty session with room for ctx positions (0: the
// model's context length).
func (g *Generator) NewSession(ctx int) *Session {
	if ctx <= 0 {
		ctx = g.Model.Config.ContextLen
	}
	return &Session{g: g, cache: g.Model.NewKVCache(ctx)}
}

// Len is the number of tokens in the conversation so far.
func (s *Session) Len() int { return len(s.history) }

// Tokens returns the conversation's tokens (not a copy).
func (s *Session) Tokens() []int { return s.history }

// Append encodes text, with BOS first when the session is empty and bos is
// true, and runs it (and any pending sampled token) through the model. It
// returns the number of tokens the text encoded to and the time taken.
func (s *Session) Append(text string, bos bool) (int, time.Duration, error) {
	toks := s.g.Tok.Encode(text, bos && len(s.history) == 0, false)
	start := time.Now()
	err := s.AppendTokens(toks)
	return len(toks), time.Since(start), err
}

// AppendTokens adds tokens to the conversation and runs them through the model.
func (s *Session) AppendTokens(toks []int) error {
	if len(s.history)+len(toks) > s.cache.Cap {
		return fmt.Errorf("the conversation needs %d positions, the context holds %d", len(s.history)+len(toks), s.cache.Cap)
	}
	s.history = append(s.history, toks...)
	return s.feed()
}

// feed runs the tokens not yet in the cache through the model.
func (s *Session) feed() error {
	if s.fed == len(s.history) {
		return nil
	}
	logits, err := s.g.Model.Forward(&s.state, s.cache, s.history[s.fed:], s.fed, false)
	if err != nil {
		return err
	}
	s.logits, s.fed = logits, len(s.history)
	return nil
}

// Continue samples up to max tokens after the conversation, calling emit
// with each piece as llama2.c prints it. It stops after an EOS or BOS token
// (kept in the conversation but not emitted) or when the context is full.
func (s *Session) Continue(max int, smp *Sampler, emit func([]byte) error) (Stats, error) {
	var st Stats
	start := time.Now()
	defer func() { st.GenTime = time.Since(start) }()
	smp.Begin()
	for st.GenTokens < max {
		if len(s.history) >= s.cache.Cap {
			st.ContextFull = true
			break
		}
		if err := s.feed(); err != nil {
			return st, err
		}
		if s.logits == nil {
			return st, fmt.Errorf("generate: nothing to continue from")
		}
		next, err := smp.Next(s.logits, s.history, s.fed-1)
		if err != nil {
			return st, err
		}
		st.GenTokens++
		prev := s.history[len(s.history)-1]
		s.history = append(s.history, next)
		if next == s.g.Tok.BOS() || next == s.g.Tok.EOS() {
			break
		}
		if err := emit(printable(s.g.Tok.DecodePiece(prev, next))); err != nil {
			return st, err
		}
	}
	st.GenTime = time.Since(start)
	return st, nil
}

// printable drops a piece that is a single control byte other than
// whitespace, as llama2.c's safe_printf does; bytes of multi-byte UTF-8
// characters pass.
func printable(p []byte) []byte {
	if len(p) == 1 && (p[0] < 0x20 && p[0] != '\n' && p[0] != '\t' && p[0] != '\r' && p[0] != '\v' && p[0] != '\f' || p[0] == 0x7f) {
		return nil
	}
	return p
}

// Tokens returns prompt followed by the n tokens m writes after it, drawn
// by smp through the same step as every other loop (Sampler.Next), without
// stopping at EOS (herd merge's check text; a greedy sampler makes it
// deterministic). n is cut to what the model's context holds.
func Tokens(m *llama.Model, prompt []int, n int, smp *Sampler) ([]int, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: an empty prompt")
	}
	n = max(0, min(n, m.Config.ContextLen-len(prompt)))
	cache := m.NewKVCache(len(prompt) + n)
	var st llama.State
	toks := append([]int(nil), prompt...)
	smp.Begin()
	for fed := 0; len(toks) < len(prompt)+n; {
		logits, err := m.Forward(&st, cache, toks[fed:], fed, false)
		if err != nil {
			return nil, err
		}
		fed = len(toks)
		next, err := smp.Next(logits, toks, fed-1)
		if err != nil {
			return nil, err
		}
		toks = append(toks, next)
	}
	return toks, nil
}
