// Package align is the road's third stage: preference data (HH-RLHF
// transcripts, prompt/chosen/rejected rows, ShareGPT-style pairs,
// StackExchange pairs, unpaired KTO rows) rendered through a chat template
// with the loss on the response tokens only; the preference losses (DPO and
// its label-smoothed and robust forms, IPO, SLiC's hinge, SimPO, ORPO, KTO,
// Bradley–Terry for reward models) as functions of per-sequence
// log-probabilities with their gradients; the sequence log-probabilities of
// a batched taped forward pass; and the reward model, a LLaMA with a scalar
// head on the last response token's final hidden state.
package align

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/sft"
)

// Format is a preference row layout.
type Format int

// The layouts the reader tells apart, row by row, by their fields.
const (
	Unknown       Format = iota
	HH                   // Anthropic HH-RLHF: chosen, rejected as "\n\nHuman: … \n\nAssistant: …" transcripts
	PromptPair           // prompt, chosen, rejected: strings or OpenAI message lists (TRL, UltraFeedback-binarized)
	ShareGPTPair         // conversations + chosen + rejected {from, value} (LLaMA-Factory's dpo_*_demo.json)
	StackExchange        // question, response_j (preferred), response_k (StackLLaMA)
	UnpairedRows         // messages (ending with the assistant's) or prompt + completion, and a boolean label (KTO)
)

func (f Format) String() string {
	return [...]string{"unknown", "hh-rlhf", "prompt-pair", "sharegpt-pair", "stackexchange", "unpaired"}[f]
}

// Example is one preference row: a prompt conversation (ending with the
// user's turn) and the assistant's responses. A paired row has Chosen and
// Rejected; an unpaired one (KTO) only Chosen, its Response, with
// Desirable saying whether it is wanted.
type Example struct {
	Prompt    []chat.Message
	Chosen    string
	Rejected  string
	Paired    bool
	Desirable bool    // unpaired rows: the label
	Margin    float64 // the optional margin column (reward models), 0 when absent
	Format    Format
	Where     string // file:line of the row
}

// Reader streams the preference rows of one file (JSON array or JSON
// Lines, gzip-compressed when the name ends with .gz).
type Reader struct {
	r *sft.Reader
}

// Open opens path. With skipBad, malformed rows are counted (Bad) and
// skipped instead of ending the read with a *sft.RowError.
func Open(path string, skipBad bool) (*Reader, error) {
	r, err := sft.Open(path, skipBad)
	if err != nil {
		return nil, fmt.Errorf("preference data: %w", err)
	}
	return &Reader{r: r}, nil
}

// Close releases the file.
func (r *Reader) Close() error { return r.r.Close() }

// Bad is the number of malformed rows skipped so far.
func (r *Reader) Bad() int { return r.r.Bad() }

// Rows is the number of rows read so far, good and bad.
func (r *Reader) Rows() int { return r.r.Rows() }

// Next returns the next example, or io.EOF after the last.
func (r *Reader) Next() (*Example, error) {
	for {
		raw, line, err := r.r.NextRaw()
		if err != nil {
			return nil, err
		}
		ex, err := ParseRow(raw)
		if err == nil {
			ex.Where = fmt.Sprintf("%s:%d", r.r.Path(), line)
			return ex, nil
		}
		var re *sft.RowError
		if !errors.As(err, &re) {
			re = &sft.RowError{Msg: err.Error()}
		}
		re.File, re.Line = r.r.Path(), line
		if !r.r.SkipBad() {
			return nil, re
		}
		r.r.CountBad()
	}
}

// ReadAll reads every example of the files, with the count of malformed
// rows skipped (only with skipBad; otherwise the first is the error).
func ReadAll(paths []string, skipBad bool) ([]*Example, int, error) {
	var out []*Example
	bad := 0
	for _, p := range paths {
		r, err := Open(p, skipBad)
		if err != nil {
			return nil, bad, err
		}
		for {
			ex, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				r.Close()
				return nil, bad + r.Bad(), err
			}
			out = append(out, ex)
		}
		bad += r.Bad()
		r.Close()
	}
	return out, bad, nil
}

// ParseRow detects a row's layout by its fields and converts it.
func ParseRow(raw []byte) (*Example, error) {
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, &sft.RowError{Msg: "not a JSON object: " + err.Error()}
	}
	has := func(k string) bool { _, ok := row[k]; return ok }
	var (
		ex  *Example
		err error
	)
	switch {
	case has("label"):
		ex, err = unpaired(row)
	case has("conversations"):
		ex, err = shareGPTPair(row)
	case has("question") || has("response_j") || has("response_k"):
		ex, err = stackExchange(row)
	case has("prompt"):
		ex, err = promptPair(row)
	case has("chosen") || has("rejected"):
		ex, err = hh(row)
	default:
		keys := make([]string, 0, len(row))
		for k := range row {
			keys = append(keys, k)
		}
		return nil, &sft.RowError{Msg: fmt.Sprintf("unknown preference layout (fields %s): want chosen/rejected transcripts (HH-RLHF), prompt/chosen/rejected, conversations/chosen/rejected (ShareGPT), question/response_j/response_k (StackExchange) or messages|prompt+completion with a label (KTO)", strings.Join(keys, ", "))}
	}
	if err != nil {
		return nil, err
	}
	if err := margin(row, ex); err != nil {
		return nil, err
	}
	return ex, nil
}

// margin reads the optional numeric margin column.
func margin(row map[string]json.RawMessage, ex *Example) error {
	raw, ok := row["margin"]
	if !ok || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, &ex.Margin); err != nil || math.IsNaN(ex.Margin) {
		return &sft.RowError{Field: "margin", Msg: "not a number"}
	}
	return nil
}

// field returns a required field's raw value.
func field(row map[string]json.RawMessage, k string) (json.RawMessage, error) {
	raw, ok := row[k]
	if !ok || string(raw) == "null" {
		return nil, &sft.RowError{Field: k, Msg: "missing"}
	}
	return raw, nil
}

// text reads a required string field (which may be empty: an empty
// response is counted by the encoder, not refused here).
func text(row map[string]json.RawMessage, k string) (string, error) {
	raw, err := field(row, k)
	if err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &sft.RowError{Field: k, Msg: "not a string"}
	}
	return s, nil
}

// checkPrompt verifies a prompt conversation: an optional system message,
// then turns alternating from the user's, ending with the user's.
func checkPrompt(f string, msgs []chat.Message) error {
	i := 0
	if len(msgs) > 0 && msgs[0].Role == chat.System {
		i = 1
	}
	if len(msgs) == i {
		return &sft.RowError{Field: f, Msg: "no user turn"}
	}
	for j, m := range msgs[i:] {
		want := []string{chat.User, chat.Assistant}[j%2]
		if m.Role != want {
			return &sft.RowError{Field: fmt.Sprintf("%s[%d]", f, i+j), Msg: fmt.Sprintf("role %s where the turn order wants %s", m.Role, want)}
		}
	}
	if msgs[len(msgs)-1].Role != chat.User {
		return &sft.RowError{Field: f, Msg: "the prompt does not end with the user's turn"}
	}
	return nil
}
