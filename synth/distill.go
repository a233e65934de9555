package synth

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// Pair is a preference pair: two answers to one prompt, the better first.
type Pair struct {
	ID       string `json:"id"`
	System   string `json:"system,omitempty"`
	Prompt   string `json:"prompt"`
	Chosen   string `json:"chosen"`
	Rejected string `json:"rejected"`
}

// Drop reasons of distill.
const (
	DropTie       = "tie"       // the judge preferred neither, or changed its mind when the answers swapped places
	DropIdentical = "identical" // the two answers are the same text
)

const comparePrompt = `You judge answers of AI assistants. Read the user's question and the two answers below, and decide which answer serves the user better: consider helpfulness, correctness, depth and clarity. Do not let the order of the answers, their length or the assistants' names sway you. Explain your judgment briefly, then give your verdict on the last line as [[A]] if answer A is better, [[B]] if answer B is better, or [[C]] for a tie.

[Question]
%s

[Answer A]
%s

[Answer B]
%s
`

var verdictRE = regexp.MustCompile(`\[\[([ABC])\]\]`)

// ParseVerdict reads the last "[[A]]", "[[B]]" or "[[C]]" of a judgment;
// "" when there is none.
func ParseVerdict(s string) string {
	m := verdictRE.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// Distill answers a file of prompts with the teacher (GPT4ALL, Koala):
// Samples answers per prompt as SFT conversations, every user turn of a
// multi-turn prompt answered in order; or, with Pairs, two answers to the
// first user turn judged by the teacher in both orders, written as a
// preference pair when both judgments agree.
type Distill struct {
	Options
	Input   string
	Samples int // answers per prompt (default 1; Pairs: 2)
	Pairs   bool
}

// Run answers every prompt.
func (d *Distill) Run(ctx context.Context) (*Stats, error) {
	if d.Samples <= 0 {
		d.Samples = 1
	}
	prompts, err := ReadPrompts(d.Input)
	if err != nil {
		return nil, err
	}
	settings := *d
	if settings.Input, err = fileHash(d.Input); err != nil {
		return nil, err
	}
	r, err := newRunner(d.Options, "distill", fingerprint(settings)+" model "+d.Client.Model())
	if err != nil {
		return nil, err
	}
	var keys []string
	samples := d.Samples
	if d.Pairs {
		samples = 1
	}
	for _, p := range prompts {
		for s := range samples {
			keys = append(keys, fmt.Sprintf("%s.s%d", p.ID, s))
		}
	}
	r.Stats().Total = len(keys)
	return r.Finish(r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, i int) error {
		p := &prompts[i/samples]
		if d.Pairs {
			return d.pair(ctx, u, p)
		}
		return d.answer(ctx, u, p)
	}, nil))
}

// ask sends msgs; "" for an empty completion.
func (d *Distill) ask(ctx context.Context, u *journal.Unit, msgs []oai.Message, temp float64) (string, error) {
	resp, err := u.Chat(ctx, oai.Request{Messages: msgs, Temperature: temp, MaxTokens: d.MaxTokens, Stop: d.Stop})
	if errEmpty(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(resp.Content), nil
}

// answer writes one conversation with every user turn answered.
func (d *Distill) answer(ctx context.Context, u *journal.Unit, p *Prompt) error {
	conv := Conversation{ID: u.Key}
	var msgs []oai.Message
	if p.System != "" {
		conv.Conversations = append(conv.Conversations, Turn{"system", p.System})
		msgs = append(msgs, oai.Message{Role: "system", Content: p.System})
	}
	for _, q := range p.User {
		msgs = append(msgs, oai.Message{Role: "user", Content: q})
		a, err := d.ask(ctx, u, msgs, d.Temperature)
		if err != nil {
			return err
		}
		if a == "" {
			break
		}
		msgs = append(msgs, oai.Message{Role: "assistant", Content: a})
		conv.Conversations = append(conv.Conversations, Turn{"human", q}, Turn{"gpt", a})
	}
	// a later turn left unanswered ends the conversation after the last answer
	if n := len(conv.Conversations); n == 0 || conv.Conversations[n-1].From != "gpt" {
		u.Drop(DropEmpty)
		return nil
	}
	return u.Keep(conv.ID, conv)
}

// pair writes a preference pair, or drops the prompt.
func (d *Distill) pair(ctx context.Context, u *journal.Unit, p *Prompt) error {
	msgs := p.Messages()
	var ans [2]string
	for k := range ans {
		a, err := d.ask(ctx, u, msgs, d.Temperature)
		if err != nil {
			return err
		}
		if a == "" {
			u.Drop(DropEmpty)
			return nil
		}
		ans[k] = a
	}
	if ans[0] == ans[1] {
		u.Drop(DropIdentical)
		return nil
	}
	var verdicts [2]string
	for k, order := range [2][2]string{{ans[0], ans[1]}, {ans[1], ans[0]}} {
		j, err := d.ask(ctx, u, []oai.Message{{Role: "user", Content: fmt.Sprintf(comparePrompt, p.User[0], order[0], order[1])}}, 0)
		if err != nil {
			return err
		}
		verdicts[k] = ParseVerdict(j)
		if verdicts[k] == "" {
			u.Drop(DropJudgeUnparsed)
			return nil
		}
	}
	// the first answer wins when it is A in the first order and B in the second
	switch {
	case verdicts[0] == "A" && verdicts[1] == "B":
		return u.Keep(u.Key, Pair{ID: u.Key, System: p.System, Prompt: p.User[0], Chosen: ans[0], Rejected: ans[1]})
	case verdicts[0] == "B" && verdicts[1] == "A":
		return u.Keep(u.Key, Pair{ID: u.Key, System: p.System, Prompt: p.User[0], Chosen: ans[1], Rejected: ans[0]})
	}
	u.Drop(DropTie)
	return nil
}
