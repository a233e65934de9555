package synth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// answer is a canned completion.
type answer struct {
	content string
	finish  string // "" is "stop"
}

// scripted is a test endpoint that answers each request by its seed (the
// runs derive every request's seed from the unit and the request's place
// in it, so the script does not depend on arrival order); by fallback
// when no seed matches; and fails the test on an unscripted request.
type scripted struct {
	t        testing.TB
	mu       sync.Mutex
	bySeed   map[int64]answer
	fallback func(req wireReq) (answer, bool)
	requests atomic.Int64
	// dropAfter > 0 closes the connection of every request after that many.
	dropAfter atomic.Int64
	prompts   []wireReq
}

type wireReq struct {
	Model    string        `json:"model"`
	Messages []oai.Message `json:"messages"`
	Seed     int64         `json:"seed"`
	Stop     []string      `json:"stop"`
}

func newScripted(t testing.TB) *scripted {
	return &scripted{t: t, bySeed: map[int64]answer{}}
}

// on scripts the answer to request n of unit key under run seed.
func (s *scripted) on(seed int64, key string, n int, content string) {
	s.bySeed[deriveSeed(seed, key, n)] = answer{content: content}
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	if d := s.dropAfter.Load(); d > 0 && n > d {
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
		return
	}
	var req wireReq
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(400)
		return
	}
	s.mu.Lock()
	s.prompts = append(s.prompts, req)
	a, ok := s.bySeed[req.Seed]
	if !ok && s.fallback != nil {
		a, ok = s.fallback(req)
	}
	s.mu.Unlock()
	if !ok {
		s.t.Errorf("unscripted request (seed %d): %q", req.Seed, req.Messages[len(req.Messages)-1].Content)
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"message":"unscripted"}}`)
		return
	}
	if a.finish == "" {
		a.finish = "stop"
	}
	b, _ := json.Marshal(map[string]any{"model": req.Model, "choices": []any{map[string]any{"index": 0,
		"message": map[string]any{"role": "assistant", "content": a.content}, "finish_reason": a.finish}},
		"usage": map[string]any{"prompt_tokens": 10, "completion_tokens": len(a.content)}})
	w.Write(b)
}

// serve starts the endpoint and a client for it.
func (s *scripted) serve(conc int) (*oai.Client, *httptest.Server) {
	hs := httptest.NewServer(s)
	s.t.Cleanup(hs.Close)
	c, err := oai.New(oai.Config{Endpoint: hs.URL, Model: "teacher", Concurrency: conc, Retries: 2, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	return c, hs
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines decodes a JSON Lines output.
func readItems[T any](t testing.TB, path string) []T {
	t.Helper()
	var out []T
	for no, ln := range strings.Split(readFile(t, path), "\n") {
		if ln == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(ln), &v); err != nil {
			t.Fatalf("%s:%d: %v", path, no+1, err)
		}
		out = append(out, v)
	}
	return out
}

func checkDrops(t testing.TB, s *Stats, kept int, want map[string]int) {
	t.Helper()
	if s.Kept != kept {
		t.Errorf("kept %d, want %d", s.Kept, kept)
	}
	for r, n := range want {
		if s.Drops[r] != n {
			t.Errorf("drop %s: %d, want %d", r, s.Drops[r], n)
		}
	}
	for r, n := range s.Drops {
		if _, ok := want[r]; !ok {
			t.Errorf("unexpected drop %s: %d", r, n)
		}
	}
}

// deriveSeed is the seed of request n of unit key under the run's seed.
func deriveSeed(seed int64, key string, n int) int64 { return journal.DeriveSeed(seed, key, n) }
