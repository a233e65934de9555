// Package sft is supervised fine-tuning's data: readers for the
// instruction and conversation formats (Alpaca and BELLE, Dolly, ShareGPT /
// Vicuna, OpenAI messages) that stream examples as conversations, and the
// encoder that renders each through a chat template into tokens with a loss
// mask covering every assistant turn and nothing else.
package sft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/internal/fileio"
)

// Format is a dataset row layout.
type Format int

// The row layouts the readers know, detected per row by their fields.
const (
	Unknown  Format = iota
	Alpaca          // {instruction, input?, output, system?, history?}; BELLE's Chinese data has the same fields
	Dolly           // {instruction, context?, response}
	ShareGPT        // {conversations: [{from: human|gpt|system, value}]} (Vicuna)
	OpenAI          // {messages: [{role, content}]}
)

func (f Format) String() string {
	return [...]string{"unknown", "alpaca", "dolly", "sharegpt", "openai"}[f]
}

// Example is one training conversation and where it came from.
type Example struct {
	Messages []chat.Message
	Format   Format
	Where    string // file:line of the row
}

// RowError is a malformed row: the file and line where it starts, the
// field at fault, and what is wrong.
type RowError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: field %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// DefaultMaxRow is the longest row a Reader parses, in bytes (1 MiB):
// some 250,000 tokens of English, beyond any context herd trains at. A
// longer row would be dropped as too long after costing gigabytes to
// parse, render and tokenize, so it is skipped and counted unparsed.
const DefaultMaxRow = 1 << 20

// Reader streams the examples of one file: a JSON array of rows or JSON
// Lines, told apart by the first byte (after an optional UTF-8 byte-order
// mark). The file is mapped, not read, so a set larger than memory
// streams, and a row is found by scanning the mapping: rows longer than
// MaxRow bytes are skipped without being copied or parsed.
type Reader struct {
	// MaxRow is the longest row parsed, in bytes; longer rows are
	// skipped and counted (TooLarge). 0 means DefaultMaxRow, < 0 no limit.
	MaxRow int

	path     string
	b        []byte
	unmap    func() error
	array    bool
	comma    bool // array: a row was read, so a ',' or ']' comes next
	done     bool // array: the closing ']' was read
	off      int  // offset of the next row (JSON Lines) or of what follows the last row (array)
	line     int  // line number at off (1-based)
	skipBad  bool
	bad      int
	rows     int
	tooLarge int
}

// utf8BOM is the byte-order mark some editors write at the start of a
// UTF-8 file.
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// Open maps path for reading. With skipBad, malformed rows are counted
// (Bad) and skipped instead of ending the read with a *RowError.
func Open(path string, skipBad bool) (*Reader, error) {
	b, unmap, err := fileio.Map(path)
	if err != nil {
		return nil, fmt.Errorf("sft data %s: %w", path, err)
	}
	if strings.HasSuffix(path, ".gz") {
		// a compressed file is read whole: its rows need the text
		z, err := gunzip(b)
		unmap()
		if err != nil {
			return nil, fmt.Errorf("sft data %s: %w", path, err)
		}
		b, unmap = z, func() error { return nil }
	}
	r := &Reader{path: path, b: b, unmap: unmap, skipBad: skipBad, line: 1}
	if bytes.HasPrefix(b, utf8BOM) {
		r.off = len(utf8BOM)
	}
	if start := r.skipSpace(r.off); start < len(b) && b[start] == '[' {
		r.array = true
		r.countTo(start + 1)
	}
	return r, nil
}

// Close releases the file.
func (r *Reader) Close() error {
	if r.unmap == nil {
		return nil
	}
	u := r.unmap
	r.unmap = nil
	return u()
}

// Bad is the number of malformed rows skipped so far.
func (r *Reader) Bad() int { return r.bad }

// Rows is the number of rows read so far, good and bad (and too large).
func (r *Reader) Rows() int { return r.rows }

// TooLarge is the number of rows skipped so far for being longer than
// MaxRow bytes.
func (r *Reader) TooLarge() int { return r.tooLarge }

func (r *Reader) maxRow() int {
	if r.MaxRow == 0 {
		return DefaultMaxRow
	}
	return r.MaxRow
}

// Next returns the next example, or io.EOF after the last.
func (r *Reader) Next() (*Example, error) {
	for {
		raw, line, err := r.nextRow()
		if err != nil {
			return nil, err
		}
		r.rows++
		if max := r.maxRow(); max > 0 && len(raw) > max {
			r.tooLarge++
			continue
		}
		ex, err := parseRow(raw)
		if err == nil {
			ex.Where = fmt.Sprintf("%s:%d", r.path, line)
			return ex, nil
		}
		var re *RowError
		if !errors.As(err, &re) {
			re = &RowError{Msg: err.Error()}
		}
		re.File, re.Line = r.path, line
		if !r.skipBad {
			return nil, re
		}
		r.bad++
	}
}

// countTo advances the line count to byte offset to.
func (r *Reader) countTo(to int) {
	r.line += bytes.Count(r.b[r.off:to], []byte{'\n'})
	r.off = to
}

// skipSpace returns the offset of the first byte at or after at that is
// not JSON whitespace.
func (r *Reader) skipSpace(at int) int {
	for at < len(r.b) && strings.IndexByte(" \t\r\n", r.b[at]) >= 0 {
		at++
	}
	return at
}

// nextRow returns the next row's JSON (a view of the mapping) and the line
// it starts on.
func (r *Reader) nextRow() (json.RawMessage, int, error) {
	if r.array {
		return r.nextArrayRow()
	}
	for r.off < len(r.b) {
		end := bytes.IndexByte(r.b[r.off:], '\n')
		if end < 0 {
			end = len(r.b)
		} else {
			end += r.off
		}
		ln, line := bytes.TrimSpace(r.b[r.off:end]), r.line
		r.off = min(end+1, len(r.b))
		r.line++
		if len(ln) > 0 {
			return ln, line, nil
		}
	}
	return nil, 0, io.EOF
}

// nextArrayRow finds the next element of the top-level array by scanning
// (valueEnd) rather than decoding, so a huge row costs nothing until it is
// parsed; the array's punctuation is checked, and anything but whitespace
// after its closing ']' is an error.
func (r *Reader) nextArrayRow() (json.RawMessage, int, error) {
	broken := func(at int, msg string) (json.RawMessage, int, error) {
		r.countTo(min(at, len(r.b)))
		return nil, 0, fmt.Errorf("sft data %s:%d: %s", r.path, r.line, msg)
	}
	at := r.skipSpace(r.off)
	notClosed := "the JSON array is not closed (unexpected end of file)"
	switch {
	case r.done:
		return nil, 0, io.EOF
	case at >= len(r.b):
		return broken(at, notClosed)
	case r.b[at] == ']':
		if rest := r.skipSpace(at + 1); rest < len(r.b) {
			return broken(rest, "data after the end of the JSON array")
		}
		r.countTo(len(r.b))
		r.done = true
		return nil, 0, io.EOF
	case r.comma && r.b[at] != ',':
		return broken(at, "want ',' or ']' after a row of the JSON array")
	case r.comma:
		if at = r.skipSpace(at + 1); at < len(r.b) && r.b[at] == ']' {
			return broken(at, "a ',' before the array's closing ']'")
		}
	}
	end := valueEnd(r.b, at)
	if at >= len(r.b) || end < 0 {
		return broken(at, notClosed)
	}
	r.countTo(at)
	r.comma = true
	line := r.line
	r.countTo(end)
	return r.b[at:end:end], line, nil
}

// valueEnd returns the offset just past the JSON value starting at b[at],
// found by tracking strings (with their escapes) and bracket depth only;
// the value itself is checked when it is parsed. It returns -1 when the
// data ends inside the value.
func valueEnd(b []byte, at int) int {
	depth := 0
	for i := at; i < len(b); i++ {
		switch b[i] {
		case '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(b) {
				return -1
			}
			if depth == 0 {
				return j + 1
			}
			i = j
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // a scalar ended by the array's ']'
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\r', '\n':
			if depth == 0 {
				return i
			}
		}
	}
	if depth == 0 {
		return len(b)
	}
	return -1
}

// parseRow detects a row's layout by its fields and converts it.
func parseRow(raw []byte) (*Example, error) {
	if !utf8.Valid(raw) {
		return nil, &RowError{Msg: fmt.Sprintf("invalid UTF-8 at byte %d of the row: herd does not replace it silently (fix the file's encoding, or --skip-bad to skip such rows)", invalidUTF8(raw))}
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, &RowError{Msg: "not a JSON object: " + err.Error()}
	}
	if err := preference(row); err != nil {
		return nil, err
	}
	ex, err := fromLayout(row)
	if err != nil {
		return nil, err
	}
	if replaced(raw, ex) {
		return nil, &RowError{Msg: "a \\uD800-\\uDFFF escape without its pair (a lone UTF-16 surrogate), which JSON decoding replaces with U+FFFD: herd does not replace it silently"}
	}
	return ex, nil
}

// replaced reports whether ex holds a U+FFFD that raw does not: one that
// decoding the JSON made of an unpaired surrogate escape.
func replaced(raw []byte, ex *Example) bool {
	for _, m := range ex.Messages {
		if strings.ContainsRune(m.Content, utf8.RuneError) {
			return !bytes.Contains(raw, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`))
		}
	}
	return false
}

// fromLayout detects a row's layout by its fields and converts it.
func fromLayout(row map[string]json.RawMessage) (*Example, error) {
	has := func(k string) bool { _, ok := row[k]; return ok }
	switch {
	case has("conversations"):
		return shareGPT(row)
	case has("messages"):
		return openAI(row)
	case has("instruction") && has("output"):
		return alpaca(row)
	case has("instruction") && has("response"):
		return dolly(row)
	}
	keys := make([]string, 0, len(row))
	for k := range row {
		keys = append(keys, k)
	}
	return nil, &RowError{Msg: fmt.Sprintf("unknown row layout (fields %s): want instruction/input/output (Alpaca), instruction/context/response (Dolly; GPTeacher: instruction/input/response), conversations (ShareGPT) or messages (OpenAI)", strings.Join(keys, ", "))}
}

// invalidUTF8 is the offset of the first byte of b that is not part of a
// valid UTF-8 sequence.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// preference refuses rows that carry a preference signal: a boolean label
// (the KTO layout, whose undesirable answers SFT would learn as good) or a
// chosen/rejected pair (DPO's).
func preference(row map[string]json.RawMessage) error {
	if raw, ok := row["label"]; ok {
		var b bool
		if json.Unmarshal(raw, &b) == nil {
			return &RowError{Field: "label", Msg: fmt.Sprintf("a preference label (%v): this is the KTO layout, whose undesirable answers SFT would train as good ones; train it with the preference trainer (herd dpo --loss kto)", b)}
		}
	}
	_, chosen := row["chosen"]
	_, rejected := row["rejected"]
	if chosen && rejected {
		return &RowError{Msg: "a preference pair (chosen/rejected): SFT learns demonstrations, not preferences; train it with the preference trainer (herd dpo)"}
	}
	return nil
}

// str reads an optional string field ("" when absent or null).
func str(row map[string]json.RawMessage, k string, required bool) (string, error) {
	raw, ok := row[k]
	if !ok || string(raw) == "null" {
		if required {
			return "", &RowError{Field: k, Msg: "missing"}
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &RowError{Field: k, Msg: "not a string"}
	}
	if required && strings.TrimSpace(s) == "" {
		return "", &RowError{Field: k, Msg: "empty"}
	}
	return s, nil
}

// joinInput is the user's message of an instruction with optional input.
func joinInput(instr, input string) string {
	if strings.TrimSpace(input) == "" {
		return instr
	}
	return instr + "\n\n" + input
}

func alpaca(row map[string]json.RawMessage) (*Example, error) {
	instr, err := str(row, "instruction", true)
	if err != nil {
		return nil, err
	}
	input, err := str(row, "input", false)
	if err != nil {
		return nil, err
	}
	out, err := str(row, "output", true)
	if err != nil {
		return nil, err
	}
	sys, err := str(row, "system", false)
	if err != nil {
		return nil, err
	}
	ex := &Example{Format: Alpaca}
	if sys != "" {
		ex.Messages = append(ex.Messages, chat.Message{Role: chat.System, Content: sys})
	}
	if raw, ok := row["history"]; ok && string(raw) != "null" {
		var hist [][]string
		if err := json.Unmarshal(raw, &hist); err != nil {
			return nil, &RowError{Field: "history", Msg: "want a list of [instruction, response] pairs"}
		}
		for i, h := range hist {
			if len(h) != 2 {
				return nil, &RowError{Field: fmt.Sprintf("history[%d]", i), Msg: fmt.Sprintf("%d strings, want 2", len(h))}
			}
			ex.Messages = append(ex.Messages, chat.Message{Role: chat.User, Content: h[0]}, chat.Message{Role: chat.Assistant, Content: h[1]})
		}
	}
	ex.Messages = append(ex.Messages, chat.Message{Role: chat.User, Content: joinInput(instr, input)},
		chat.Message{Role: chat.Assistant, Content: out})
	return ex, nil
}

func dolly(row map[string]json.RawMessage) (*Example, error) {
	instr, err := str(row, "instruction", true)
	if err != nil {
		return nil, err
	}
	ctx, err := str(row, "context", false)
	if err != nil {
		return nil, err
	}
	if ctx == "" { // GPTeacher's layout: instruction, input, response
		if ctx, err = str(row, "input", false); err != nil {
			return nil, err
		}
	}
	resp, err := str(row, "response", true)
	if err != nil {
		return nil, err
	}
	return &Example{Format: Dolly, Messages: []chat.Message{
		{Role: chat.User, Content: joinInput(instr, ctx)}, {Role: chat.Assistant, Content: resp}}}, nil
}

// turns checks a conversation's order: an optional system message, then
// user and assistant alternating, ending with the assistant.
func turns(field string, msgs []chat.Message) error {
	i := 0
	if len(msgs) > 0 && msgs[0].Role == chat.System {
		i = 1
	}
	if len(msgs) == i {
		return &RowError{Field: field, Msg: "no turns"}
	}
	for j, m := range msgs[i:] {
		want := chat.User
		if j%2 == 1 {
			want = chat.Assistant
		}
		if m.Role != want {
			return &RowError{Field: fmt.Sprintf("%s[%d]", field, i+j), Msg: fmt.Sprintf("role %s where the turn order wants %s", m.Role, want)}
		}
	}
	if msgs[len(msgs)-1].Role != chat.Assistant {
		return &RowError{Field: field, Msg: "the last turn is not the assistant's: nothing to learn"}
	}
	return nil
}

func shareGPT(row map[string]json.RawMessage) (*Example, error) {
	var conv []map[string]json.RawMessage
	if err := json.Unmarshal(row["conversations"], &conv); err != nil {
		return nil, &RowError{Field: "conversations", Msg: "want a list of {from, value} objects"}
	}
	ex := &Example{Format: ShareGPT}
	if sys, err := str(row, "system", false); err != nil {
		return nil, err
	} else if sys != "" {
		ex.Messages = append(ex.Messages, chat.Message{Role: chat.System, Content: sys})
	}
	for i, t := range conv {
		m, err := ShareGPTTurn(t, fmt.Sprintf("conversations[%d]", i))
		if err != nil {
			return nil, err
		}
		ex.Messages = append(ex.Messages, m)
	}
	return ex, turns("conversations", ex.Messages)
}

// ShareGPTTurn reads one {from, value} turn of a ShareGPT conversation,
// named f in errors.
func ShareGPTTurn(t map[string]json.RawMessage, f string) (chat.Message, error) {
	from, err := str(t, "from", true)
	if err != nil {
		return chat.Message{}, &RowError{Field: f + ".from", Msg: err.(*RowError).Msg}
	}
	val, err := str(t, "value", false)
	if err != nil {
		return chat.Message{}, &RowError{Field: f + ".value", Msg: err.(*RowError).Msg}
	}
	var role string
	switch from {
	case "human", "user":
		role = chat.User
	case "gpt", "assistant", "chatgpt", "bard", "bing", "model":
		role = chat.Assistant
	case "system":
		role = chat.System
	default:
		return chat.Message{}, &RowError{Field: f + ".from", Msg: fmt.Sprintf("speaker %q (want human, gpt or system)", from)}
	}
	return chat.Message{Role: role, Content: val}, nil
}

func openAI(row map[string]json.RawMessage) (*Example, error) {
	msgs, err := Messages(row["messages"], "messages")
	if err != nil {
		return nil, err
	}
	return &Example{Format: OpenAI, Messages: msgs}, turns("messages", msgs)
}

// Messages reads an OpenAI-style list of {role, content} objects, the
// value of field (named in errors), without checking the turn order.
func Messages(raw json.RawMessage, field string) ([]chat.Message, error) {
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return nil, &RowError{Field: field, Msg: "want a list of {role, content} objects"}
	}
	var out []chat.Message
	for i, m := range msgs {
		f := fmt.Sprintf("%s[%d]", field, i)
		role, err := str(m, "role", true)
		if err != nil {
			return nil, &RowError{Field: f + ".role", Msg: err.(*RowError).Msg}
		}
		content, err := str(m, "content", false)
		if err != nil {
			return nil, &RowError{Field: f + ".content", Msg: err.(*RowError).Msg}
		}
		switch role {
		case chat.System, chat.User, chat.Assistant:
		default:
			return nil, &RowError{Field: f + ".role", Msg: fmt.Sprintf("role %q (want system, user or assistant)", role)}
		}
		out = append(out, chat.Message{Role: role, Content: content})
	}
	return out, nil
}
