package synth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/herd-llm/herd/oai"
)

// Prompt is one prompt read from an input file: the messages up to (and
// without) the answers; for a multi-turn source, User holds every user
// turn in order, System the system message.
type Prompt struct {
	ID     string // "p" and the row's index in the file
	Where  string // file:line
	System string
	User   []string
}

// Messages is the first turn as chat messages.
func (p *Prompt) Messages() []oai.Message {
	var m []oai.Message
	if p.System != "" {
		m = append(m, oai.Message{Role: "system", Content: p.System})
	}
	return append(m, oai.Message{Role: "user", Content: p.User[0]})
}

// ReadPrompts reads prompts from a JSON array or JSON Lines file of rows
// in the Alpaca (instruction, input?, system?), ShareGPT (conversations),
// OpenAI (messages), MT-bench (turns) or {"prompt": …} layouts, or from a
// text file with one prompt per line. A row with no user text is an error
// naming its line.
func ReadPrompts(path string) ([]Prompt, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("prompts: %w", err)
	}
	rows, err := jsonRows(path, b)
	if err != nil {
		return nil, err
	}
	var out []Prompt
	if rows == nil { // plain lines
		for i, ln := range strings.Split(string(b), "\n") {
			if ln = strings.TrimSpace(ln); ln != "" {
				out = append(out, Prompt{ID: fmt.Sprintf("p%d", len(out)), Where: fmt.Sprintf("%s:%d", path, i+1), User: []string{ln}})
			}
		}
	}
	for _, r := range rows {
		p, err := promptOf(r.raw)
		if err != nil {
			return nil, fmt.Errorf("prompts %s:%d: %w", path, r.line, err)
		}
		p.ID, p.Where = fmt.Sprintf("p%d", len(out)), fmt.Sprintf("%s:%d", path, r.line)
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("prompts %s: no prompts", path)
	}
	return out, nil
}

type jsonRow struct {
	raw  json.RawMessage
	line int
}

// jsonRows splits a JSON array or JSON Lines file into rows with their
// line numbers; nil, nil when the file is not JSON (plain lines).
func jsonRows(path string, b []byte) ([]jsonRow, error) {
	t := bytes.TrimLeft(b, " \t\r\n\ufeff")
	if len(t) == 0 || (t[0] != '[' && t[0] != '{') {
		return nil, nil
	}
	var rows []jsonRow
	if t[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(b))
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for dec.More() {
			at := dec.InputOffset()
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, 1+bytes.Count(b[:at], []byte{'\n'}), err)
			}
			line := 1 + bytes.Count(b[:dec.InputOffset()-int64(len(raw))], []byte{'\n'})
			rows = append(rows, jsonRow{raw, line})
		}
		return rows, nil
	}
	for i, ln := range bytes.Split(b, []byte{'\n'}) {
		if ln = bytes.TrimSpace(ln); len(ln) > 0 {
			if !json.Valid(ln) {
				return nil, fmt.Errorf("%s:%d: not a JSON object: %q", path, i+1, snippetOf(ln))
			}
			rows = append(rows, jsonRow{ln, i + 1})
		}
	}
	return rows, nil
}

func snippetOf(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}

// promptOf reads one row.
func promptOf(raw []byte) (Prompt, error) {
	var row struct {
		Instruction   *string  `json:"instruction"`
		Input         string   `json:"input"`
		System        string   `json:"system"`
		Prompt        *string  `json:"prompt"`
		Turns         []string `json:"turns"`
		Conversations []struct {
			From  string `json:"from"`
			Value string `json:"value"`
		} `json:"conversations"`
		Messages []oai.Message `json:"messages"`
	}
	if err := json.Unmarshal(raw, &row); err != nil {
		return Prompt{}, fmt.Errorf("not a prompt row: %v", err)
	}
	p := Prompt{System: row.System}
	switch {
	case row.Conversations != nil:
		for _, c := range row.Conversations {
			switch c.From {
			case "human", "user":
				p.User = append(p.User, c.Value)
			case "system":
				p.System = c.Value
			}
		}
	case row.Messages != nil:
		for _, m := range row.Messages {
			switch m.Role {
			case "user":
				p.User = append(p.User, m.Content)
			case "system", "developer":
				p.System = m.Content
			}
		}
	case row.Turns != nil:
		p.User = row.Turns
	case row.Instruction != nil:
		u := *row.Instruction
		if strings.TrimSpace(row.Input) != "" {
			u += "\n\n" + row.Input
		}
		p.User = []string{u}
	case row.Prompt != nil:
		p.User = []string{*row.Prompt}
	default:
		return Prompt{}, fmt.Errorf("no instruction, prompt, turns, conversations or messages field")
	}
	if len(p.User) == 0 || strings.TrimSpace(p.User[0]) == "" {
		return Prompt{}, fmt.Errorf("no user text")
	}
	return p, nil
}

// fileHash is a file's SHA-256, for the settings fingerprint.
func fileHash(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8]), nil
}

// fingerprint is a short hash of the settings that decide the output
// (fields tagged json:"-" do not).
func fingerprint(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic("synth: settings do not marshal: " + err.Error()) // a programming error, not user input
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}
