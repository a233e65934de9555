package judge_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/judge"
	"github.com/herd-llm/herd/oai"
	"github.com/herd-llm/herd/serve"
)

// TestAgainstHerdServe answers questions with a local stories260K, a
// baseline through herd serve, and judges both with herd serve's
// stories260K as the judge: a model this small rarely writes a readable
// score, so what is checked is that every turn is judged or counted
// malformed, the logs hold the raw outputs, and the counts add up.
func TestAgainstHerdServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs stories260K behind herd serve")
	}
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := chat.Lookup("raw")
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: 4, Context: 2048})
	t.Cleanup(sched.Close)
	srv, err := serve.New(serve.Config{}, &serve.Model{Name: "stories", Model: m, Tok: tok, Template: raw, Sched: sched})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	c, err := oai.New(oai.Config{Endpoint: "http://" + ln.Addr().String(), Model: "stories", Concurrency: 4, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	q := filepath.Join(dir, "q.jsonl")
	os.WriteFile(q, []byte(`{"question_id": 1, "category": "writing", "turns": ["Lily had a red ball.", "What did Lily do next?"]}
{"question_id": 2, "category": "math", "turns": ["Tim had two apples and got one more."], "reference": ["Three apples."]}
{"question_id": 3, "category": "roleplay", "turns": ["`+strings.Repeat("The dog ran and ran. ", 40)+`"]}
`), 0o644)
	// the local model, with a context too small for question 3
	local := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: 2, Context: 200})
	t.Cleanup(local.Close)
	mine, base := filepath.Join(dir, "mine.jsonl"), filepath.Join(dir, "base.jsonl")
	st, err := (&judge.Answers{Options: judge.Options{Out: mine, Concurrency: 2}, Questions: q, Model: "stories-local",
		Answerer: &judge.Local{Sched: local, Tok: tok, Template: raw, MaxTokens: 48}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Kept != 2 || st.Drops["too_long"] != 1 {
		t.Errorf("local answers: %s", st.Report())
	}
	if _, err := (&judge.Answers{Options: judge.Options{Out: base}, Questions: q, Model: "stories-served",
		Answerer: &judge.Endpoint{Client: c, MaxTokens: 48, Temperature: 1}}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}

	single, err := (&judge.Single{Options: judge.Options{Client: c, Out: filepath.Join(dir, "single.jsonl"), MaxTokens: 64}, Questions: q, Answers: mine}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if single.Judged+single.Malformed != 3 || single.NoAnswer != 1 || single.Model != "stories-local" {
		t.Errorf("single: %+v", single)
	}
	t.Log(single)
	pairs, err := (&judge.Pairwise{Options: judge.Options{Client: c, Out: filepath.Join(dir, "pairs.jsonl"), MaxTokens: 64}, Questions: q, Answers: mine, Baseline: base}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pairs.Wins+pairs.Losses+pairs.Ties+pairs.Malformed != 3 || pairs.NoAnswer != 1 || pairs.Len == 0 || pairs.BaselineLen == 0 {
		t.Errorf("pairwise: %+v", pairs)
	}
	t.Log(pairs)
	log, _ := os.ReadFile(filepath.Join(dir, "pairs.jsonl"))
	if strings.Count(string(log), `"g1_judgment":`) != 3 || strings.Count(string(log), `"g2_judgment":`) != 3 {
		t.Errorf("pairwise log: %s", log)
	}
}
