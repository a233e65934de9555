package rl

import (
	"strings"

	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// Sampling is how rollouts are drawn: the sampler's filters and
// temperature (its Seed is replaced per rollout batch), the longest
// response in tokens, and the strings that end one (the tokens up to and
// including the one that completed the string are kept; the text is cut
// before it).
type Sampling struct {
	generate.SamplerConfig
	MaxNew int
	Stop   []string
}

// Rollout is one sampled response.
type Rollout struct {
	Prompt   int   // index into the prompts
	Response []int // sampled tokens (EOS included when it ended so)
	Text     string
	EOS      bool
}

// Generate samples one response to each of prompts (indices into all)
// with the policy, batched: the prompts are prefilled in one pass, then
// every unfinished sequence advances one token per pass, each with its own
// KV cache; the tokens are drawn in sequence order from one sampler seeded
// with seed, so the same seed and weights give the same rollouts. A
// response ends at EOS (or a token in stopIDs), a stop string, or MaxNew
// tokens. It returns the rollouts and the positions the passes processed.
func (p *Policy) Generate(all []Prompt, prompts []int, tok tokenizer.Tokenizer, stopIDs []int, s Sampling, seed uint64) ([]Rollout, int, error) {
	m := p.Model
	cfg := s.SamplerConfig
	cfg.Seed = seed
	smp := generate.NewSampler(cfg)
	n := len(prompts)
	out := make([]Rollout, n)
	caches := make([]*llama.KVCache, n)
	seqs := make([]llama.Seq, n)
	hist := make([][]int, n)
	for i, pi := range prompts {
		out[i].Prompt = pi
		caches[i] = m.NewKVCache(len(all[pi].Tokens) + s.MaxNew)
		seqs[i] = llama.Seq{Tokens: all[pi].Tokens, Cache: caches[i]}
		hist[i] = append([]int(nil), all[pi].Tokens...)
	}
	active := make([]int, n) // the rollouts of seqs, in order
	for i := range active {
		active[i] = i
	}
	stops := map[int]bool{}
	for _, id := range stopIDs {
		stops[id] = true
	}
	tokens := 0
	for len(active) > 0 {
		batch := make([]llama.Seq, len(active))
		for j, i := range active {
			batch[j] = seqs[i]
			tokens += len(seqs[i].Tokens)
		}
		logits, err := m.ForwardBatch(&p.infer, batch)
		if err != nil {
			return nil, 0, err
		}
		next := active[:0:0]
		for j, i := range active {
			t := smp.Sample(logits[j], hist[i])
			r := &out[i]
			r.Response = append(r.Response, t)
			hist[i] = append(hist[i], t)
			done := len(r.Response) >= s.MaxNew
			if stops[t] {
				r.EOS, done = true, true
			}
			if !done && len(s.Stop) > 0 && hasStop(tok.Decode(r.Response), s.Stop) {
				done = true
			}
			if !done {
				seqs[i] = llama.Seq{Tokens: []int{t}, Cache: caches[i]}
				next = append(next, i)
			}
		}
		active = next
	}
	for i := range out {
		r := &out[i]
		body := r.Response
		if r.EOS {
			body = body[:len(body)-1]
		}
		r.Text = cutStop(tok.Decode(body), s.Stop)
	}
	return out, tokens, nil
}

func hasStop(text string, stops []string) bool {
	for _, s := range stops {
		if s != "" && strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// cutStop is text before its first stop string.
func cutStop(text string, stops []string) string {
	for _, s := range stops {
		if i := strings.Index(text, s); s != "" && i >= 0 {
			text = text[:i]
		}
	}
	return text
}
