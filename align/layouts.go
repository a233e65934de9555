package align

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/sft"
)

// turn is one turn of a transcript, with where its text starts.
type turn struct {
	role, text string
	start      int // byte offset of the text in the transcript
}

// The speaker markers of Anthropic's HH-RLHF transcripts.
const (
	hhHuman     = "\n\nHuman:"
	hhAssistant = "\n\nAssistant:"
)

// splitHH cuts an HH-RLHF transcript into its turns.
func splitHH(f, s string) ([]turn, error) {
	var out []turn
	at := 0
	for {
		h, a := strings.Index(s[at:], hhHuman), strings.Index(s[at:], hhAssistant)
		if h < 0 && a < 0 {
			break
		}
		role, mark := chat.User, hhHuman
		if h < 0 || (a >= 0 && a < h) {
			role, mark, h = chat.Assistant, hhAssistant, a
		}
		if len(out) == 0 && strings.TrimSpace(s[:at+h]) != "" {
			return nil, &sft.RowError{Field: f, Msg: "text before the first \"\\n\\nHuman:\""}
		}
		if n := len(out); n > 0 {
			out[n-1].text = s[out[n-1].start : at+h]
		}
		at += h + len(mark)
		out = append(out, turn{role: role, start: at})
	}
	if len(out) == 0 {
		return nil, &sft.RowError{Field: f, Msg: "not an HH-RLHF transcript: no \"\\n\\nHuman:\" or \"\\n\\nAssistant:\" turns"}
	}
	out[len(out)-1].text = s[out[len(out)-1].start:]
	for i := range out {
		out[i].text = strings.TrimSpace(out[i].text)
	}
	return out, nil
}

// commonPrompt splits two transcripts of the same conversation: the shared
// prompt is their common turns up to the last user turn before they
// differ; each response is the rest of its transcript from the
// assistant's turn that follows (HH-RLHF's later turns, where a transcript
// has them, stay in the response as text, as TRL takes the remainder).
func commonPrompt(c, r []turn, cs, rs string) ([]chat.Message, string, string, error) {
	k := 0
	for k < len(c) && k < len(r) && c[k].role == r[k].role && c[k].text == r[k].text {
		k++
	}
	for k > 0 && c[k-1].role != chat.User {
		k--
	}
	if k == 0 {
		return nil, "", "", &sft.RowError{Field: "chosen", Msg: "chosen and rejected share no prompt ending with a human turn"}
	}
	rest := func(f string, ts []turn, s string) (string, error) {
		if k >= len(ts) {
			return "", &sft.RowError{Field: f, Msg: "no assistant response after the prompt"}
		}
		if ts[k].role != chat.Assistant {
			return "", &sft.RowError{Field: f, Msg: "the response after the prompt starts with a human turn"}
		}
		return strings.TrimSpace(s[ts[k].start:]), nil
	}
	chosen, err := rest("chosen", c, cs)
	if err != nil {
		return nil, "", "", err
	}
	rejected, err := rest("rejected", r, rs)
	if err != nil {
		return nil, "", "", err
	}
	// consecutive turns of one speaker (HH-RLHF has a few) are one message
	var prompt []chat.Message
	for _, t := range c[:k] {
		if n := len(prompt); n > 0 && prompt[n-1].Role == t.role {
			prompt[n-1].Content += "\n\n" + t.text
			continue
		}
		prompt = append(prompt, chat.Message{Role: t.role, Content: t.text})
	}
	return prompt, chosen, rejected, checkPrompt("chosen", prompt)
}

// hh reads a row with chosen and rejected and no prompt: HH-RLHF
// transcripts, or two OpenAI message lists with an implicit shared prompt.
func hh(row map[string]json.RawMessage) (*Example, error) {
	cr, err := field(row, "chosen")
	if err != nil {
		return nil, err
	}
	rr, err := field(row, "rejected")
	if err != nil {
		return nil, err
	}
	if isList(cr) || isList(rr) {
		return implicitPair(cr, rr)
	}
	cs, err := text(row, "chosen")
	if err != nil {
		return nil, err
	}
	rs, err := text(row, "rejected")
	if err != nil {
		return nil, err
	}
	c, err := splitHH("chosen", cs)
	if err != nil {
		return nil, err
	}
	r, err := splitHH("rejected", rs)
	if err != nil {
		return nil, err
	}
	p, chosen, rejected, err := commonPrompt(c, r, cs, rs)
	if err != nil {
		return nil, err
	}
	return &Example{Prompt: p, Chosen: chosen, Rejected: rejected, Paired: true, Format: HH}, nil
}

// isList says whether a JSON value is an array.
func isList(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return strings.HasPrefix(s, "[")
}

// implicitPair reads chosen and rejected message lists that repeat the
// prompt and differ in the last assistant message.
func implicitPair(cr, rr json.RawMessage) (*Example, error) {
	c, err := sft.Messages(cr, "chosen")
	if err != nil {
		return nil, err
	}
	r, err := sft.Messages(rr, "rejected")
	if err != nil {
		return nil, err
	}
	if len(c) < 2 || len(r) < 2 {
		return nil, &sft.RowError{Field: "chosen", Msg: "an implicit-prompt pair needs the prompt and an assistant message in both lists"}
	}
	p := c[:len(c)-1]
	if len(r) != len(c) || !sameMessages(p, r[:len(r)-1]) {
		return nil, &sft.RowError{Field: "rejected", Msg: "the prompt messages differ from chosen's"}
	}
	if err := checkPrompt("chosen", p); err != nil {
		return nil, err
	}
	for f, m := range []chat.Message{c[len(c)-1], r[len(r)-1]} {
		if m.Role != chat.Assistant {
			return nil, &sft.RowError{Field: []string{"chosen", "rejected"}[f], Msg: "the last message is not the assistant's"}
		}
	}
	return &Example{Prompt: p, Chosen: c[len(c)-1].Content, Rejected: r[len(r)-1].Content, Paired: true, Format: PromptPair}, nil
}

func sameMessages(a, b []chat.Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// promptOf reads a prompt: a string (one user message) or a message list.
func promptOf(row map[string]json.RawMessage, k string) ([]chat.Message, error) {
	raw, err := field(row, k)
	if err != nil {
		return nil, err
	}
	var p []chat.Message
	if isList(raw) {
		if p, err = sft.Messages(raw, k); err != nil {
			return nil, err
		}
	} else {
		s, err := text(row, k)
		if err != nil {
			return nil, err
		}
		p = []chat.Message{{Role: chat.User, Content: s}}
	}
	return p, checkPrompt(k, p)
}

// responseOf reads a response: a string, or a message list that is one
// assistant message, optionally after the prompt's messages repeated
// (UltraFeedback-binarized's chosen holds the whole conversation).
func responseOf(row map[string]json.RawMessage, k string, prompt []chat.Message) (string, error) {
	raw, err := field(row, k)
	if err != nil {
		return "", err
	}
	if !isList(raw) {
		return text(row, k)
	}
	msgs, err := sft.Messages(raw, k)
	if err != nil {
		return "", err
	}
	if len(msgs) > len(prompt) && sameMessages(msgs[:len(prompt)], prompt) {
		msgs = msgs[len(prompt):]
	}
	if len(msgs) != 1 || msgs[0].Role != chat.Assistant {
		return "", &sft.RowError{Field: k, Msg: fmt.Sprintf("want one assistant message (after the prompt's messages, if repeated), got %d messages", len(msgs))}
	}
	return msgs[0].Content, nil
}

func promptPair(row map[string]json.RawMessage) (*Example, error) {
	p, err := promptOf(row, "prompt")
	if err != nil {
		return nil, err
	}
	c, err := responseOf(row, "chosen", p)
	if err != nil {
		return nil, err
	}
	r, err := responseOf(row, "rejected", p)
	if err != nil {
		return nil, err
	}
	return &Example{Prompt: p, Chosen: c, Rejected: r, Paired: true, Format: PromptPair}, nil
}

// turnOf reads a ShareGPT response: a {from, value} object from the
// assistant, or a string.
func turnOf(row map[string]json.RawMessage, k string) (string, error) {
	raw, err := field(row, k)
	if err != nil {
		return "", err
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return text(row, k)
	}
	m, err := sft.ShareGPTTurn(obj, k)
	if err != nil {
		return "", err
	}
	if m.Role != chat.Assistant {
		return "", &sft.RowError{Field: k + ".from", Msg: "not the assistant's (gpt) turn"}
	}
	return m.Content, nil
}

func shareGPTPair(row map[string]json.RawMessage) (*Example, error) {
	var conv []map[string]json.RawMessage
	if err := json.Unmarshal(row["conversations"], &conv); err != nil {
		return nil, &sft.RowError{Field: "conversations", Msg: "want a list of {from, value} objects"}
	}
	var p []chat.Message
	if sys, ok := row["system"]; ok && string(sys) != "null" {
		var s string
		if json.Unmarshal(sys, &s) != nil {
			return nil, &sft.RowError{Field: "system", Msg: "not a string"}
		}
		if s != "" {
			p = append(p, chat.Message{Role: chat.System, Content: s})
		}
	}
	for i, t := range conv {
		m, err := sft.ShareGPTTurn(t, fmt.Sprintf("conversations[%d]", i))
		if err != nil {
			return nil, err
		}
		p = append(p, m)
	}
	if err := checkPrompt("conversations", p); err != nil {
		return nil, err
	}
	c, err := turnOf(row, "chosen")
	if err != nil {
		return nil, err
	}
	r, err := turnOf(row, "rejected")
	if err != nil {
		return nil, err
	}
	return &Example{Prompt: p, Chosen: c, Rejected: r, Paired: true, Format: ShareGPTPair}, nil
}

func stackExchange(row map[string]json.RawMessage) (*Example, error) {
	q, err := text(row, "question")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(q) == "" {
		return nil, &sft.RowError{Field: "question", Msg: "empty"}
	}
	c, err := text(row, "response_j")
	if err != nil {
		return nil, err
	}
	r, err := text(row, "response_k")
	if err != nil {
		return nil, err
	}
	return &Example{Prompt: []chat.Message{{Role: chat.User, Content: q}}, Chosen: c, Rejected: r, Paired: true, Format: StackExchange}, nil
}

// unpaired reads a KTO row: messages ending with the assistant's response,
// or prompt + completion, and a boolean label.
func unpaired(row map[string]json.RawMessage) (*Example, error) {
	var label bool
	if err := json.Unmarshal(row["label"], &label); err != nil {
		return nil, &sft.RowError{Field: "label", Msg: "not a boolean (true: desirable, false: undesirable)"}
	}
	ex := &Example{Desirable: label, Format: UnpairedRows}
	if raw, ok := row["messages"]; ok {
		msgs, err := sft.Messages(raw, "messages")
		if err != nil {
			return nil, err
		}
		if len(msgs) < 2 || msgs[len(msgs)-1].Role != chat.Assistant {
			return nil, &sft.RowError{Field: "messages", Msg: "want the prompt's turns and then the assistant's response"}
		}
		ex.Prompt, ex.Chosen = msgs[:len(msgs)-1], msgs[len(msgs)-1].Content
		return ex, checkPrompt("messages", ex.Prompt)
	}
	p, err := promptOf(row, "prompt")
	if err != nil {
		return nil, err
	}
	if ex.Chosen, err = responseOf(row, "completion", p); err != nil {
		return nil, err
	}
	ex.Prompt = p
	return ex, nil
}
