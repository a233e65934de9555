package generate

import (
	"fmt"
	"time"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// Stats are the timings of one generation.
type Stats struct {
	PromptTokens int           // tokens fed from the prompt, BOS included
	PromptTime   time.Duration // time to process the prompt
	GenTokens    int           // tokens sampled
	GenTime      time.Duration // time to sample and process them
	ContextFull  bool          // generation stopped because the KV cache was full
}

// PromptRate is prompt processing speed in tokens per second.
func (s Stats) PromptRate() float64 { return rate(s.PromptTokens, s.PromptTime) }

// GenRate is generation speed in tokens per second.
func (s Stats) GenRate() float64 { return rate(s.GenTokens, s.GenTime) }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Options control one generation.
type Options struct {
	MaxTokens int  // new tokens to sample
	Context   int  // positions of KV cache to allocate (0: the model's context length)
	NoBOS     bool // do not prepend BOS to the prompt
}

// Generator runs the decode loop of one model and its tokenizer.
type Generator struct {
	Model *llama.Model
	Tok   tokenizer.Tokenizer
}

// Generate feeds prompt, then samples up to opt.MaxTokens tokens, calling
// emit with the text of every token after BOS as llama2.c prints it: the
// prompt's own pieces first, then each sampled piece. It stops early when the
// model emits BOS or EOS or the context is full.
func (g *Generator) Generate(prompt string, opt Options, s *Sampler, emit func([]byte) error) (Stats, error) {
	var st Stats
	toks := g.Tok.Encode(prompt, !opt.NoBOS, false)
	if len(toks) == 0 {
		return st, fmt.Errorf("generate: empty prompt and no BOS")
	}
	ctx := opt.Context
	if ctx <= 0 {
		ctx = g.Model.Config.ContextLen
	}
	if len(toks) > ctx {
		return st, fmt.Errorf("generate: prompt of %d tokens exceeds the context of %d", len(toks), ctx)
	}
	sess := g.NewSession(min(ctx, len(toks)+opt.MaxTokens))
	for i := 1; i < len(toks); i++ {
		if err := emit(printable(g.Tok.DecodePiece(toks[i-1], toks[i]))); err != nil {
			return st, err
		}
	}
	start := time.Now()
	if err := sess.AppendTokens(toks); err != nil {
		return st, err
	}
	promptTime := time.Since(start)
	st, err := sess.Continue(opt.MaxTokens, s, emit)
	st.PromptTokens, st.PromptTime = len(toks), promptTime
	if st.GenTokens == opt.MaxTokens {
		st.ContextFull = false // it stopped because it had written them all
	}
	return st, err
}
