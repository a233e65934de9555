package sft

import (
	"fmt"
	"io"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/tokenizer"
)

// Sample is one training sequence: Tokens, and for each position the token
// to predict there, or -1 where no loss is taken (everything but the
// assistant's own text and end-of-turn marker).
type Sample struct {
	Tokens  []int
	Targets []int
	Where   string // file:line of the example
}

// Learned counts the positions with a loss.
func (s *Sample) Learned() int {
	n := 0
	for _, t := range s.Targets {
		if t >= 0 {
			n++
		}
	}
	return n
}

// Overflow says what happens to an example longer than the context.
type Overflow int

const (
	// Drop skips it (counted in Stats.Dropped).
	Drop Overflow = iota
	// Split cuts it into windows of the context length, each with its own
	// part of the mask; windows with nothing to learn are dropped
	// (counted in Stats.Split and Stats.Windows).
	Split
)

// Stats count what an Encoder did.
type Stats struct {
	Examples int   // examples encoded
	Samples  int   // samples produced
	Dropped  int   // examples longer than the context, dropped
	Split    int   // examples longer than the context, split
	Windows  int   // windows of split examples dropped for having nothing to learn
	Tokens   int64 // positions in the samples
	Learned  int64 // positions with a loss
	TooLarge int   // rows longer than Encoder.MaxRow bytes, skipped before parsing
	// Held counts the examples a validation split held out (MixSplit),
	// HeldSamples their samples; they are counted above as well.
	Held, HeldSamples int
}

// Encoder renders examples through a chat template and tokenizes them.
type Encoder struct {
	Tok      tokenizer.Tokenizer
	Template *chat.Template
	Ctx      int // the longest sample, in tokens
	Overflow Overflow
	// MaxRow is the longest dataset row read, in bytes; longer rows are
	// skipped before parsing and counted (Stats.TooLarge). 0 means
	// DefaultMaxRow, < 0 no limit.
	MaxRow int
	Stats  Stats
}

// Encode turns ex into samples: the whole conversation rendered by the
// template (every assistant turn learned), shifted by one into inputs and
// targets.
func (e *Encoder) Encode(ex *Example) ([]Sample, error) {
	r, err := e.Template.Render(ex.Messages, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ex.Where, err)
	}
	enc := r.Encode(e.Tok)
	ids := enc.IDs
	learn := make([]bool, len(ids))
	for _, s := range enc.Spans {
		for i := s.Start; i < s.End; i++ {
			learn[i] = true
		}
	}
	e.Stats.Examples++
	if len(ids) < 2 {
		e.Stats.Dropped++
		return nil, nil
	}
	window := func(lo, hi int) Sample { // inputs ids[lo:hi], targets ids[lo+1:hi+1]
		s := Sample{Tokens: ids[lo:hi], Targets: make([]int, hi-lo), Where: ex.Where}
		for i := lo; i < hi; i++ {
			s.Targets[i-lo] = -1
			if learn[i+1] {
				s.Targets[i-lo] = ids[i+1]
			}
		}
		return s
	}
	n := len(ids) - 1
	var out []Sample
	switch {
	case n <= e.Ctx:
		out = append(out, window(0, n))
	case e.Overflow == Drop:
		e.Stats.Dropped++
		return nil, nil
	default:
		e.Stats.Split++
		for lo := 0; lo < n; lo += e.Ctx {
			s := window(lo, min(n, lo+e.Ctx))
			if s.Learned() == 0 {
				e.Stats.Windows++
				continue
			}
			out = append(out, s)
		}
	}
	for i := range out {
		e.Stats.Samples++
		e.Stats.Tokens += int64(len(out[i].Tokens))
		e.Stats.Learned += int64(out[i].Learned())
	}
	return out, nil
}

// String summarizes the counts for a log.
func (s Stats) String() string {
	out := fmt.Sprintf("%d examples → %d samples, %d tokens (%d learned); %d over the context dropped, %d split (%d empty windows dropped)",
		s.Examples, s.Samples, s.Tokens, s.Learned, s.Dropped, s.Split, s.Windows)
	if s.TooLarge > 0 {
		out += fmt.Sprintf("; %d rows over the row size limit skipped unparsed (--max-row-bytes)", s.TooLarge)
	}
	if s.Held > 0 {
		out += fmt.Sprintf("; %d examples (%d samples) held out for validation", s.Held, s.HeldSamples)
	}
	return out
}

// LoadAll reads every file of paths, encodes every example and returns the
// samples in file order, with the count of malformed rows skipped (only
// with skipBad; otherwise the first one is the error).
func (e *Encoder) LoadAll(paths []string, skipBad bool) ([]Sample, int, error) {
	var out []Sample
	bad := 0
	for _, p := range paths {
		exs, b, err := e.loadFile(p, skipBad)
		bad += b
		if err != nil {
			return nil, bad, err
		}
		for _, ss := range exs {
			out = append(out, ss...)
		}
	}
	return out, bad, nil
}

// loadFile reads path and encodes every example: the samples of each
// example that produced any (several for a split one), in file order, and
// the count of malformed rows skipped.
func (e *Encoder) loadFile(path string, skipBad bool) ([][]Sample, int, error) {
	r, err := Open(path, skipBad)
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	r.MaxRow = e.MaxRow
	var out [][]Sample
	for {
		ex, err := r.Next()
		if err == io.EOF {
			e.Stats.TooLarge += r.TooLarge()
			return out, r.Bad(), nil
		}
		if err != nil {
			return nil, r.Bad(), err
		}
		ss, err := e.Encode(ex)
		if err != nil {
			return nil, r.Bad(), err
		}
		if len(ss) > 0 {
			out = append(out, ss)
		}
	}
}
