package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/serve"
)

// Serve a model over the OpenAI-compatible API and ask it for a chat
// completion.
func Example() {
	m, tok, err := checkpoint.Default()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	tp, err := chat.ForModel("", "") // the model file's own template, else raw
	if err != nil {
		panic(err)
	}
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: 4})
	defer sched.Close()
	srv, err := serve.New(serve.Config{}, &serve.Model{Name: "stories", Model: m, Tok: tok, Template: tp, Sched: sched})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	body := `{"model":"stories","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":12,"temperature":0}`
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	var r struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, r.Choices[0].FinishReason, r.Usage.CompletionTokens)
	stop()
	<-done
	// Output: 200 length 12
}
