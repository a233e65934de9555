package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/generate"
)

// apiError is an error in OpenAI's shape, with its HTTP status.
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"`
	Code    any    `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func invalid(param, format string, args ...any) *apiError {
	var p any
	if param != "" {
		p = param
	}
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: p, Message: fmt.Sprintf(format, args...)}
}

// stopField is OpenAI's stop: null, a string or a list of strings.
type stopField []string

func (s *stopField) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopField{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("stop must be a string or a list of strings")
	}
	*s = many
	return nil
}

// sampling holds the fields chat completions and completions share.
type sampling struct {
	Model               string    `json:"model"`
	MaxTokens           *int      `json:"max_tokens"`
	MaxCompletionTokens *int      `json:"max_completion_tokens"`
	Temperature         *float64  `json:"temperature"`
	TopP                *float64  `json:"top_p"`
	N                   *int      `json:"n"`
	Stop                stopField `json:"stop"`
	Seed                *int64    `json:"seed"`
	PresencePenalty     *float64  `json:"presence_penalty"`
	FrequencyPenalty    *float64  `json:"frequency_penalty"`
	Stream              bool      `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	User string `json:"user"`
}

// check validates the ranges OpenAI documents.
func (s *sampling) check() *apiError {
	if strings.TrimSpace(s.Model) == "" {
		return invalid("model", "model is required")
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"max_tokens", s.MaxTokens}, {"max_completion_tokens", s.MaxCompletionTokens}} {
		if f.v != nil && *f.v < 1 {
			return invalid(f.name, "%s is %d; it must be at least 1", f.name, *f.v)
		}
	}
	if v := s.TopP; v != nil && !(*v > 0) {
		return invalid("top_p", "top_p %g is outside (0, 1]", *v)
	}
	// the ranges every sampler of herd takes (generate.SamplerConfig.Validate)
	if err := s.samplerConfig(0).Validate(); err != nil {
		var pe *generate.ParamError
		if errors.As(err, &pe) {
			return invalid(pe.Param, "%s", pe.Msg)
		}
		return invalid("", "%v", err)
	}
	if s.N != nil && *s.N != 1 {
		return invalid("n", "n is %d: herd returns one choice per request (send several requests instead)", *s.N)
	}
	if len(s.Stop) > 4 {
		return invalid("stop", "%d stop sequences; at most 4", len(s.Stop))
	}
	for _, x := range s.Stop {
		if x == "" {
			return invalid("stop", "a stop sequence is empty")
		}
	}
	if s.StreamOptions != nil && !s.Stream {
		return invalid("stream_options", "stream_options needs stream: true")
	}
	return nil
}

// samplerConfig is the sampler the request asks for (temperature 1 unless
// given, OpenAI's default), drawing from seed when the request names none.
func (s *sampling) samplerConfig(seed uint64) generate.SamplerConfig {
	f := func(v *float64, def float32) float32 {
		if v == nil {
			return def
		}
		return float32(*v)
	}
	cfg := generate.SamplerConfig{Temperature: f(s.Temperature, 1), TopP: f(s.TopP, 0),
		PresencePenalty: f(s.PresencePenalty, 0), FrequencyPenalty: f(s.FrequencyPenalty, 0), Seed: seed}
	if s.Seed != nil {
		cfg.Seed = uint64(*s.Seed)
	}
	return cfg
}

// maxTokens is the token budget asked for (0: not given).
func (s *sampling) maxTokens() int {
	if s.MaxCompletionTokens != nil {
		return *s.MaxCompletionTokens
	}
	if s.MaxTokens != nil {
		return *s.MaxTokens
	}
	return 0
}

// content is a message's content: a string, or a list of parts of which
// herd reads the text ones.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*c = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = content(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or a list of content parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content part of type %q: herd reads text only", p.Type)
		}
		sb.WriteString(p.Text)
	}
	*c = content(sb.String())
	return nil
}

type chatRequest struct {
	sampling
	Messages []struct {
		Role    string  `json:"role"`
		Content content `json:"content"`
	} `json:"messages"`
	Logprobs    bool `json:"logprobs"`
	TopLogprobs *int `json:"top_logprobs"`
	// fields herd does not implement yet: a request that uses them is
	// refused rather than answered as if they were absent
	Tools          json.RawMessage `json:"tools"`
	ToolChoice     json.RawMessage `json:"tool_choice"`
	ResponseFormat json.RawMessage `json:"response_format"`
	Functions      json.RawMessage `json:"functions"`
	FunctionCall   json.RawMessage `json:"function_call"`

	msgs []chat.Message // the messages, checked
}

// unimplemented refuses the fields a chat request may carry that herd
// does not act on yet: tools and functions of any kind, a tool choice
// other than "none", a response format other than text.
func (c *chatRequest) unimplemented() *apiError {
	set := func(raw json.RawMessage) bool {
		t := bytes.TrimSpace(raw)
		return len(t) > 0 && !bytes.Equal(t, []byte("null"))
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"tools", c.Tools}, {"functions", c.Functions}, {"function_call", c.FunctionCall}} {
		if set(f.raw) && !bytes.Equal(bytes.TrimSpace(f.raw), []byte("[]")) {
			return invalid(f.name, "%s is not supported yet: herd does not call tools; send the request without it", f.name)
		}
	}
	if set(c.ToolChoice) && !bytes.Equal(bytes.TrimSpace(c.ToolChoice), []byte(`"none"`)) {
		return invalid("tool_choice", "tool_choice is not supported yet: herd does not call tools (only \"none\" is accepted)")
	}
	if set(c.ResponseFormat) {
		var rf struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(c.ResponseFormat, &rf) != nil || rf.Type != "text" {
			return invalid("response_format", "response_format %s is not supported yet: herd writes plain text (only {\"type\": \"text\"} is accepted)", bytes.TrimSpace(c.ResponseFormat))
		}
	}
	return nil
}

type completionRequest struct {
	sampling
	Prompt   json.RawMessage `json:"prompt"`
	Logprobs *int            `json:"logprobs"`
	Echo     bool            `json:"echo"`
	Suffix   *string         `json:"suffix"`
	BestOf   *int            `json:"best_of"`

	text string // the prompt as text, or
	ids  []int  // as token ids
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
	User           string          `json:"user"`

	texts []string // the inputs as texts
	idss  [][]int  // and as token ids
}

func (s *sampling) modelName() string         { return s.Model }
func (e *embeddingRequest) modelName() string { return e.Model }

// decodeJSON reads a request body: it must be valid UTF-8 and JSON of the
// expected shape.
func decodeJSON(body []byte, v any) *apiError {
	if !utf8.Valid(body) {
		return invalid("", "the request body is not valid UTF-8")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("", "the request body is empty; send a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return invalid("", "invalid JSON body: %v", err)
	}
	return nil
}

// parseChat decodes and checks a chat completion request.
func parseChat(body []byte) (*chatRequest, *apiError) {
	var req chatRequest
	if e := decodeJSON(body, &req); e != nil {
		return nil, e
	}
	if e := req.check(); e != nil {
		return nil, e
	}
	if e := req.unimplemented(); e != nil {
		return nil, e
	}
	if len(req.Messages) == 0 {
		return nil, invalid("messages", "messages is empty")
	}
	if v := req.TopLogprobs; v != nil {
		if *v < 0 || *v > 20 {
			return nil, invalid("top_logprobs", "top_logprobs %d is outside [0, 20]", *v)
		}
		if !req.Logprobs && *v > 0 {
			return nil, invalid("top_logprobs", "top_logprobs needs logprobs: true")
		}
	}
	msgs := make([]chat.Message, len(req.Messages))
	for i, m := range req.Messages {
		role := m.Role
		switch role {
		case "developer":
			role = chat.System
		case chat.System, chat.User, chat.Assistant:
		default:
			return nil, invalid(fmt.Sprintf("messages[%d].role", i), "message %d has role %q; herd takes system, developer, user and assistant", i, m.Role)
		}
		msgs[i] = chat.Message{Role: role, Content: string(m.Content)}
	}
	req.msgs = msgs
	return &req, nil
}

// parseCompletion decodes and checks a completion request; the prompt is
// text or token ids.
func parseCompletion(body []byte) (*completionRequest, *apiError) {
	var req completionRequest
	if e := decodeJSON(body, &req); e != nil {
		return nil, e
	}
	if e := req.check(); e != nil {
		return nil, e
	}
	if req.Echo {
		return nil, invalid("echo", "echo is not supported")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return nil, invalid("suffix", "suffix is not supported")
	}
	if req.BestOf != nil && *req.BestOf != 1 {
		return nil, invalid("best_of", "best_of is %d; herd takes 1", *req.BestOf)
	}
	if v := req.Logprobs; v != nil && (*v < 0 || *v > 5) {
		return nil, invalid("logprobs", "logprobs %d is outside [0, 5]", *v)
	}
	texts, ids, e := textsOrTokens(req.Prompt, "prompt")
	if e != nil {
		return nil, e
	}
	if len(texts)+len(ids) != 1 {
		return nil, invalid("prompt", "%d prompts: herd completes one prompt per request", len(texts)+len(ids))
	}
	if len(ids) == 1 {
		req.ids = ids[0]
	} else {
		req.text = texts[0]
	}
	return &req, nil
}

// textsOrTokens reads OpenAI's string | string[] | int[] | int[][] inputs.
func textsOrTokens(raw json.RawMessage, param string) ([]string, [][]int, *apiError) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil, invalid(param, "%s is required", param)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil, nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		return ss, nil, nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil {
		return nil, [][]int{ids}, nil
	}
	var idss [][]int
	if json.Unmarshal(raw, &idss) == nil {
		return nil, idss, nil
	}
	return nil, nil, invalid(param, "%s must be a string, a list of strings, a list of token ids or a list of such lists", param)
}

func parseEmbedding(body []byte) (*embeddingRequest, *apiError) {
	var req embeddingRequest
	if e := decodeJSON(body, &req); e != nil {
		return nil, e
	}
	if strings.TrimSpace(req.Model) == "" {
		return nil, invalid("model", "model is required")
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, invalid("encoding_format", "encoding_format %q: use float or base64", req.EncodingFormat)
	}
	if req.Dimensions != nil {
		return nil, invalid("dimensions", "dimensions cannot be chosen; the model's width is used")
	}
	texts, ids, e := textsOrTokens(req.Input, "input")
	if e != nil {
		return nil, e
	}
	if len(texts)+len(ids) == 0 {
		return nil, invalid("input", "input is empty")
	}
	if len(texts)+len(ids) > 2048 {
		return nil, invalid("input", "%d inputs; at most 2048", len(texts)+len(ids))
	}
	for i, t := range texts {
		if t == "" {
			return nil, invalid("input", "input %d is an empty string", i)
		}
	}
	req.texts, req.idss = texts, ids
	return &req, nil
}

// finite rounds NaN and ±Inf (which JSON cannot carry) to finite numbers.
func finite(x float32) float64 {
	switch {
	case math.IsNaN(float64(x)):
		return 0
	case math.IsInf(float64(x), 1):
		return math.MaxFloat32
	case math.IsInf(float64(x), -1):
		return -9999
	}
	return float64(x)
}
