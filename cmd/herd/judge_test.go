package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJudgeCLI answers a question file with the embedded stories260K,
// then grades and compares the answers with a scripted judge that gives
// every answer 6 and always prefers the first answer shown.
func TestJudgeCLI(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			fmt.Fprint(w, `{"data":[{"id":"judge"}]}`)
			return
		}
		var req struct{ Messages []struct{ Content string } }
		json.NewDecoder(r.Body).Decode(&req)
		out := "Rating: [[6]]"
		if strings.Contains(req.Messages[len(req.Messages)-1].Content, "Assistant B") {
			out = "The first is better. [[A]]"
		}
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"content": out}, "finish_reason": "stop"}}})
		w.Write(b)
	}))
	defer hs.Close()
	dir := t.TempDir()
	q := filepath.Join(dir, "q.jsonl")
	os.WriteFile(q, []byte(`{"question_id": 1, "category": "writing", "turns": ["Lily had a ball.", "What next?"]}
{"question_id": 2, "category": "math", "turns": ["Tim had two apples."], "reference": ["Two."]}
`), 0o644)
	mine, base := filepath.Join(dir, "mine.jsonl"), filepath.Join(dir, "base.jsonl")
	if _, _, err := herd(t, "", "judge", "answer", "--questions", q, "-o", mine, "--max-tokens", "30"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := herd(t, "", "judge", "answer", "--questions", q, "-o", base, "--max-tokens", "30", "--temperature", "1", "--model-id", "hot"); err != nil {
		t.Fatal(err)
	}
	judgeArgs := []string{"--questions", q, "--answers", mine, "--judge-endpoint", hs.URL, "--judge-model", "judge"}
	out, _, err := herd(t, "", append([]string{"judge", "single", "-o", filepath.Join(dir, "s.jsonl")}, judgeArgs...)...)
	if err != nil || !strings.Contains(out, "model stories260K: mean score 6.00 over 3 judgments (malformed 0") {
		t.Fatalf("single: %v\n%s", err, out)
	}
	out, _, err = herd(t, "", append([]string{"judge", "pairwise", "--baseline", base, "-o", filepath.Join(dir, "p.jsonl")}, judgeArgs...)...)
	if err != nil || !strings.Contains(out, "stories260K against hot: win rate 50.0% (0 wins, 0 losses, 3 ties of which 3 from the two orders disagreeing") {
		t.Fatalf("pairwise: %v\n%s", err, out)
	}
	t.Log(out)
}
