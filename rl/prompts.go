package rl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/herd-llm/herd/align"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tokenizer"
)

// Prompt is one encoded prompt.
type Prompt struct {
	Tokens []int
	Text   string // what the model reads (rendered through the template)
	Answer string // a reference answer (gsm8k rule, external scorers)
	Where  string // file:line
}

// PromptStats counts what ReadPrompts kept and dropped.
type PromptStats struct {
	Read, Kept, TooLong int
}

// ReadPrompts reads a prompt file: plain text (one prompt a line, blank
// lines skipped), or JSON Lines (.jsonl/.json) whose rows have "prompt"
// (a string, or an OpenAI message list), "messages" or "conversations"
// (a conversation ending with a user turn), and optionally "answer";
// rows of herd rm train's preference layouts give their prompt (HH-RLHF
// transcripts, StackExchange's question: StackLLaMA's PPO prompts).
// With a template (tmpl not nil) every prompt is rendered as a user turn
// (or the conversation as is) with the assistant's header appended, as
// the model sees it at inference; without, the text is the prompt after
// BOS. A prompt whose tokens and maxNew response tokens do not fit in ctx
// is dropped and counted.
func ReadPrompts(path string, tok tokenizer.Tokenizer, tmpl *chat.Template, ctx, maxNew int) ([]Prompt, PromptStats, error) {
	var st PromptStats
	f, err := os.Open(path)
	if err != nil {
		return nil, st, err
	}
	defer f.Close()
	jsonl := strings.HasSuffix(path, ".jsonl") || strings.HasSuffix(path, ".json")
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	var out []Prompt
	for line := 1; sc.Scan(); line++ {
		raw := strings.TrimSpace(sc.Text())
		if raw == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, line)
		msgs, answer := []chat.Message{{Role: chat.User, Content: raw}}, ""
		if jsonl {
			if msgs, answer, err = promptRow([]byte(raw)); err != nil {
				return nil, st, fmt.Errorf("%s: %w", where, err)
			}
		}
		st.Read++
		p, err := encodePrompt(msgs, tok, tmpl)
		if err != nil {
			return nil, st, fmt.Errorf("%s: %w", where, err)
		}
		p.Answer, p.Where = answer, where
		if len(p.Tokens)+maxNew > ctx {
			st.TooLong++
			continue
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, st, fmt.Errorf("%s: %w", path, err)
	}
	st.Kept = len(out)
	if st.Read == 0 {
		return nil, st, fmt.Errorf("%s: no prompts", path)
	}
	if len(out) == 0 {
		return nil, st, fmt.Errorf("%s: all %d prompts are longer than the context of %d less the %d response tokens", path, st.Read, ctx, maxNew)
	}
	return out, st, nil
}

// promptRow reads one JSON row's conversation and answer.
func promptRow(raw []byte) ([]chat.Message, string, error) {
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, "", fmt.Errorf("not a JSON object: %w", err)
	}
	answer := ""
	if a, ok := row["answer"]; ok {
		if err := json.Unmarshal(a, &answer); err != nil {
			var x float64
			if json.Unmarshal(a, &x) != nil {
				return nil, "", fmt.Errorf("field answer: want a string or a number")
			}
			answer = string(a)
		}
	}
	for _, k := range []string{"prompt", "messages", "conversations"} {
		v, ok := row[k]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			if strings.TrimSpace(s) == "" {
				return nil, "", fmt.Errorf("field %s is empty", k)
			}
			return []chat.Message{{Role: chat.User, Content: s}}, answer, nil
		}
		msgs, err := sft.Messages(v, k)
		if err != nil && k == "conversations" {
			msgs, err = shareGPT(v)
		}
		if err != nil {
			return nil, "", err
		}
		if len(msgs) == 0 || msgs[len(msgs)-1].Role != chat.User {
			return nil, "", fmt.Errorf("field %s: the conversation must end with a user turn", k)
		}
		return msgs, answer, nil
	}
	// a preference pair (herd rm train's layouts: HH-RLHF transcripts,
	// StackExchange's question/response_j/response_k): its prompt
	if ex, err := align.ParseRow(raw); err == nil && len(ex.Prompt) > 0 && ex.Prompt[len(ex.Prompt)-1].Role == chat.User {
		return ex.Prompt, answer, nil
	}
	return nil, "", fmt.Errorf("no prompt, messages or conversations field, and not a preference pair with a prompt")
}

// encodePrompt renders and tokenizes a prompt.
func encodePrompt(msgs []chat.Message, tok tokenizer.Tokenizer, tmpl *chat.Template) (Prompt, error) {
	if tmpl == nil {
		var parts []string
		for _, m := range msgs {
			parts = append(parts, m.Content)
		}
		text := strings.Join(parts, "\n")
		return Prompt{Tokens: tok.Encode(text, true, false), Text: text}, nil
	}
	r, err := tmpl.Render(msgs, true)
	if err != nil {
		return Prompt{}, err
	}
	return Prompt{Tokens: r.Encode(tok).IDs, Text: r.Text()}, nil
}

// shareGPT reads a ShareGPT conversation ({from, value} turns).
func shareGPT(raw json.RawMessage) ([]chat.Message, error) {
	var turns []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &turns); err != nil {
		return nil, fmt.Errorf("field conversations: want a list of turns")
	}
	var out []chat.Message
	for i, t := range turns {
		m, err := sft.ShareGPTTurn(t, fmt.Sprintf("conversations[%d]", i))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
