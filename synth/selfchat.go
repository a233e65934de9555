package synth

import (
	"context"
	"strings"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// Turn is one message of a conversation in ShareGPT's layout ("human",
// "gpt" or "system"), the layout herd sft reads.
type Turn struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

// Conversation is an item in ShareGPT's layout.
type Conversation struct {
	ID            string `json:"id"`
	Conversations []Turn `json:"conversations"`
}

// EndMark is what the simulated user writes to end a self-chat.
const EndMark = "[END]"

// DropNoAnswer: the first question got no answer.
const DropNoAnswer = "no_answer"

const userSimSystem = `You are a person chatting with an AI assistant about a question you asked. Write your next message to the assistant: a follow-up question or request that builds on its last answer, in one to three sentences, in the same language. Write only the message. When you have nothing more to ask, write only ` + EndMark + `.`

// SelfChat makes conversations as Baize did: the teacher answers a seed
// question as the assistant, then plays the user and asks a follow-up,
// for up to Turns answers or until the user ends the chat.
type SelfChat struct {
	Options
	Input string // seed questions (ReadPrompts layouts; the first user turn)
	Turns int    // the most assistant turns (default 4)
	// AssistantSystem, when set, is the assistant's system message;
	// UserSystem replaces the simulated user's instructions.
	AssistantSystem, UserSystem string
}

// Run makes one conversation per seed question.
func (c *SelfChat) Run(ctx context.Context) (*Stats, error) {
	if c.Turns <= 0 {
		c.Turns = 4
	}
	if c.UserSystem == "" {
		c.UserSystem = userSimSystem
	}
	prompts, err := ReadPrompts(c.Input)
	if err != nil {
		return nil, err
	}
	settings := *c
	if settings.Input, err = fileHash(c.Input); err != nil {
		return nil, err
	}
	r, err := newRunner(c.Options, "self-chat", fingerprint(settings)+" model "+c.Client.Model())
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(prompts))
	for i, p := range prompts {
		keys[i] = p.ID
	}
	r.Stats().Total = len(keys)
	return r.Finish(r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, i int) error {
		conv, err := c.chat(ctx, u, prompts[i].User[0])
		if err != nil || conv == nil {
			return err
		}
		return u.Keep(conv.ID, conv)
	}, nil))
}

// chat plays one conversation; nil, nil is a drop.
func (c *SelfChat) chat(ctx context.Context, u *journal.Unit, question string) (*Conversation, error) {
	conv := &Conversation{ID: u.Key, Conversations: []Turn{{"human", strings.TrimSpace(question)}}}
	for turn := 0; turn < c.Turns; turn++ {
		answer, err := c.say(ctx, u, c.assistantView(conv))
		if err != nil {
			return nil, err
		}
		if answer == "" {
			break
		}
		conv.Conversations = append(conv.Conversations, Turn{"gpt", answer})
		if turn == c.Turns-1 {
			break
		}
		next, err := c.say(ctx, u, c.userView(conv))
		if err != nil {
			return nil, err
		}
		if next == "" || strings.Contains(next, EndMark) {
			break
		}
		conv.Conversations = append(conv.Conversations, Turn{"human", next})
	}
	if n := len(conv.Conversations); n > 0 && conv.Conversations[n-1].From == "human" {
		conv.Conversations = conv.Conversations[:n-1] // a question left without its answer
	}
	if len(conv.Conversations) < 2 {
		u.Drop(DropNoAnswer)
		return nil, nil
	}
	return conv, nil
}

// say sends a request and returns its text ("" for an empty completion).
func (c *SelfChat) say(ctx context.Context, u *journal.Unit, msgs []oai.Message) (string, error) {
	resp, err := u.Chat(ctx, oai.Request{Messages: msgs, Temperature: c.Temperature, MaxTokens: c.MaxTokens, Stop: c.Stop})
	if errEmpty(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(resp.Content), nil
}

// assistantView is the conversation as the assistant sees it.
func (c *SelfChat) assistantView(conv *Conversation) []oai.Message {
	var m []oai.Message
	if c.AssistantSystem != "" {
		m = append(m, oai.Message{Role: "system", Content: c.AssistantSystem})
	}
	for _, t := range conv.Conversations {
		role := "user"
		if t.From == "gpt" {
			role = "assistant"
		}
		m = append(m, oai.Message{Role: role, Content: t.Value})
	}
	return m
}

// userView is the conversation with the roles swapped: the simulated
// user's own messages are its assistant turns.
func (c *SelfChat) userView(conv *Conversation) []oai.Message {
	m := []oai.Message{{Role: "system", Content: c.UserSystem}}
	for _, t := range conv.Conversations {
		role := "assistant"
		if t.From == "gpt" {
			role = "user"
		}
		m = append(m, oai.Message{Role: role, Content: t.Value})
	}
	return m
}
