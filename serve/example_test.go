package serve_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/serve"
)

// Serve a model over the OpenAI-compatible API: a scheduler batches the
// requests, the server answers /v1/completions, /v1/chat/completions and
// the rest (http.ListenAndServe(addr, s) in a program; a test server here).
func ExampleNew() {
	m, tok, err := checkpoint.Default()
	if err != nil {
		panic(err)
	}
	tmpl, _ := chat.Lookup("raw")
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{})
	defer sched.Close()
	s, err := serve.New(serve.Config{}, &serve.Model{Name: "stories", Model: m, Tok: tok, Template: tmpl, Sched: sched})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"model": "stories", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		panic(err)
	}
	fmt.Println(resp.StatusCode, out.Choices[0].FinishReason, out.Usage.CompletionTokens)
	// Output: 200 length 8
}
