package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
)

// newTestServer serves the embedded stories260K as "stories" with a small
// context, behind the API key when one is given.
func newTestServer(t testing.TB, key string, parallel int) (*Server, *httptest.Server) {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := chat.Lookup("raw")
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: parallel, Context: 128})
	t.Cleanup(sched.Close)
	s, err := New(Config{APIKey: key, MaxBodyBytes: 1 << 20}, &Model{Name: "stories", Model: m, Tok: tok, Template: raw, Sched: sched})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func post(t testing.TB, url, key string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, body)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// endless is a body of n bytes that is never held in memory.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), e.n)
	for i := range p[:k] {
		p[i] = ' '
	}
	e.n -= k
	return int(k), nil
}

// TestBadInput checks that bad requests get a 4xx in OpenAI's error shape
// with a message, and that the server keeps answering.
func TestBadInput(t *testing.T) {
	_, hs := newTestServer(t, "", 2)
	chatURL := hs.URL + "/v1/chat/completions"
	msg := `"messages":[{"role":"user","content":"Once"}]`
	for _, tc := range []struct {
		name, url, body string
		status          int
		want            string
	}{
		{"malformed JSON", chatURL, `{"model":"stories",`, 400, "invalid JSON"},
		{"not an object", chatURL, `[1,2]`, 400, "invalid JSON"},
		{"empty body", chatURL, ``, 400, "empty"},
		{"wrong type", chatURL, `{"model":"stories",` + msg + `,"max_tokens":"ten"}`, 400, "max_tokens"},
		{"wrong content type", chatURL, `{"model":"stories","messages":[{"role":"user","content":5}]}`, 400, "content"},
		{"image content", chatURL, `{"model":"stories","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "text only"},
		{"no model", chatURL, `{` + msg + `}`, 400, "model is required"},
		{"unknown model", chatURL, `{"model":"../../etc/passwd",` + msg + `}`, 404, "does not exist"},
		{"negative max_tokens", chatURL, `{"model":"stories",` + msg + `,"max_tokens":-1}`, 400, "at least 1"},
		{"zero max_completion_tokens", chatURL, `{"model":"stories",` + msg + `,"max_completion_tokens":0}`, 400, "at least 1"},
		{"tools", chatURL, `{"model":"stories",` + msg + `,"tools":[{"type":"function","function":{"name":"f"}}]}`, 400, "tools is not supported"},
		{"tool_choice", chatURL, `{"model":"stories",` + msg + `,"tool_choice":"auto"}`, 400, "tool_choice is not supported"},
		{"response_format", chatURL, `{"model":"stories",` + msg + `,"response_format":{"type":"json_object"}}`, 400, "response_format"},
		{"functions", chatURL, `{"model":"stories",` + msg + `,"functions":[{"name":"f"}]}`, 400, "functions is not supported"},
		{"overflowing max_tokens", chatURL, `{"model":"stories",` + msg + `,"max_tokens":1e40}`, 400, "max_tokens"},
		{"temperature", chatURL, `{"model":"stories",` + msg + `,"temperature":3}`, 400, "temperature"},
		{"top_p", chatURL, `{"model":"stories",` + msg + `,"top_p":0}`, 400, "top_p"},
		{"penalty", chatURL, `{"model":"stories",` + msg + `,"presence_penalty":-2.5}`, 400, "presence_penalty"},
		{"n", chatURL, `{"model":"stories",` + msg + `,"n":3}`, 400, "one choice"},
		{"stop type", chatURL, `{"model":"stories",` + msg + `,"stop":7}`, 400, "stop"},
		{"too many stops", chatURL, `{"model":"stories",` + msg + `,"stop":["a","b","c","d","e"]}`, 400, "at most 4"},
		{"role", chatURL, `{"model":"stories","messages":[{"role":"tool","content":"x"}]}`, 400, "role"},
		{"late system", chatURL, `{"model":"stories","messages":[{"role":"user","content":"x"},{"role":"system","content":"y"}]}`, 400, "system"},
		{"no messages", chatURL, `{"model":"stories","messages":[]}`, 400, "messages"},
		{"top_logprobs without logprobs", chatURL, `{"model":"stories",` + msg + `,"top_logprobs":3}`, 400, "logprobs"},
		{"invalid UTF-8", chatURL, "{\"model\":\"stories\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", 400, "UTF-8"},
		{"prompt too long", chatURL, `{"model":"stories","messages":[{"role":"user","content":"` + strings.Repeat("cat dog ", 200) + `"}]}`, 400, "context of model stories holds 128"},
		{"completion: token ids outside the vocabulary", hs.URL + "/v1/completions", `{"model":"stories","prompt":[1,99999]}`, 400, "vocabulary"},
		{"completion: two prompts", hs.URL + "/v1/completions", `{"model":"stories","prompt":["a","b"]}`, 400, "one prompt"},
		{"completion: no prompt", hs.URL + "/v1/completions", `{"model":"stories"}`, 400, "prompt is required"},
		{"completion: echo", hs.URL + "/v1/completions", `{"model":"stories","prompt":"a","echo":true}`, 400, "echo"},
		{"embedding: no input", hs.URL + "/v1/embeddings", `{"model":"stories"}`, 400, "input is required"},
		{"embedding: bad format", hs.URL + "/v1/embeddings", `{"model":"stories","input":"a","encoding_format":"hex"}`, 400, "encoding_format"},
		{"embedding: too long", hs.URL + "/v1/embeddings", `{"model":"stories","input":"` + strings.Repeat("cat dog ", 200) + `"}`, 400, "holds 128"},
		{"embedding: bad token", hs.URL + "/v1/embeddings", `{"model":"stories","input":[[5,-1]]}`, 400, "vocabulary"},
		{"unknown route", hs.URL + "/v1/engines", `{}`, 404, "no route"},
		{"wrong method", hs.URL + "/v1/models", `{}`, 405, "takes GET"},
	} {
		status, body := post(t, tc.url, "", strings.NewReader(tc.body))
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if status != tc.status || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error.Message, tc.want) || e.Error.Type == "" {
			t.Errorf("%s: %d %s; want %d with %q", tc.name, status, body, tc.status, tc.want)
		}
	}
	// a 100 MB body is refused without reading it all
	status, body := post(t, chatURL, "", &endless{100 << 20})
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "exceeds the limit") {
		t.Errorf("100 MB body: %d %s", status, body)
	}
	// and the server still works
	status, body = post(t, chatURL, "", strings.NewReader(`{"model":"stories",`+msg+`,"max_tokens":3}`))
	if status != 200 || !strings.Contains(body, `"completion_tokens":3`) {
		t.Errorf("after the bad requests: %d %s", status, body)
	}
}

func TestAuth(t *testing.T) {
	_, hs := newTestServer(t, "sekrit", 1)
	body := `{"model":"stories","prompt":"Once","max_tokens":2}`
	if status, _ := post(t, hs.URL+"/v1/completions", "", strings.NewReader(body)); status != 401 {
		t.Errorf("no key: %d", status)
	}
	if status, b := post(t, hs.URL+"/v1/completions", "wrong", strings.NewReader(body)); status != 401 || !strings.Contains(b, "invalid_api_key") {
		t.Errorf("wrong key: %d %s", status, b)
	}
	if status, _ := post(t, hs.URL+"/v1/completions", "sekrit", strings.NewReader(body)); status != 200 {
		t.Errorf("right key: %d", status)
	}
	// health, metrics and the page need no key
	for _, p := range []string{"/health", "/metrics", "/"} {
		r, err := http.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("%s: %d", p, r.StatusCode)
		}
	}
}

// sseEvents reads a server-sent event stream.
func sseEvents(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not an SSE data line", line)
		}
		out = append(out, data)
	}
	return out
}

func TestStreamShape(t *testing.T) {
	_, hs := newTestServer(t, "", 2)
	r, err := http.Post(hs.URL+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"stories","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true},"logprobs":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if ct := r.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	ev := sseEvents(t, r.Body)
	if ev[len(ev)-1] != "[DONE]" {
		t.Fatalf("last event %q", ev[len(ev)-1])
	}
	type chunk struct {
		Object  string `json:"object"`
		Choices []struct {
			Delta struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"delta"`
			Finish *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
	var chunks []chunk
	for _, e := range ev[:len(ev)-1] {
		var c chunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	if chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Errorf("first chunk %+v", chunks[0])
	}
	last, fin := chunks[len(chunks)-1], chunks[len(chunks)-2]
	if len(last.Choices) != 0 || last.Usage == nil || last.Usage.CompletionTokens != 8 {
		t.Errorf("usage chunk %+v", last)
	}
	if fin.Choices[0].Finish == nil || *fin.Choices[0].Finish != "length" || fin.Usage != nil {
		t.Errorf("final chunk %+v", fin)
	}
	for _, c := range chunks[:len(chunks)-1] {
		if c.Object != "chat.completion.chunk" || c.Usage != nil {
			t.Errorf("chunk %+v", c)
		}
	}
}

// TestDisconnectFreesSlot checks that a client that goes away frees its
// slot at once for a queued request.
func TestDisconnectFreesSlot(t *testing.T) {
	s, hs := newTestServer(t, "", 1)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v1/completions", strings.NewReader(
		`{"model":"stories","prompt":"Once","max_tokens":120,"stream":true}`))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(r.Body)
	if _, err := br.ReadString('\n'); err != nil { // the first chunk: it runs
		t.Fatal(err)
	}
	cancel()
	r.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, a := s.models["stories"].Sched.Load(); a == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot is still taken after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, body := post(t, hs.URL+"/v1/completions", "", strings.NewReader(`{"model":"stories","prompt":"Once","max_tokens":4}`))
	if status != 200 {
		t.Errorf("next request: %d %s", status, body)
	}
}

func TestMetricsAndPage(t *testing.T) {
	_, hs := newTestServer(t, "", 2)
	post(t, hs.URL+"/v1/chat/completions", "", strings.NewReader(`{"model":"stories","messages":[{"role":"user","content":"Once"}],"max_tokens":5}`))
	post(t, hs.URL+"/v1/chat/completions", "", strings.NewReader(`{"model":"nope","messages":[{"role":"user","content":"Once"}]}`))
	r, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	m := string(b)
	for _, want := range []string{
		`herd_requests_total{endpoint="/v1/chat/completions",model="stories",status="200"} 1`,
		`herd_requests_total{endpoint="/v1/chat/completions",model="",status="404"} 1`,
		`herd_generated_tokens_total{model="stories"} 5`,
		`herd_time_to_first_token_seconds_count{model="stories"} 1`,
		`herd_generation_tokens_per_second_count{model="stories"} 1`,
		`herd_queue_depth{model="stories"} 0`,
		`# TYPE herd_time_to_first_token_seconds histogram`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	r, err = http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	page := string(b)
	if !strings.Contains(page, "/v1/chat/completions") || strings.Contains(page, "src=\"http") || strings.Contains(page, "href=\"http") || strings.Contains(page, "@import") {
		t.Error("the page refers to external assets or not to the API")
	}
}

// fuzzBodies seeds the request fuzzers.
var fuzzBodies = []string{
	`{"model":"stories","messages":[{"role":"user","content":"Once"}],"max_tokens":2}`,
	`{"model":"stories","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"a"}]}],"stop":["x"],"temperature":0.5,"top_p":0.9,"seed":3,"logprobs":true,"top_logprobs":2,"max_tokens":3}`,
	`{"model":"stories","prompt":[1,2,3],"max_tokens":2,"logprobs":2}`,
	`{"model":"stories","prompt":"Once","stream":true,"stream_options":{"include_usage":true},"max_tokens":2}`,
	`{"model":"stories","input":["a","b"],"encoding_format":"base64"}`,
	`{"model":"stories","input":[[1,2],[3]]}`,
	`{"model":1}`, `null`, `{"messages":null}`, "\xff",
}

// FuzzDecode feeds arbitrary bodies to the request decoders: they must
// answer with a request or an error, never panic.
func FuzzDecode(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, e := parseChat(body); e != nil && (e.Status < 400 || e.Status > 499 || e.Message == "") {
			t.Errorf("chat: %+v", e)
		}
		if _, e := parseCompletion(body); e != nil && (e.Status < 400 || e.Message == "") {
			t.Errorf("completion: %+v", e)
		}
		if _, e := parseEmbedding(body); e != nil && (e.Status < 400 || e.Message == "") {
			t.Errorf("embedding: %+v", e)
		}
	})
}

// FuzzServer sends arbitrary bodies through the whole server: every answer
// is a 200 or a 4xx, never a crash or a 5xx.
func FuzzServer(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b), uint8(0))
		f.Add([]byte(b), uint8(1))
		f.Add([]byte(b), uint8(2))
	}
	_, hs := newTestServer(f, "", 2)
	paths := []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}
	f.Fuzz(func(t *testing.T, body []byte, which uint8) {
		status, resp := post(t, hs.URL+paths[int(which)%len(paths)], "", strings.NewReader(string(body)))
		if status != 200 && (status < 400 || status > 499) {
			t.Errorf("%d %s", status, resp)
		}
	})
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote \" back \\ slash", "new\nline\ttab\rret", "\x00\x01\x1f", "<a & b>", "café ☕ \u2028"} {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil || back != s {
			t.Errorf("%q: %s → %q, %v", s, appendJSONString(nil, s), back, err)
		}
	}
}

// TestTextChunk checks that an event written from a chunk template is the
// event json.Marshal gives for the same chunk, for texts that need escaping.
func TestTextChunk(t *testing.T) {
	chunk := func(text string) map[string]any {
		return map[string]any{"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
			"choices": []any{map[string]any{"index": 0, "text": text, "logprobs": nil, "finish_reason": nil}}}
	}
	tc, err := newTextChunk(chunk("\x00"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "plain", "quote \" back \\ slash", "new\nline\ttab\rret", "\x01\x1f", "<a & b>", "café ☕ \u2028"} {
		rec := httptest.NewRecorder()
		e := &sse{w: rec}
		if err := e.text(tc, s); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(chunk(s))
		got, ok := strings.CutPrefix(rec.Body.String(), "data: ")
		got, ok2 := strings.CutSuffix(got, "\n\n")
		var g, w any
		if !ok || !ok2 || json.Unmarshal([]byte(got), &g) != nil || json.Unmarshal(want, &w) != nil || !reflect.DeepEqual(g, w) {
			t.Errorf("%q: event %q, want data: %s", s, rec.Body.String(), want)
		}
	}
	if _, err := newTextChunk(map[string]any{"a": "\x00", "b": "\x00"}); err == nil {
		t.Error("a template with two placeholders was accepted")
	}
}
