package synth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-llm/herd/oai"
)

// TestEndpointFailures: an endpoint that answers with an HTML page, or
// that does not know the model, stops the run with a clear error after
// the units before it are written; an endpoint that answers empty
// completions has them counted, never lost silently.
func TestEndpointFailures(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "p.txt")
	os.WriteFile(in, []byte("one\ntwo\nthree\nfour\n"), 0o644)
	for _, c := range []struct {
		name   string
		status int
		body   string
		is     error
		want   string
	}{
		{"html", 200, "<html><body>proxy login</body></html>", oai.ErrNotJSON, "answer is not JSON"},
		{"unknown model", 404, `{"error":{"message":"the model \"gpt\" does not exist (served: stories)","code":"model_not_found"}}`, oai.ErrModelNotFound, "served: stories"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int32
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n.Add(1) <= 2 { // the first two prompts are answered
					io.WriteString(w, `{"choices":[{"message":{"content":"fine"},"finish_reason":"stop"}]}`)
					return
				}
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			}))
			defer hs.Close()
			cl, _ := oai.New(oai.Config{Endpoint: hs.URL, Model: "gpt", Concurrency: 1, Backoff: time.Millisecond})
			out := filepath.Join(dir, c.name+".jsonl")
			st, err := (&Distill{Options: Options{Client: cl, Out: out}, Input: in}).Run(context.Background())
			if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "unit p2.s0") {
				t.Fatalf("err %v", err)
			}
			if st.Kept != 2 || len(readItems[Conversation](t, out)) != 2 {
				t.Errorf("%d kept before the failure", st.Kept)
			}
		})
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"choices":[{"message":{"content":""},"finish_reason":"length"}],"usage":{"prompt_tokens":4,"completion_tokens":0}}`)
	}))
	defer hs.Close()
	cl, _ := oai.New(oai.Config{Endpoint: hs.URL, Model: "m"})
	st, err := (&Distill{Options: Options{Client: cl, Out: filepath.Join(dir, "empty.jsonl")}, Input: in}).Run(context.Background())
	if err != nil || st.Kept != 0 || st.Drops[DropEmpty] != 4 || st.Usage.Prompt != 16 {
		t.Errorf("empty completions: %v %+v", err, st)
	}
}
