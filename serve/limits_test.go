package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/tensor"
)

// TestMaxTokensCapped: a token budget beyond the context is cut to it and
// the answer ends with finish_reason "length" (issue 21, item 15), where it
// was a 400; a prompt that alone fills the context is still refused.
func TestMaxTokensCapped(t *testing.T) {
	_, hs := newTestServer(t, "", 2)
	msg := `"messages":[{"role":"user","content":"Once"}]`
	for _, max := range []string{`,"max_tokens":1000000000`, `,"max_completion_tokens":500`, ``} {
		status, body := post(t, hs.URL+"/v1/chat/completions", "", strings.NewReader(`{"model":"stories",`+msg+max+`,"temperature":0}`))
		var r struct {
			Choices []struct {
				Finish string `json:"finish_reason"`
			} `json:"choices"`
			Usage usage `json:"usage"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &r) != nil || len(r.Choices) != 1 {
			t.Fatalf("%s: %d %s", max, status, body)
		}
		if r.Usage.TotalTokens > 128 || (r.Choices[0].Finish == "length") != (r.Usage.TotalTokens == 128) {
			t.Errorf("%s: finish %q with %+v in a context of 128", max, r.Choices[0].Finish, r.Usage)
		}
	}
	status, body := post(t, hs.URL+"/v1/completions", "", strings.NewReader(`{"model":"stories","prompt":"`+strings.Repeat("cat dog ", 200)+`","max_tokens":5}`))
	if status != 400 || !strings.Contains(body, "holds 128") {
		t.Errorf("prompt beyond the context: %d %s", status, body)
	}
}

// TestToolsAccepted: the values that mean "no tools" and "plain text" pass.
func TestToolsAccepted(t *testing.T) {
	_, hs := newTestServer(t, "", 1)
	body := `{"model":"stories","messages":[{"role":"user","content":"Once"}],"max_tokens":2,"tools":[],"tool_choice":"none","response_format":{"type":"text"}}`
	if status, b := post(t, hs.URL+"/v1/chat/completions", "", strings.NewReader(body)); status != 200 {
		t.Errorf("%d %s", status, b)
	}
}

// TestBudgetMessage: a prompt longer than what the model's KV cache budget
// holds is refused with a message that names the budget.
func TestBudgetMessage(t *testing.T) {
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := chat.Lookup("raw")
	per := m.Config.KVCacheBytes(1, tensor.F16)
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{KVBudget: 40 * per})
	t.Cleanup(sched.Close)
	s, err := New(Config{}, &Model{Name: "small", Model: m, Tok: tok, Template: raw, Sched: sched})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	status, body := post(t, hs.URL+"/v1/completions", "", strings.NewReader(`{"model":"small","prompt":"`+strings.Repeat("cat dog ", 30)+`"}`))
	if status != 400 || !strings.Contains(body, "KV cache budget") {
		t.Errorf("%d %s", status, body)
	}
	status, body = post(t, hs.URL+"/v1/completions", "", strings.NewReader(`{"model":"small","prompt":"Once","temperature":0}`))
	if status != 200 || !strings.Contains(body, `"total_tokens":40`) && !strings.Contains(body, `"finish_reason":"stop"`) {
		t.Errorf("%d %s", status, body)
	}
}

// TestDefaultMaxTokens: a request without max_tokens writes at most
// Config.DefaultMaxTokens.
func TestDefaultMaxTokens(t *testing.T) {
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := chat.Lookup("raw")
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{})
	t.Cleanup(sched.Close)
	s, err := New(Config{DefaultMaxTokens: 5}, &Model{Name: "s", Model: m, Tok: tok, Template: raw, Sched: sched})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	status, body := post(t, hs.URL+"/v1/completions", "", strings.NewReader(`{"model":"s","prompt":"Once upon a time","temperature":0}`))
	if status != 200 || !strings.Contains(body, `"completion_tokens":5`) || !strings.Contains(body, `"finish_reason":"length"`) {
		t.Errorf("%d %s", status, body)
	}
}

// TestKVMetrics: /metrics reports each model's KV cache reservation and
// budget, and a finished request leaves nothing reserved.
func TestKVMetrics(t *testing.T) {
	_, hs := newTestServer(t, "", 2)
	post(t, hs.URL+"/v1/completions", "", strings.NewReader(`{"model":"stories","prompt":"Once","max_tokens":3}`))
	_, m := get(t, hs.URL+"/metrics")
	for _, want := range []string{`herd_kv_cache_reserved_bytes{model="stories"} 0`, `herd_kv_cache_budget_bytes{model="stories"} 4294967296`, `herd_connections_refused_total 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}
