package generate

import (
	"fmt"
	"slices"
	"time"
)

// SetTokens makes the conversation toks: the cached positions of the
// longest prefix toks shares with the conversation so far are kept, the
// rest is run through the model. A chat re-renders its whole history each
// turn; this way only the new turn costs a forward pass.
func (s *Session) SetTokens(toks []int) error {
	if len(toks) == 0 {
		return fmt.Errorf("generate: an empty conversation")
	}
	if len(toks) > s.cache.Cap {
		return fmt.Errorf("the conversation needs %d positions, the context holds %d", len(toks), s.cache.Cap)
	}
	keep := 0
	for keep < min(s.fed, len(toks)) && s.history[keep] == toks[keep] {
		keep++
	}
	if keep == len(toks) {
		keep-- // run the last token again for its logits
	}
	s.cache.Len, s.fed, s.logits = keep, keep, nil
	s.history = append(s.history[:0], toks...)
	return s.feed()
}

// Reply samples up to max tokens after the conversation and streams their
// text through emit in whole UTF-8 characters. It stops at a stop token or
// stop string (neither is part of the text), after max tokens, or when the
// context is full, and returns the text with the finish reason (FinishStop
// or FinishLength). The first token is decoded as the start of a text.
func (s *Session) Reply(max int, smp *Sampler, stop Stop, emit func(string) error) (string, string, Stats, error) {
	var st Stats
	start := time.Now()
	stopper := NewStopper(stop.Strings)
	var text []byte
	out := func(t string) error {
		if t == "" {
			return nil
		}
		text = append(text, t...)
		return emit(t)
	}
	finish := FinishLength
	smp.Begin()
	for st.GenTokens < max {
		if len(s.history) >= s.cache.Cap {
			st.ContextFull = true
			break
		}
		if err := s.feed(); err != nil {
			return string(text), "", st, err
		}
		next, err := smp.Next(s.logits, s.history, s.fed-1)
		if err != nil {
			return string(text), "", st, err
		}
		st.GenTokens++
		prev := s.history[len(s.history)-1]
		if st.GenTokens == 1 && s.g.Tok.BOS() >= 0 {
			prev = s.g.Tok.BOS()
		}
		s.history = append(s.history, next)
		if slices.Contains(stop.IDs, next) {
			finish = FinishStop
			break
		}
		t, hit := stopper.Push(s.g.Tok.DecodePiece(prev, next))
		if err := out(t); err != nil {
			return string(text), "", st, err
		}
		if hit {
			finish = FinishStop
			st.GenTime = time.Since(start)
			return string(text), finish, st, nil
		}
	}
	if err := out(stopper.Flush()); err != nil {
		return string(text), "", st, err
	}
	st.GenTime = time.Since(start)
	return string(text), finish, st, nil
}

// Cap is the number of positions the session's context holds.
func (s *Session) Cap() int { return s.cache.Cap }
