package oai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// completion is a chat completion body with content and usage.
func completion(content string, prompt, gen int) string {
	b, _ := json.Marshal(map[string]any{"model": "teacher", "choices": []any{map[string]any{"index": 0,
		"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
		"usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": gen, "total_tokens": prompt + gen}})
	return string(b)
}

func fast(url string) Config {
	return Config{Endpoint: url, Model: "teacher", Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

func TestRetriesThenSucceeds(t *testing.T) {
	var n atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusTooManyRequests)
		case 2:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>bad gateway</html>")
		case 3: // a dropped connection
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
		default:
			var req wireRequest
			json.NewDecoder(r.Body).Decode(&req)
			if req.Model != "teacher" || req.Seed != 7 || r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer k" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			io.WriteString(w, completion("hello", 5, 2))
		}
	}))
	defer hs.Close()
	cfg := fast(hs.URL)
	cfg.APIKey = "k"
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Chat(context.Background(), Request{Messages: []Message{{"user", "hi"}}, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Content != "hello" || resp.Finish != "stop" {
		t.Errorf("got %+v", resp)
	}
	s := c.Stats()
	if s.Attempts != 4 || s.Retries != 3 || s.Requests != 1 || s.Failed != 0 || s.Usage != (Usage{5, 2}) {
		t.Errorf("stats %+v", s)
	}
}

func TestGivesUp(t *testing.T) {
	var n atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer hs.Close()
	cfg := fast(hs.URL)
	cfg.Retries = 2
	c, _ := New(cfg)
	_, err := c.Chat(context.Background(), Request{Messages: []Message{{"user", "hi"}}})
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || n.Load() != 3 {
		t.Fatalf("err %v after %d attempts", err, n.Load())
	}
	if s := c.Stats(); s.Failed != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestTimeoutRetried(t *testing.T) {
	var n atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return
		}
		io.WriteString(w, completion("late", 1, 1))
	}))
	defer hs.Close()
	cfg := fast(hs.URL)
	cfg.Timeout = 50 * time.Millisecond
	c, _ := New(cfg)
	resp, err := c.Chat(context.Background(), Request{Messages: []Message{{"user", "hi"}}})
	if err != nil || resp.Content != "late" {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestClearErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		is     error
		want   string
	}{
		{"html page", 200, "<html>hello</html>", ErrNotJSON, `text/plain`},
		{"object without choices", 200, `{"id": 1}`, ErrNotJSON, "no choices[0].message"},
		{"empty completion", 200, completion("  \n", 3, 0), ErrEmpty, "empty completion"},
		{"herd serve's unknown model", 404, `{"error":{"message":"the model \"x\" does not exist (served: stories)","type":"invalid_request_error","code":"model_not_found"}}`, ErrModelNotFound, "served: stories"},
		{"wrong path", 404, "404 page not found", nil, "OpenAI-compatible"},
		{"bad request", 400, `{"error":{"message":"max_tokens too large","type":"invalid_request_error"}}`, nil, "HTTP 400 invalid_request_error: max_tokens too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer hs.Close()
			c, _ := New(fast(hs.URL))
			resp, err := c.Chat(context.Background(), Request{Messages: []Message{{"user", "hi"}}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err %v", err)
			}
			if n.Load() != 1 {
				t.Errorf("%d attempts; a client error must not be retried", n.Load())
			}
			if tc.is == ErrEmpty && (resp == nil || c.Stats().Usage.Prompt != 3) {
				t.Errorf("an empty completion must keep its response and usage: %v %+v", resp, c.Stats())
			}
		})
	}
}

func TestCheckModel(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models" {
			w.WriteHeader(404)
			return
		}
		io.WriteString(w, `{"object":"list","data":[{"id":"stories"},{"id":"tiny"}]}`)
	}))
	defer hs.Close()
	for _, ep := range []string{hs.URL, hs.URL + "/v1", hs.URL + "/v1/chat/completions"} {
		c, _ := New(Config{Endpoint: ep, Model: "tiny"})
		if err := c.CheckModel(context.Background()); err != nil {
			t.Errorf("%s: %v", ep, err)
		}
	}
	c, _ := New(Config{Endpoint: hs.URL, Model: "gpt"})
	err := c.CheckModel(context.Background())
	if !errors.Is(err, ErrModelNotFound) || !strings.Contains(err.Error(), "served: stories, tiny") {
		t.Errorf("err %v", err)
	}
	if _, err := New(Config{Endpoint: "localhost:8080", Model: "x"}); err == nil {
		t.Error("a URL without a scheme was accepted")
	}
	if _, err := New(Config{Endpoint: hs.URL}); err == nil {
		t.Error("no model name was accepted")
	}
}

// TestConcurrencyAndRate: no more than Concurrency requests are in flight,
// and requests start no faster than RPS.
func TestConcurrencyAndRate(t *testing.T) {
	var in, peak atomic.Int32
	var mu sync.Mutex
	var starts []time.Time
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		v := in.Add(1)
		for {
			p := peak.Load()
			if v <= p || peak.CompareAndSwap(p, v) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		in.Add(-1)
		io.WriteString(w, completion("ok", 1, 1))
	}))
	defer hs.Close()
	for _, tc := range []struct {
		conc int
		rps  float64
	}{{2, 0}, {8, 100}} {
		in.Store(0)
		peak.Store(0)
		starts = nil
		cfg := fast(hs.URL)
		cfg.Concurrency, cfg.RPS = tc.conc, tc.rps
		c, _ := New(cfg)
		var wg sync.WaitGroup
		for range 12 {
			wg.Go(func() {
				if _, err := c.Chat(context.Background(), Request{Messages: []Message{{"user", "x"}}}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if int(peak.Load()) > tc.conc {
			t.Errorf("concurrency %d: %d in flight", tc.conc, peak.Load())
		}
		if tc.rps > 0 {
			first, last := starts[0], starts[0]
			for _, s := range starts {
				first, last = minTime(first, s), maxTime(last, s)
			}
			// 12 requests at 100/s span at least 110 ms
			if d := last.Sub(first); d < 100*time.Millisecond {
				t.Errorf("12 requests at %g/s started within %v", tc.rps, d)
			}
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func TestRetryAfter(t *testing.T) {
	var n atomic.Int32
	var first time.Time
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			return
		}
		if d := time.Since(first); d < 900*time.Millisecond {
			w.WriteHeader(400)
			fmt.Fprintf(w, "retried after %v", d)
			return
		}
		io.WriteString(w, completion("ok", 1, 1))
	}))
	defer hs.Close()
	cfg := fast(hs.URL)
	cfg.MaxBackoff = 2 * time.Second
	c, _ := New(cfg)
	if _, err := c.Chat(context.Background(), Request{Messages: []Message{{"user", "x"}}}); err != nil {
		t.Fatal(err)
	}
}
