package align

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/sft"
)

const prefsDir = "../../shared/data/prefs"

func sharedPrefs(t *testing.T, name string) string {
	p := filepath.Join(prefsDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not present (shared data): %v", p, err)
	}
	return p
}

func TestHHRLHFReadsEveryRow(t *testing.T) {
	exs, bad, err := ReadAll([]string{sharedPrefs(t, "hh-rlhf-helpful-base-test.jsonl.gz")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 0 || len(exs) != 2354 {
		t.Fatalf("%d examples, %d malformed; want 2354 and 0", len(exs), bad)
	}
	ex := exs[0]
	if ex.Format != HH || len(ex.Prompt) != 1 || ex.Prompt[0].Content != "Do you know why turkeys became the official food of thanksgiving?" ||
		!strings.HasPrefix(ex.Chosen, "To be honest, I don’t know") || !strings.HasPrefix(ex.Rejected, "I know that the American Indians") {
		t.Fatalf("row 1: %+v", ex)
	}
	if !strings.HasSuffix(ex.Where, ".gz:1") {
		t.Errorf("where %q", ex.Where)
	}
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("vicuna")
	enc := &Encoder{Tok: tok, Template: tmpl}
	ss, err := enc.EncodeAll(exs)
	if err != nil {
		t.Fatal(err)
	}
	// the file holds 4 pairs with an empty response and 2 identical pairs
	if enc.Stats.Empty != 4 || enc.Stats.Identical != 2 || len(ss) != 2354-6 {
		t.Fatalf("stats %v", enc.Stats)
	}
	t.Log(enc.Stats, enc.Stats.Notes)
}

func TestDPODemosRead(t *testing.T) {
	for _, f := range []string{"dpo_en_demo.json", "dpo_zh_demo.json"} {
		exs, bad, err := ReadAll([]string{sharedPrefs(t, f)}, false)
		if err != nil {
			t.Fatal(err)
		}
		if bad != 0 || len(exs) != 300 || exs[0].Format != ShareGPTPair || exs[0].Chosen == "" || exs[0].Rejected == "" {
			t.Fatalf("%s: %d examples, %d bad, first %+v", f, len(exs), bad, exs[0])
		}
	}
}

func TestLayouts(t *testing.T) {
	cases := []struct {
		row    string
		format Format
		prompt []chat.Message
		c, r   string
		label  bool
	}{
		{`{"chosen": "\n\nHuman: hi\n\nAssistant: hello there", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}`, HH,
			[]chat.Message{{Role: "user", Content: "hi"}}, "hello there", "go away", false},
		{`{"chosen": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d\n\nHuman: e", "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: x"}`, HH,
			[]chat.Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}, {Role: "user", Content: "c"}}, "d\n\nHuman: e", "x", false},
		{`{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 2}`, PromptPair, []chat.Message{{Role: "user", Content: "p"}}, "c", "r", false},
		{`{"prompt": [{"role":"system","content":"s"},{"role":"user","content":"p"}], "chosen": [{"role":"system","content":"s"},{"role":"user","content":"p"},{"role":"assistant","content":"c"}], "rejected": [{"role":"assistant","content":"r"}]}`, PromptPair,
			[]chat.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "p"}}, "c", "r", false},
		{`{"chosen": [{"role":"user","content":"p"},{"role":"assistant","content":"c"}], "rejected": [{"role":"user","content":"p"},{"role":"assistant","content":"r"}]}`, PromptPair,
			[]chat.Message{{Role: "user", Content: "p"}}, "c", "r", false},
		{`{"conversations": [{"from":"human","value":"q"}], "chosen": {"from":"gpt","value":"c"}, "rejected": {"from":"gpt","value":"r"}}`, ShareGPTPair,
			[]chat.Message{{Role: "user", Content: "q"}}, "c", "r", false},
		{`{"question": "q", "response_j": "good", "response_k": "bad"}`, StackExchange, []chat.Message{{Role: "user", Content: "q"}}, "good", "bad", false},
		{`{"messages": [{"role":"user","content":"q"},{"role":"assistant","content":"a"}], "label": true}`, UnpairedRows, []chat.Message{{Role: "user", Content: "q"}}, "a", "", true},
		{`{"prompt": "q", "completion": "a", "label": false}`, UnpairedRows, []chat.Message{{Role: "user", Content: "q"}}, "a", "", false},
	}
	for i, c := range cases {
		ex, err := ParseRow([]byte(c.row))
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if ex.Format != c.format || !sameMessages(ex.Prompt, c.prompt) || ex.Chosen != c.c || ex.Rejected != c.r || ex.Desirable != c.label || ex.Paired == (c.format == UnpairedRows) {
			t.Errorf("case %d: %+v", i, ex)
		}
	}
	ex, _ := ParseRow([]byte(cases[2].row))
	if ex.Margin != 2 {
		t.Errorf("margin %g", ex.Margin)
	}
}

func TestBadRows(t *testing.T) {
	rows := []struct{ row, field, msg string }{
		{`{"prompt": "p", "chosen": "c"}`, "rejected", "missing"},
		{`{"prompt": "p", "rejected": "r"}`, "chosen", "missing"},
		{`{"chosen": "\n\nHuman: a\n\nAssistant: b"}`, "rejected", "missing"},
		{`{"chosen": "no markers", "rejected": "x"}`, "chosen", "not an HH-RLHF transcript"},
		{`{"question": "q", "response_j": 3, "response_k": "b"}`, "response_j", "not a string"},
		{`{"messages": [{"role":"user","content":"q"}], "label": "yes"}`, "label", "not a boolean"},
		{`{"conversations": [{"from":"gpt","value":"q"}], "chosen": "c", "rejected": "r"}`, "conversations[0]", "role assistant"},
		{`{"prompt": "p", "chosen": "c", "rejected": "r", "margin": "big"}`, "margin", "not a number"},
		{`{"foo": 1}`, "", "unknown preference layout"},
	}
	dir := t.TempDir()
	var lines []string
	for _, r := range rows {
		lines = append(lines, r.row)
	}
	path := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	for i, r := range rows {
		_, err := ParseRow([]byte(r.row))
		var re *sft.RowError
		if !errors.As(err, &re) || re.Field != r.field || !strings.Contains(re.Msg, r.msg) {
			t.Errorf("row %d: %v; want field %q, %q", i, err, r.field, r.msg)
		}
	}
	rd, err := Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Next(); err == nil || !strings.Contains(err.Error(), "bad.jsonl:1: field rejected: missing") {
		t.Errorf("first row: %v", err)
	}
	rd.Close()
	rd, _ = Open(path, true)
	defer rd.Close()
	if _, err := rd.Next(); err != io.EOF || rd.Bad() != len(rows) {
		t.Errorf("skip-bad: %v, %d bad of %d", err, rd.Bad(), len(rows))
	}
}

func TestEncodeMasksAndPrompt(t *testing.T) {
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vicuna", "chatml", "llama-2", "alpaca"} {
		tmpl, err := chat.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		enc := &Encoder{Tok: tok, Template: tmpl}
		ex := &Example{Prompt: []chat.Message{{Role: "user", Content: "Once upon a time"}}, Chosen: "there was a cat.", Rejected: "a dog was there.", Paired: true, Where: "x:1"}
		s, err := enc.Encode(ex)
		if err != nil {
			t.Fatal(err)
		}
		// the prompt is what inference renders (add_generation_prompt)
		r, _ := tmpl.Render(ex.Prompt, true)
		want := r.Encode(tok).IDs
		if !equalInts(s.Prompt, want) {
			t.Errorf("%s: prompt %v, inference renders %v", name, s.Prompt, want)
		}
		toks, tg := s.Seq(s.Chosen)
		n := 0
		for i, x := range tg {
			if x >= 0 {
				n++
				if i+1 < len(s.Prompt) {
					t.Errorf("%s: a loss at prompt position %d", name, i)
				}
			}
		}
		if n != len(s.Chosen) || len(toks) != len(s.Prompt)+len(s.Chosen)-1 || s.Chosen[len(s.Chosen)-1] != tok.EOS() && name == "vicuna" {
			t.Errorf("%s: %d learned of %d response tokens", name, n, len(s.Chosen))
		}
	}
}

func TestTruncateAndDrop(t *testing.T) {
	_, tok, _ := checkpoint.Default()
	tmpl, _ := chat.Lookup("vicuna")
	long := strings.Repeat("the cat sat on the mat. ", 20)
	ex := &Example{Prompt: []chat.Message{{Role: "user", Content: long}}, Chosen: long, Rejected: "no.", Paired: true, Where: "x:1"}
	enc := &Encoder{Tok: tok, Template: tmpl, MaxLen: 64, MaxPrompt: 24}
	s, err := enc.Encode(ex)
	if err != nil || s == nil {
		t.Fatal(s, err)
	}
	if len(s.Prompt) != 24 || s.Prompt[0] != tok.BOS() || len(s.Chosen) != 40 || enc.Stats.Truncated != 1 {
		t.Errorf("prompt %d (first %d), chosen %d, stats %v", len(s.Prompt), s.Prompt[0], len(s.Chosen), enc.Stats)
	}
	enc = &Encoder{Tok: tok, Template: tmpl, MaxLen: 64, Overflow: Drop}
	if s, err := enc.Encode(ex); s != nil || err != nil || enc.Stats.Dropped != 1 {
		t.Errorf("drop: %v %v %v", s, err, enc.Stats)
	}
	// a template that cannot render the conversation names the row
	l2, _ := chat.Lookup("llama-2")
	enc = &Encoder{Tok: tok, Template: l2}
	bad := &Example{Prompt: []chat.Message{{Role: "user", Content: "a"}, {Role: "user", Content: "b"}}, Chosen: "c", Rejected: "d", Paired: true, Where: "f.jsonl:7"}
	if _, err := enc.Encode(bad); err == nil || !strings.HasPrefix(err.Error(), "f.jsonl:7: template llama-2") {
		t.Errorf("unrenderable: %v", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzParseRow(f *testing.F) {
	f.Add(`{"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hi\n\nAssistant: b"}`)
	f.Add(`{"prompt": [{"role":"user","content":"p"}], "chosen": "c", "rejected": [{"role":"assistant","content":"r"}]}`)
	f.Add(`{"conversations": [{"from":"human","value":"q"}], "chosen": {"from":"gpt","value":"c"}, "rejected": "r"}`)
	f.Add(`{"messages": [{"role":"user","content":"q"},{"role":"assistant","content":"a"}], "label": true}`)
	f.Fuzz(func(t *testing.T, row string) {
		ex, err := ParseRow([]byte(row))
		if err == nil && (ex.Chosen == "" && ex.Rejected == "" && len(ex.Prompt) == 0) {
			t.Fatalf("accepted an empty example: %q", row)
		}
	})
}
