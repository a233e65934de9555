package judge

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
	"github.com/herd-llm/herd/tokenizer"
)

// Answerer writes the assistant's next message after msgs.
type Answerer interface {
	Answer(ctx context.Context, msgs []oai.Message, seed int64) (string, oai.Usage, error)
}

// ErrTooLong: the conversation does not fit the model's context (the
// question is counted as too_long, never cut).
var ErrTooLong = errors.New("the conversation is longer than the context")

// Local answers with a model through generate's scheduler and a chat
// template.
type Local struct {
	Sched       *generate.Scheduler
	Tok         tokenizer.Tokenizer
	Template    *chat.Template
	MaxTokens   int     // per answer (0: what the context leaves)
	Temperature float32 // 0: greedy, as MT-bench answers most categories
}

// Answer renders msgs through the template and generates the reply.
func (l *Local) Answer(ctx context.Context, msgs []oai.Message, seed int64) (string, oai.Usage, error) {
	cm := make([]chat.Message, len(msgs))
	for i, m := range msgs {
		cm[i] = chat.Message{Role: m.Role, Content: m.Content}
	}
	r, err := l.Template.Render(cm, true)
	if err != nil {
		return "", oai.Usage{}, err
	}
	ids := r.Encode(l.Tok).IDs
	room := l.Sched.Config().Context - len(ids)
	if room < 1 {
		return "", oai.Usage{}, fmt.Errorf("%w: %d tokens, the context holds %d", ErrTooLong, len(ids), l.Sched.Config().Context)
	}
	max := room
	if l.MaxTokens > 0 {
		max = min(max, l.MaxTokens)
	}
	req := generate.Request{Prompt: ids, MaxTokens: max, Standalone: true,
		Sampler: generate.SamplerConfig{Temperature: l.Temperature, Seed: uint64(seed)},
		Stop:    generate.Stop{IDs: l.Template.StopIDs(l.Tok), Strings: l.Template.Stop}}
	ch, err := l.Sched.Submit(ctx, req)
	if err != nil {
		return "", oai.Usage{}, err
	}
	var b strings.Builder
	for ev := range ch {
		b.WriteString(ev.Text)
		if ev.Done {
			if ev.Err != nil {
				return "", oai.Usage{}, ev.Err
			}
			return strings.TrimSpace(b.String()), oai.Usage{Prompt: int64(ev.Prompt), Completion: int64(ev.Tokens)}, nil
		}
	}
	return "", oai.Usage{}, ctx.Err()
}

// Endpoint answers with a model behind an OpenAI-compatible endpoint.
type Endpoint struct {
	Client      *oai.Client
	MaxTokens   int
	Temperature float64
}

// Answer asks the endpoint; an empty completion is an empty answer.
func (e *Endpoint) Answer(ctx context.Context, msgs []oai.Message, seed int64) (string, oai.Usage, error) {
	resp, err := e.Client.Chat(ctx, oai.Request{Messages: msgs, MaxTokens: e.MaxTokens, Temperature: e.Temperature, Seed: seed})
	if err != nil && !isEmpty(err) {
		return "", oai.Usage{}, err
	}
	return strings.TrimSpace(resp.Content), resp.Usage, nil
}

// Answers writes a model's answers to a question file in FastChat's
// model answer layout: the second turn is asked with the model's own
// first answer in the conversation.
type Answers struct {
	Options
	Questions string
	Model     string // model_id written with the answers
	Answerer  Answerer
	// Settings describe the answerer for the resume check (the model file,
	// the template, the sampling).
	Settings string
}

// Run answers every question.
func (a *Answers) Run(ctx context.Context) (*Stats, error) {
	if a.Answerer == nil || a.Model == "" {
		return nil, fmt.Errorf("judge answer: no model")
	}
	qs, err := ReadQuestions(a.Questions)
	if err != nil {
		return nil, err
	}
	hashes, err := hashFiles(a.Questions)
	if err != nil {
		return nil, err
	}
	r, err := a.open("judge answer", []any{&a.Options, a.Model, a.Settings, hashes})
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(qs))
	for i := range qs {
		keys[i] = qs[i].Key()
	}
	r.Stats().Total = len(keys)
	return r.Finish(r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, i int) error {
		q := &qs[i]
		var msgs []oai.Message
		var turns []string
		for _, t := range q.Turns {
			msgs = append(msgs, oai.Message{Role: "user", Content: t})
			text, usage, err := a.Answerer.Answer(ctx, msgs, u.NextSeed())
			if errors.Is(err, ErrTooLong) {
				u.Drop("too_long")
				return nil
			}
			if err != nil {
				return err
			}
			u.Count(usage)
			turns = append(turns, text)
			msgs = append(msgs, oai.Message{Role: "assistant", Content: text})
		}
		return u.Keep(u.Key, Answer{ID: u.Key, QuestionID: q.ID, Model: a.Model, Choices: []Choice{{Index: 0, Turns: turns}}})
	}, nil))
}
