// Package chat renders conversations into the text and tokens a chat model
// was trained on. One Template both renders a conversation for inference
// (ending with the assistant's header, ready for generation) and marks the
// assistant spans a model should learn in supervised fine-tuning, so training
// and serving cannot disagree. Templates come built in (Vicuna v1.1, Alpaca,
// Llama-2, Llama-3, ChatML, Baichuan, Metharme for Pygmalion, raw) with the
// exact strings of their origins, or from a Jinja chat_template found in GGUF
// metadata or a Hugging Face tokenizer_config.json. Each carries the stop
// strings and stop tokens that end an assistant turn.
package chat

import (
	"fmt"
	"sort"
	"strings"
)

// Message is one turn of a conversation. Role is "system", "user" or
// "assistant".
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Roles a message may have.
const (
	System    = "system"
	User      = "user"
	Assistant = "assistant"
)

// Kind says what a rendered Part is.
type Kind int

const (
	// Text is template text (role headers, separators, system prompts, user
	// messages): encoded as text, never learned.
	Text Kind = iota
	// Special is a token the template writes by name ("</s>",
	// "<|eot_id|>"): encoded as that token when the vocabulary has it (or,
	// for BOS and EOS, as the tokenizer's own), otherwise as text.
	Special
	// Content is an assistant message's own text: learned.
	Content
)

// Token names what a Special part stands for beyond its text.
type Token int

const (
	// Named is a special piece looked up by its text in the vocabulary.
	Named Token = iota
	// BOS is the tokenizer's beginning-of-sequence token, whatever its text.
	BOS
	// EOS is the tokenizer's end-of-sequence token, whatever its text.
	EOS
)

// Part is a piece of a rendered conversation.
type Part struct {
	Text  string
	Kind  Kind
	Token Token // for Special parts
	// Learn marks the assistant's text and the end-of-turn marker after it
	// (the tokens a fine-tuned model must produce).
	Learn bool
	// Msg is the index of the message the part belongs to, -1 for template
	// text between messages.
	Msg int
}

// Rendered is a conversation laid out by a template.
type Rendered struct {
	Parts []Part
	// BOS says that the token sequence begins with the tokenizer's BOS,
	// which the text does not show (SentencePiece models add it when
	// encoding, as FastChat relies on).
	BOS bool
}

// Text is the conversation as one string, as the template's origin prints it.
func (r *Rendered) Text() string {
	var sb strings.Builder
	for _, p := range r.Parts {
		sb.WriteString(p.Text)
	}
	return sb.String()
}

// Template turns conversations into model input. A Template is immutable and
// safe for concurrent use.
type Template struct {
	// Name is how the template is chosen (--template NAME).
	Name string
	// Origin says where its strings were taken from.
	Origin string
	// DefaultSystem is the system prompt used when a conversation has none.
	DefaultSystem string
	// Stop lists strings that end the assistant's turn when generated
	// (FastChat's stop_str); the text from the stop string on is dropped.
	Stop []string
	// StopTokens lists pieces that end the assistant's turn (FastChat's
	// stop_token_ids, named by piece so that they resolve in any
	// vocabulary); the tokenizer's EOS always does.
	StopTokens []string

	bos    bool
	render func(t *Template, msgs []Message, gen bool) ([]Part, error)
}

// Render lays out msgs. With gen (add_generation_prompt) the text ends with
// the header of the assistant's next turn, ready for generation.
func (t *Template) Render(msgs []Message, gen bool) (*Rendered, error) {
	if err := check(msgs); err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name, err)
	}
	parts, err := t.render(t, msgs, gen)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name, err)
	}
	bos := t.bos && !(len(parts) > 0 && parts[0].Kind == Special && parts[0].Token == BOS)
	return &Rendered{Parts: parts, BOS: bos}, nil
}

// check rejects roles the templates do not know and system messages after
// the first turn.
func check(msgs []Message) error {
	for i, m := range msgs {
		switch m.Role {
		case System:
			if i > 0 {
				return fmt.Errorf("message %d: a system message may only come first", i)
			}
		case User, Assistant:
		default:
			return fmt.Errorf("message %d: role %q (want system, user or assistant)", i, m.Role)
		}
	}
	return nil
}

// system splits off the conversation's system prompt (or the default).
func (t *Template) system(msgs []Message) (string, []Message, int) {
	if len(msgs) > 0 && msgs[0].Role == System {
		return msgs[0].Content, msgs[1:], 1
	}
	return t.DefaultSystem, msgs, 0
}

var registry = map[string]*Template{}

func register(t *Template, aliases ...string) {
	registry[t.Name] = t
	for _, a := range aliases {
		registry[a] = t
	}
}

// Lookup returns the built-in template called name (case-insensitive).
func Lookup(name string) (*Template, error) {
	if t, ok := registry[strings.ToLower(name)]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("unknown chat template %q (known: %s)", name, strings.Join(Names(), ", "))
}

// Names lists the built-in templates by their main names.
func Names() []string {
	var out []string
	for k, t := range registry {
		if k == t.Name {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
