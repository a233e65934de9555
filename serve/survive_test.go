package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
)

// TestSurvives is issue 21's "done means" for serving: on 127.0.0.1 the
// server survives a model that produces NaN, a hostile chat template, a
// storm of slow connections and requests without max_tokens on a model
// claiming a context of 2^31 — each answered with a clear error (or an
// answer) while a good model's requests keep being served. Bounded to a
// few seconds.
func TestSurvives(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	models := survivalModels(t)
	srv, err := New(Config{BodyTimeout: time.Second, HeaderTimeout: time.Second, IdleTimeout: time.Second, MaxConns: 400,
		DefaultMaxTokens: 1000}, models...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	url := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second}

	// a good request works throughout
	t0 := time.Now()
	good := func(label string) {
		t.Helper()
		t.Logf("%6.2fs %s", time.Since(t0).Seconds(), label)
		status, body := postWith(t, client, url+"/v1/chat/completions", `{"model":"good","messages":[{"role":"user","content":"Once"}],"max_tokens":8,"temperature":0}`)
		if status != 200 || !strings.Contains(body, `"completion_tokens":8`) {
			t.Errorf("%s: the good model answered %d %s", label, status, body)
		}
	}
	good("at start")

	// a NaN model: a 500 naming NaN and the position, every time
	for range 2 {
		status, body := postWith(t, client, url+"/v1/completions", `{"model":"nan","prompt":"Once","max_tokens":4,"top_p":0.9}`)
		if status != 500 || !strings.Contains(body, "NaN at position") || !strings.Contains(body, "model_output_not_finite") {
			t.Errorf("NaN model: %d %s", status, body)
		}
	}
	good("after the NaN model")

	// a template that is too much for a long conversation fails that request
	var msgs []string
	for i := range 300 {
		msgs = append(msgs, fmt.Sprintf(`{"role":%q,"content":"x"}`, []string{"user", "assistant"}[i%2]))
	}
	status, body := postWith(t, client, url+"/v1/chat/completions", `{"model":"template","max_tokens":2,"messages":[`+strings.Join(msgs, ",")+`,{"role":"user","content":"y"}]}`)
	if status != 400 || !strings.Contains(body, "steps") && !strings.Contains(body, "runs longer than") { // whichever limit a loaded machine meets first
		t.Errorf("hostile template: %d %s", status, body)
	}
	good("after the hostile template")

	// no max_tokens on a model claiming 2^31 positions: answered (the KV
	// budget bounds the context, DefaultMaxTokens the answer), while the
	// good model is served beside it
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		status, body := postWith(t, client, url+"/v1/completions", `{"model":"huge","prompt":"Once upon a time","temperature":0}`)
		var r struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage usage `json:"usage"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &r) != nil || len(r.Choices) != 1 || r.Usage.CompletionTokens > 1000 ||
			(r.Choices[0].FinishReason == "length") != (r.Usage.CompletionTokens == 1000) {
			t.Errorf("huge context without max_tokens: %d %.300s", status, body)
		}
	}()
	good("beside the huge-context request")

	slowStorm(t, url, ln.Addr().String(), good)
	wg.Wait()
}

// slowStorm opens 300 connections that send a body one byte at a time and
// 150 that send nothing: the good model is served meanwhile, the slow ones
// are cut off by the body and header timeouts, and the connections beyond
// the cap get a 503 at once.
func slowStorm(t *testing.T, url, addr string, good func(string)) {
	const slow, idle = 300, 150
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		conns = append(conns, c)
	}
	good("during the slow bodies")
	busy := 0
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// the connections beyond the cap of 400 read a 503 at once
	for _, c := range conns[slow:] {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if line, _ := bufio.NewReader(c).ReadString('\n'); strings.Contains(line, "503") {
			busy++
		}
	}
	if busy < slow+idle-400 {
		t.Errorf("%d connections over the cap got a 503, want at least %d", busy, slow+idle-400)
	}
	// within the body timeout (1s) and a second of grace every slow
	// connection has its answer (408) or is closed
	deadline := time.Now().Add(3 * time.Second)
	for i, c := range conns[:slow] {
		c.SetReadDeadline(deadline)
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("slow connection %d still open after the body timeout", i)
		}
		if len(b) > 0 && !strings.Contains(string(b), "408") {
			t.Errorf("slow connection %d: %.200q", i, b)
		}
	}
	good("after the storm")
}

func postWith(t *testing.T, c *http.Client, url, body string) (int, string) {
	t.Helper()
	r, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// survivalModels: good (stories260K), nan (a NaN in its output norm),
// template (a chat template cubic in the conversation's length) and huge
// (a context claimed of 2^31 positions, under the default KV budget).
func survivalModels(t *testing.T) []*Model {
	var out []*Model
	raw, _ := chat.Lookup("raw")
	cubic, err := chat.FromJinja("cubic", "{% for m in messages %}{% for n in messages %}{% for o in messages %}{% for p in range(20) %}{% endfor %}{% endfor %}{% endfor %}{{ m.content }}{% endfor %}", chat.Vocab{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"good", "nan", "template", "huge"} {
		m, tok, err := checkpoint.Default()
		if err != nil {
			t.Fatal(err)
		}
		cfg := generate.SchedulerConfig{Parallel: 4}
		tp := raw
		switch name {
		case "nan":
			m.OutNorm = append([]float32(nil), m.OutNorm...)
			m.OutNorm[0] = float32(math.NaN())
		case "template":
			tp = cubic
		case "huge":
			c := m.Config
			c.ContextLen = 1 << 31
			huge := *m
			huge.Config = c
			m = &huge
		}
		s := generate.NewScheduler(m, tok, cfg)
		t.Cleanup(s.Close)
		out = append(out, &Model{Name: name, Model: m, Tok: tok, Template: tp, Sched: s})
	}
	return out
}
