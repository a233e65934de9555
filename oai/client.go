// Package oai is herd's client for OpenAI-compatible chat completion
// endpoints (herd serve, llama-server, vLLM, hosted APIs), as the data
// pipelines (synth) and the judge use it: a limit on requests in flight, a
// request rate limit, retries with exponential backoff on 429, 5xx,
// timeouts and dropped connections, clear errors for answers that are not
// JSON, empty completions and unknown model names, and token usage counted.
package oai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a caller tells apart with errors.Is.
var (
	// ErrModelNotFound: the endpoint does not serve the model asked for.
	ErrModelNotFound = errors.New("model not found")
	// ErrEmpty: the completion's text is empty (the Response is still
	// returned, with its usage).
	ErrEmpty = errors.New("empty completion")
	// ErrNotJSON: the endpoint answered with something that is not an
	// OpenAI JSON object (a wrong URL, a proxy's HTML page).
	ErrNotJSON = errors.New("answer is not JSON")
)

// Config configures a Client.
type Config struct {
	// Endpoint is the server's base URL ("http://127.0.0.1:8080", with or
	// without "/v1"), or the full chat completions URL.
	Endpoint string
	// Model is the model name sent with every request.
	Model string
	// APIKey, when set, is sent as "Authorization: Bearer KEY".
	APIKey string
	// Concurrency is the most requests in flight (default 4).
	Concurrency int
	// RPS caps the rate at which requests start, per second (0: no cap).
	RPS float64
	// Retries is how many times a failed request is retried (default 5;
	// negative: never).
	Retries int
	// Backoff is the wait before the first retry, doubled at each further
	// one up to MaxBackoff (defaults 500 ms and 30 s). A Retry-After
	// header, when longer, is obeyed up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one attempt (default 10 minutes); a timed-out attempt
	// is retried.
	Timeout time.Duration
	// HTTP is the client used (default: a new http.Client).
	HTTP *http.Client
}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Request is one chat completion request; the model comes from Config.
type Request struct {
	Messages    []Message
	Temperature float64 // 0: greedy
	TopP        float64 // 0: not sent
	MaxTokens   int     // 0: not sent (the endpoint's default)
	Seed        int64   // sent as "seed" (endpoints that honour it are deterministic)
	Stop        []string
}

// Usage counts tokens.
type Usage struct {
	Prompt     int64 `json:"prompt_tokens"`
	Completion int64 `json:"completion_tokens"`
}

// Add adds u to the count.
func (c *Usage) Add(u Usage) { c.Prompt += u.Prompt; c.Completion += u.Completion }

// Total is prompt plus completion tokens.
func (c Usage) Total() int64 { return c.Prompt + c.Completion }

// Response is a completion.
type Response struct {
	Content string
	Finish  string // "stop", "length", …
	Model   string // the model the endpoint says answered
	Usage   Usage
}

// Stats are a client's running totals.
type Stats struct {
	Requests int64 // completed requests (successful or finally failed)
	Attempts int64 // HTTP attempts, retries included
	Retries  int64
	Failed   int64 // requests that failed after their retries, or were not retryable
	Usage    Usage
}

// Client sends chat completions. It is safe for concurrent use.
type Client struct {
	cfg  Config
	url  string
	base string // the URL up to /v1
	sem  chan struct{}

	rateMu sync.Mutex
	next   time.Time

	requests, attempts, retries, failed atomic.Int64
	prompt, completion                  atomic.Int64
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.Endpoint) == "" {
		return nil, fmt.Errorf("no endpoint URL given")
	}
	if !strings.HasPrefix(cfg.Endpoint, "http://") && !strings.HasPrefix(cfg.Endpoint, "https://") {
		return nil, fmt.Errorf("endpoint %q: want an http:// or https:// URL", cfg.Endpoint)
	}
	if strings.TrimSpace(cfg.Model) == "" {
		return nil, fmt.Errorf("endpoint %s: no model name given", cfg.Endpoint)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	c := &Client{cfg: cfg, sem: make(chan struct{}, cfg.Concurrency)}
	c.url, c.base = endpointURLs(cfg.Endpoint)
	return c, nil
}

// endpointURLs returns the chat completions URL and the base up to /v1.
func endpointURLs(ep string) (chatURL, base string) {
	ep = strings.TrimRight(ep, "/")
	switch {
	case strings.HasSuffix(ep, "/chat/completions"):
		return ep, strings.TrimSuffix(ep, "/chat/completions")
	case strings.HasSuffix(ep, "/v1"):
		return ep + "/chat/completions", ep
	}
	return ep + "/v1/chat/completions", ep + "/v1"
}

// Model is the model name the client asks for.
func (c *Client) Model() string { return c.cfg.Model }

// Concurrency is the most requests the client has in flight.
func (c *Client) Concurrency() int { return c.cfg.Concurrency }

// Stats returns the running totals.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Attempts: c.attempts.Load(), Retries: c.retries.Load(), Failed: c.failed.Load(),
		Usage: Usage{Prompt: c.prompt.Load(), Completion: c.completion.Load()}}
}

// CheckModel asks the endpoint's model list whether it serves the model,
// so a wrong name fails before a long run starts. An endpoint without a
// model list (404, or an answer that is not a list) passes.
func (c *Client) CheckModel(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(c.cfg.Timeout, time.Minute))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/models", nil)
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", c.base, err)
	}
	c.auth(req)
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("endpoint %s: %w", c.base, apiError(resp, body))
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Data) == 0 {
		return nil
	}
	var names []string
	for _, m := range list.Data {
		if m.ID == c.cfg.Model {
			return nil
		}
		names = append(names, m.ID)
	}
	return fmt.Errorf("endpoint %s: %w: %q is not served (served: %s)", c.base, ErrModelNotFound, c.cfg.Model, strings.Join(names, ", "))
}

func (c *Client) auth(req *http.Request) {
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
}

// Chat sends one chat completion, retrying what is worth retrying. An
// empty completion returns the Response and an error wrapping ErrEmpty.
func (c *Client) Chat(ctx context.Context, r Request) (*Response, error) {
	if len(r.Messages) == 0 {
		return nil, fmt.Errorf("chat completion: no messages")
	}
	body, err := json.Marshal(c.wire(r))
	if err != nil {
		return nil, fmt.Errorf("chat completion: %w", err)
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.sem }()
	defer c.requests.Add(1)
	wait := c.cfg.Backoff
	for attempt := 0; ; attempt++ {
		if err := c.pace(ctx); err != nil {
			return nil, err
		}
		resp, retryAfter, err := c.attempt(ctx, body)
		if err == nil || errors.Is(err, ErrEmpty) {
			return resp, err
		}
		if ctx.Err() != nil {
			c.failed.Add(1)
			return nil, ctx.Err()
		}
		var re *retryable
		if !errors.As(err, &re) || attempt >= c.cfg.Retries {
			c.failed.Add(1)
			if attempt > 0 {
				return nil, fmt.Errorf("chat completion at %s: gave up after %d attempts: %w", c.url, attempt+1, err)
			}
			return nil, fmt.Errorf("chat completion at %s: %w", c.url, err)
		}
		c.retries.Add(1)
		d := min(max(wait, retryAfter), c.cfg.MaxBackoff)
		wait = min(2*wait, c.cfg.MaxBackoff)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c.failed.Add(1)
			return nil, ctx.Err()
		}
	}
}

// pace waits for the request's slot under the rate limit.
func (c *Client) pace(ctx context.Context) error {
	if c.cfg.RPS <= 0 {
		return nil
	}
	c.rateMu.Lock()
	now := time.Now()
	at := c.next
	if at.Before(now) {
		at = now
	}
	c.next = at.Add(time.Duration(float64(time.Second) / c.cfg.RPS))
	c.rateMu.Unlock()
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// wireRequest is the JSON body.
type wireRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	Temperature float64   `json:"temperature"`
	TopP        float64   `json:"top_p,omitempty"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Seed        int64     `json:"seed"`
	Stop        []string  `json:"stop,omitempty"`
	Stream      bool      `json:"stream"`
}

func (c *Client) wire(r Request) wireRequest {
	return wireRequest{Model: c.cfg.Model, Messages: r.Messages, Temperature: r.Temperature, TopP: r.TopP,
		MaxTokens: r.MaxTokens, Seed: r.Seed, Stop: r.Stop}
}

// retryable marks an error worth another attempt.
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// APIError is an error answer from the endpoint.
type APIError struct {
	Status  int
	Type    string
	Code    string
	Message string
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	} else if e.Type != "" {
		s += " " + e.Type
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// apiError decodes an error answer (OpenAI's {"error": {...}} or any text).
func apiError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode}
	var w struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &w) == nil && len(w.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    any    `json:"code"`
		}
		if json.Unmarshal(w.Error, &obj) == nil {
			e.Message, e.Type = obj.Message, obj.Type
			if obj.Code != nil {
				e.Code = fmt.Sprint(obj.Code)
			}
			return e
		}
		var s string
		if json.Unmarshal(w.Error, &s) == nil {
			e.Message = s
			return e
		}
	}
	e.Message = snippet(body)
	return e
}

// snippet is the start of a body, for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.Quote(s)
}

// attempt sends the request once.
func (c *Client) attempt(ctx context.Context, body []byte) (*Response, time.Duration, error) {
	c.attempts.Add(1)
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	c.auth(req)
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return nil, 0, &retryable{err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, 0, &retryable{fmt.Errorf("reading the answer: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, retryAfter(resp), c.statusError(resp, b)
	}
	out, err := decode(resp, b)
	if err != nil {
		return nil, 0, err
	}
	c.prompt.Add(out.Usage.Prompt)
	c.completion.Add(out.Usage.Completion)
	if strings.TrimSpace(out.Content) == "" {
		return out, 0, fmt.Errorf("chat completion at %s: %w (finish_reason %q)", c.url, ErrEmpty, out.Finish)
	}
	return out, 0, nil
}

// statusError classifies a non-200 answer.
func (c *Client) statusError(resp *http.Response, b []byte) error {
	e := apiError(resp, b)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode >= 500:
		return &retryable{e}
	case resp.StatusCode == http.StatusNotFound && (e.Code == "model_not_found" || strings.Contains(strings.ToLower(e.Message), "model")):
		return fmt.Errorf("%w: %q (%v)", ErrModelNotFound, c.cfg.Model, e)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%v (is %s an OpenAI-compatible chat completions URL?)", e, c.url)
	}
	return e
}

// retryAfter reads a Retry-After header given in seconds.
func retryAfter(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// decode reads a chat completion object.
func decode(resp *http.Response, b []byte) (*Response, error) {
	var w struct {
		Model   string `json:"model"`
		Choices []struct {
			Message *struct {
				Content *string `json:"content"`
			} `json:"message"`
			Finish *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *Usage          `json:"usage"`
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w (Content-Type %q, %d bytes: %s): %v", ErrNotJSON, resp.Header.Get("Content-Type"), len(b), snippet(b), err)
	}
	if len(w.Error) > 0 && string(w.Error) != "null" {
		return nil, &retryable{apiError(resp, b)}
	}
	if len(w.Choices) == 0 || w.Choices[0].Message == nil {
		return nil, fmt.Errorf("%w: the object has no choices[0].message: %s", ErrNotJSON, snippet(b))
	}
	out := &Response{Model: w.Model}
	if p := w.Choices[0].Message.Content; p != nil {
		out.Content = *p
	}
	if p := w.Choices[0].Finish; p != nil {
		out.Finish = *p
	}
	if w.Usage != nil {
		out.Usage = *w.Usage
	}
	return out, nil
}
