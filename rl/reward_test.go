package rl

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/sft"
)

// Every rule on completions that must and must not earn it.
func TestRules(t *testing.T) {
	for _, c := range []struct {
		rule string
		it   Item
		want float64
	}{
		{"contains:dog", Item{Completion: "The Dog ran."}, 1},
		{"contains:dog", Item{Completion: "The dogs ran."}, 0},
		{"avoids:dog", Item{Completion: "The dogs ran."}, 1},
		{"avoids:dog", Item{Completion: "a dog"}, 0},
		{"regex:^[A-Z][a-z]+\\.$", Item{Completion: "Hello."}, 1},
		{"regex:^[A-Z][a-z]+\\.$", Item{Completion: "hello."}, 0},
		{"length:10", Item{Len: 10}, 1},
		{"length:10", Item{Len: 15}, 0.5},
		{"length:10", Item{Len: 40}, -1},
		{"eos:8", Item{Len: 8, EOS: true}, 1},
		{"eos:8", Item{Len: 9, EOS: true}, 0},
		{"eos:8", Item{Len: 3}, 0},
		{"json", Item{Completion: ` {"a": [1, 2]} `}, 1},
		{"json", Item{Completion: `{"a": }`}, 0},
		{"gsm8k", Item{Completion: "so 3+4 = 7\n#### 7", Answer: "Natalia sold 4+3 = <<4+3=7>>7\n#### 7"}, 1},
		{"gsm8k", Item{Completion: "#### 1,200.0", Answer: "1200"}, 1},
		{"gsm8k", Item{Completion: "#### 72 then #### 8", Answer: "#### 72"}, 0},
		{"gsm8k", Item{Completion: "the answer is 72", Answer: "#### 72"}, 0},
	} {
		r, err := ParseRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := Rules{r}.Score(context.Background(), []Item{c.it})
		if got[0] != c.want {
			t.Errorf("%s on %+v: %g, want %g", c.rule, c.it, got[0], c.want)
		}
	}
	for _, bad := range []string{"contains:", "length:x", "eos:0", "regex:(", "wordcount:3"} {
		if _, err := ParseRule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	a, _ := ParseRule("contains:cat")
	b, _ := ParseRule("eos:5")
	if s, _ := (Rules{a, b}).Score(context.Background(), []Item{{Completion: "a cat", EOS: true, Len: 4}}); s[0] != 2 {
		t.Errorf("rules sum to %g", s[0])
	}
}

// The HTTP scorer: numbers and objects read; timeouts, HTTP errors and
// garbage are errors naming the rollout, or NaN (a counted skip).
func TestHTTPScorer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1<<12)
		n, _ := r.Body.Read(b)
		s := string(b[:n])
		switch {
		case strings.Contains(s, "slow"):
			time.Sleep(200 * time.Millisecond)
			fmt.Fprint(w, "1")
		case strings.Contains(s, "obj"):
			fmt.Fprint(w, `{"reward": 0.25}`)
		case strings.Contains(s, "score"):
			fmt.Fprint(w, `{"score": -2}`)
		case strings.Contains(s, "nan"):
			fmt.Fprint(w, `"NaN"`)
		case strings.Contains(s, "500"):
			http.Error(w, "boom", 500)
		default:
			fmt.Fprint(w, "3.5")
		}
	}))
	defer srv.Close()
	h := &HTTP{URL: srv.URL, Timeout: 50 * time.Millisecond}
	got, err := h.Score(context.Background(), []Item{{Completion: "plain"}, {Completion: "obj"}, {Completion: "score"}})
	if err != nil || got[0] != 3.5 || got[1] != 0.25 || got[2] != -2 {
		t.Errorf("scores %v, %v", got, err)
	}
	for _, bad := range []string{"slow", "nan", "500"} {
		if _, err := h.Score(context.Background(), []Item{{Completion: "ok"}, {Completion: bad}}); err == nil || !strings.Contains(err.Error(), "rollout 1") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	h.Skip = true
	got, err = h.Score(context.Background(), []Item{{Completion: "slow"}, {Completion: "ok"}})
	if err != nil || !math.IsNaN(got[0]) || got[1] != 3.5 {
		t.Errorf("skip: %v %v", got, err)
	}
}

func FuzzParseScore(f *testing.F) {
	for _, s := range []string{"1", `{"reward": 2}`, `{"score": "x"}`, "nan", "[1]", "1e999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseScore(b)
		if err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Errorf("%q: %g accepted", b, v)
		}
	})
}

// Prompt files: plain lines, JSONL rows of every layout, errors with
// file:line, and prompts too long for the context counted.
func TestReadPrompts(t *testing.T) {
	tok := tinyTok(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	ps, st, err := ReadPrompts(write("a.txt", "Once upon a time\n\nTom ran.\n"), tok, nil, 512, 8)
	if err != nil || len(ps) != 2 || st.Read != 2 || ps[0].Tokens[0] != tok.BOS() || ps[1].Where != filepath.Join(dir, "a.txt")+":3" {
		t.Fatalf("plain: %+v %+v %v", ps, st, err)
	}
	rows := `{"prompt": "Hi", "answer": 42}
{"messages": [{"role": "user", "content": "Hello"}]}
{"conversations": [{"from": "human", "value": "Hey"}]}
{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}], "answer": "#### 3"}
`
	tmpl, _ := chat.Lookup("vicuna")
	ps, _, err = ReadPrompts(write("b.jsonl", rows), tok, tmpl, 512, 8)
	if err != nil || len(ps) != 4 || ps[0].Answer != "42" || ps[3].Answer != "#### 3" {
		t.Fatalf("jsonl: %+v %v", ps, err)
	}
	if !strings.HasSuffix(ps[1].Text, "ASSISTANT:") || !strings.Contains(ps[3].Text, "Be brief.") {
		t.Errorf("rendered: %q / %q", ps[1].Text, ps[3].Text)
	}
	// herd rm train's pair layouts: their prompts (StackLLaMA's question)
	pairs := `{"question": "Why is the sky blue?", "response_j": "Rayleigh.", "response_k": "No."}
{"chosen": "\n\nHuman: Where did Lily go?\n\nAssistant: To the park.", "rejected": "\n\nHuman: Where did Lily go?\n\nAssistant: Park park."}
`
	ps, _, err = ReadPrompts(write("p.jsonl", pairs), tok, tmpl, 512, 8)
	if err != nil || len(ps) != 2 || !strings.Contains(ps[0].Text, "USER: Why is the sky blue?") || !strings.Contains(ps[1].Text, "Where did Lily go?") ||
		strings.Contains(ps[1].Text, "park") || !strings.HasSuffix(ps[1].Text, "ASSISTANT:") {
		t.Fatalf("preference pairs as prompts: %+v %v", ps, err)
	}
	for _, c := range []struct{ rows, want string }{
		{"{\"prompt\": \"a\"}\nnot json\n", "b.jsonl:2"},
		{`{"text": "a"}`, "no prompt"},
		{`{"prompt": ""}`, "empty"},
		{`{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}`, "end with a user turn"},
		{`{"prompt": "a", "answer": [1]}`, "answer"},
	} {
		if _, _, err := ReadPrompts(write("b.jsonl", c.rows), tok, tmpl, 512, 8); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.rows, err, c.want)
		}
	}
	_, st, err = ReadPrompts(write("c.txt", "short\n"+strings.Repeat("long ", 100)+"\n"), tok, nil, 64, 8)
	if err != nil || st.TooLong != 1 || st.Kept != 1 {
		t.Errorf("too long: %+v %v", st, err)
	}
	if _, _, err := ReadPrompts(write("d.txt", strings.Repeat("long ", 100)), tok, nil, 64, 8); err == nil || !strings.Contains(err.Error(), "longer than the context") {
		t.Errorf("all too long: %v", err)
	}
	if _, _, err := ReadPrompts(write("e.txt", "\n \n"), tok, nil, 64, 8); err == nil || !strings.Contains(err.Error(), "no prompts") {
		t.Errorf("empty: %v", err)
	}
}

func FuzzPromptRow(f *testing.F) {
	for _, s := range []string{`{"prompt": "a"}`, `{"messages": [{"role": "user", "content": "x"}]}`, `{"conversations": [{"from": "human", "value": "x"}]}`, `{"prompt": 1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _, err := promptRow(b)
		if err == nil && (len(msgs) == 0 || msgs[len(msgs)-1].Role != chat.User) {
			t.Errorf("%q: %v accepted", b, msgs)
		}
	})
}

// LoRA's reference is the policy's own base with the adapters off: one
// copy of the base (no Ref, no copies in the memory), also on Q4_0.
func TestLoRAOneBaseCopy(t *testing.T) {
	m := tinyModel(t, 3)
	r, _ := ParseRule("eos:4")
	j := Job{Config: Config{Algo: PPO, Prompts: 2, Group: 1, ClipEps: 0.2, Sampling: Sampling{MaxNew: 4}}, Reward: Rules{r},
		Tune: sft.Options{Method: sft.LoRA}}
	j.Tune.LoRA.Rank, j.Tune.LoRA.Alpha, j.Tune.LoRA.Targets = 2, 4, []string{"q", "v"}
	tr, ts, err := Setup(m, j, tinyPrompts(3, 1), nil, tinyTok(t), []int{2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Policy.Ref != nil || tr.Policy.Model != m || ts.Memory.Copies != 0 {
		t.Errorf("lora holds a second model: ref %v, copies %d", tr.Policy.Ref != nil, ts.Memory.Copies)
	}
}
