package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// LoadConfig describes a load test against a running server: Clients
// concurrent clients each send Requests streaming chat completions at
// temperature 0, one after another.
type LoadConfig struct {
	URL       string // the server's base URL, e.g. http://127.0.0.1:8080
	APIKey    string
	Model     string
	Clients   int
	Requests  int      // per client
	MaxTokens int      // per request
	Prompts   []string // request i of the run asks Prompts[i % len(Prompts)]
	// Want, when set, holds the text each prompt gets when sent alone; every
	// response is compared with it.
	Want map[string]string
}

// LoadReport is what a load test measured.
type LoadReport struct {
	Clients, Requests int
	Errors            int      // requests that failed or whose stream did not complete
	Mismatches        int      // responses that differ from Want
	FirstErrors       []string // a few of the errors and mismatches
	Tokens            int      // completion tokens, as the usage chunks report them
	Elapsed           time.Duration
	TTFT              []time.Duration // time to the first content chunk, sorted
	Texts             map[string]string
}

// TokensPerSecond is the aggregate generation speed.
func (r *LoadReport) TokensPerSecond() float64 { return float64(r.Tokens) / r.Elapsed.Seconds() }

// Percentile returns the p-th percentile (0..100) of the times to first token.
func (r *LoadReport) Percentile(p float64) time.Duration {
	if len(r.TTFT) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(r.TTFT)-1))
	return r.TTFT[i]
}

// DefaultPrompts are story openings for load tests.
var DefaultPrompts = []string{"Once upon a time", "Tom and Lily went to the park", "The little cat", "One day, a big dog",
	"Sam had a red ball", "The sun was hot", "Mom said", "A bird sat on a tree", "The boy wanted a toy", "Anna liked to draw",
	"There was a frog", "Ben and his dad", "The girl saw a star", "It was a rainy day", "The bunny was sad", "Max found a box"}

// Load runs a load test.
func Load(ctx context.Context, cfg LoadConfig) (*LoadReport, error) {
	if cfg.Clients <= 0 || cfg.Requests <= 0 || cfg.MaxTokens <= 0 || len(cfg.Prompts) == 0 {
		return nil, fmt.Errorf("load test: clients, requests, max tokens and prompts must be positive")
	}
	rep := &LoadReport{Clients: cfg.Clients, Requests: cfg.Clients * cfg.Requests, Texts: map[string]string{}}
	var mu sync.Mutex
	fail := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		rep.Errors++
		if len(rep.FirstErrors) < 5 {
			rep.FirstErrors = append(rep.FirstErrors, msg)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}}
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < cfg.Requests; k++ {
				prompt := cfg.Prompts[(c*cfg.Requests+k)%len(cfg.Prompts)]
				text, tokens, ttft, err := streamChat(ctx, client, cfg, prompt)
				if err != nil {
					fail(fmt.Sprintf("%q: %v", prompt, err))
					continue
				}
				mu.Lock()
				rep.Tokens += tokens
				rep.TTFT = append(rep.TTFT, ttft)
				rep.Texts[prompt] = text
				if want, ok := cfg.Want[prompt]; ok && want != text {
					rep.Mismatches++
					if len(rep.FirstErrors) < 5 {
						rep.FirstErrors = append(rep.FirstErrors, fmt.Sprintf("%q: got %q, alone %q", prompt, text, want))
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	slices.Sort(rep.TTFT)
	return rep, nil
}

var (
	dataPrefix = []byte("data: ")
	doneMark   = []byte("[DONE]")
)

// streamChunk is what a load test reads from each chunk of a streamed chat
// completion.
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		Finish *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage    `json:"usage"`
	Error *apiError `json:"error"`
}

// streamChat sends one streaming chat completion and reads it to [DONE].
func streamChat(ctx context.Context, client *http.Client, cfg LoadConfig, prompt string) (string, int, time.Duration, error) {
	body, _ := json.Marshal(map[string]any{
		"model": cfg.Model, "messages": []map[string]string{{"role": "user", "content": prompt}},
		"max_tokens": cfg.MaxTokens, "temperature": 0, "stream": true, "stream_options": map[string]bool{"include_usage": true},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(cfg.URL, "/")+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return "", 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return "", 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var text strings.Builder
	var ttft time.Duration
	tokens, finished, done := -1, false, false
	// the buffer starts small and grows for long lines (up to 1 MiB)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), dataPrefix)
		if !ok {
			continue
		}
		if bytes.Equal(data, doneMark) {
			done = true
			break
		}
		var c streamChunk
		if err := json.Unmarshal(data, &c); err != nil {
			return "", 0, 0, err
		}
		if c.Error != nil {
			return "", 0, 0, fmt.Errorf("stream error: %s", c.Error.Message)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" && ttft == 0 {
				ttft = time.Since(t0)
			}
			text.WriteString(ch.Delta.Content)
			finished = finished || ch.Finish != nil
		}
		if c.Usage != nil {
			tokens = c.Usage.CompletionTokens
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, 0, err
	}
	if !done || !finished || tokens < 0 {
		return "", 0, 0, fmt.Errorf("incomplete stream (done %v, finish reason %v, usage %v)", done, finished, tokens >= 0)
	}
	return text.String(), tokens, ttft, nil
}
