package align

import (
	"fmt"
	"slices"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/tokenizer"
)

// Sample is an encoded example: the prompt's tokens exactly as the chat
// template renders it for generation, and each response's tokens (its text
// and the template's end-of-turn marker), the only tokens with a loss.
type Sample struct {
	Prompt    []int
	Chosen    []int // the response of an unpaired sample
	Rejected  []int // nil for an unpaired sample
	Paired    bool
	Desirable bool
	Margin    float64
	Where     string
}

// Seq is the training sequence of prompt + resp: the input tokens (all
// but the last) and, per position, the token to predict or -1 where no
// loss is taken (inside the prompt).
func (s *Sample) Seq(resp []int) (tokens, targets []int) {
	full := slices.Concat(s.Prompt, resp)
	tokens = full[:len(full)-1]
	targets = make([]int, len(tokens))
	for i := range targets {
		targets[i] = -1
		if i+1 >= len(s.Prompt) {
			targets[i] = full[i+1]
		}
	}
	return tokens, targets
}

// Learned is the number of predicted tokens of resp in Seq(resp).
func (s *Sample) Learned(resp []int) int {
	if len(s.Prompt) == 0 {
		return len(resp) - 1
	}
	return len(resp)
}

// Unpair splits a paired sample into two unpaired ones (chosen desirable,
// rejected undesirable), as KTO trains on paired data.
func (s *Sample) Unpair() []Sample {
	if !s.Paired {
		return []Sample{*s}
	}
	return []Sample{
		{Prompt: s.Prompt, Chosen: s.Chosen, Desirable: true, Where: s.Where},
		{Prompt: s.Prompt, Chosen: s.Rejected, Desirable: false, Where: s.Where},
	}
}

// Overflow says what happens to an example longer than MaxLen.
type Overflow int

const (
	// Truncate cuts the prompt from the left (keeping a leading BOS) to
	// MaxPrompt tokens and then the responses from the right, as TRL does.
	Truncate Overflow = iota
	// Drop skips the example.
	Drop
)

// ParseOverflow reads "truncate" or "drop".
func ParseOverflow(s string) (Overflow, error) {
	switch s {
	case "truncate":
		return Truncate, nil
	case "drop":
		return Drop, nil
	}
	return 0, fmt.Errorf("overflow %q: want truncate or drop", s)
}

// Stats count what an Encoder did; Notes say where, for the first few.
type Stats struct {
	Examples  int // examples seen
	Samples   int // samples produced
	Identical int // pairs whose chosen and rejected are the same text: dropped
	Empty     int // examples with an empty (all-space) response: dropped
	Truncated int // examples longer than MaxLen, truncated
	Dropped   int // examples longer than MaxLen, dropped
	Tokens    int64
	Notes     []string
}

// maxNotes bounds Stats.Notes.
const maxNotes = 20

func (s *Stats) note(format string, a ...any) {
	if len(s.Notes) < maxNotes {
		s.Notes = append(s.Notes, fmt.Sprintf(format, a...))
	}
}

// String summarizes the counts for a log.
func (s Stats) String() string {
	return fmt.Sprintf("%d examples → %d samples (%d tokens); dropped: %d identical chosen/rejected, %d empty responses, %d too long; %d truncated",
		s.Examples, s.Samples, s.Tokens, s.Identical, s.Empty, s.Dropped, s.Truncated)
}

// Encoder renders examples through a chat template and tokenizes them.
type Encoder struct {
	Tok      tokenizer.Tokenizer
	Template *chat.Template
	// MaxLen bounds prompt + the longer response, in tokens; MaxPrompt the
	// prompt when an example is truncated (0: MaxLen/2).
	MaxLen, MaxPrompt int
	Overflow          Overflow
	Stats             Stats
}

// response renders prompt + one assistant message and returns the
// prompt's tokens and the response's (its text and end-of-turn marker).
func (e *Encoder) response(prompt []chat.Message, resp string) ([]int, []int, error) {
	msgs := append(slices.Clip(prompt), chat.Message{Role: chat.Assistant, Content: resp})
	r, err := e.Template.Render(msgs, false)
	if err != nil {
		return nil, nil, err
	}
	enc := r.Encode(e.Tok)
	if len(enc.Spans) == 0 || enc.Spans[len(enc.Spans)-1].Msg != len(prompt) {
		return nil, nil, fmt.Errorf("template %s: the rendering has no span for the response", e.Template.Name)
	}
	sp := enc.Spans[len(enc.Spans)-1]
	return enc.IDs[:sp.Start], enc.IDs[sp.Start:sp.End], nil
}

// Encode turns ex into a sample, or nil when it is dropped (counted in
// Stats). An error names the example's file:line.
func (e *Encoder) Encode(ex *Example) (*Sample, error) {
	e.Stats.Examples++
	if strings.TrimSpace(ex.Chosen) == "" || (ex.Paired && strings.TrimSpace(ex.Rejected) == "") {
		e.Stats.Empty++
		e.Stats.note("%s: an empty response: dropped", ex.Where)
		return nil, nil
	}
	if ex.Paired && ex.Chosen == ex.Rejected {
		e.Stats.Identical++
		e.Stats.note("%s: chosen and rejected are identical: dropped", ex.Where)
		return nil, nil
	}
	p, c, err := e.response(ex.Prompt, ex.Chosen)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ex.Where, err)
	}
	s := &Sample{Prompt: p, Chosen: c, Paired: ex.Paired, Desirable: ex.Desirable, Margin: ex.Margin, Where: ex.Where}
	if ex.Paired {
		p2, r, err := e.response(ex.Prompt, ex.Rejected)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Where, err)
		}
		if !slices.Equal(p, p2) {
			return nil, fmt.Errorf("%s: template %s renders the prompt differently before chosen and rejected", ex.Where, e.Template.Name)
		}
		s.Rejected = r
	}
	if !e.fit(s) {
		return nil, nil
	}
	e.Stats.Samples++
	e.Stats.Tokens += int64(len(s.Prompt) + len(s.Chosen) + len(s.Rejected))
	return s, nil
}

// fit applies MaxLen to s; false means s was dropped.
func (e *Encoder) fit(s *Sample) bool {
	if e.MaxLen <= 0 || len(s.Prompt)+max(len(s.Chosen), len(s.Rejected)) <= e.MaxLen {
		return true
	}
	if e.Overflow == Drop {
		e.Stats.Dropped++
		return false
	}
	mp := e.MaxPrompt
	if mp <= 0 {
		mp = e.MaxLen / 2
	}
	if len(s.Prompt) > mp {
		keep := s.Prompt[len(s.Prompt)-mp:]
		if bos := e.Tok.BOS(); bos >= 0 && s.Prompt[0] == bos && mp > 1 {
			keep = slices.Concat([]int{bos}, s.Prompt[len(s.Prompt)-mp+1:])
		}
		s.Prompt = keep
	}
	room := e.MaxLen - len(s.Prompt)
	if room < 1 {
		e.Stats.Dropped++
		return false
	}
	s.Chosen = s.Chosen[:min(room, len(s.Chosen))]
	if s.Rejected != nil {
		s.Rejected = s.Rejected[:min(room, len(s.Rejected))]
	}
	e.Stats.Truncated++
	return true
}

// EncodeAll encodes every example, in order, skipping the dropped ones.
func (e *Encoder) EncodeAll(exs []*Example) ([]Sample, error) {
	var out []Sample
	for _, ex := range exs {
		s, err := e.Encode(ex)
		if err != nil {
			return nil, err
		}
		if s != nil {
			out = append(out, *s)
		}
	}
	return out, nil
}
