package sft

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
)

func readAll(t *testing.T, path string, skipBad bool) ([]*Example, *Reader, error) {
	t.Helper()
	r, err := Open(path, skipBad)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []*Example
	for {
		ex, err := r.Next()
		if err == io.EOF {
			return out, r, nil
		}
		if err != nil {
			return out, r, err
		}
		out = append(out, ex)
	}
}

func TestReaders(t *testing.T) {
	for _, c := range []struct {
		file   string
		format Format
		n      int
		turns  []int // messages of the first examples
	}{
		{"alpaca_en.json", Alpaca, 8, []int{2}},
		{"alpaca_zh.json", Alpaca, 4, []int{2}},
		{"sharegpt.json", ShareGPT, 6, []int{4, 2}},
		{"dolly.jsonl", Dolly, 2, []int{2, 2}},
		{"openai.jsonl", OpenAI, 2, []int{3, 4}},
	} {
		exs, _, err := readAll(t, filepath.Join("testdata", c.file), false)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if len(exs) != c.n {
			t.Errorf("%s: %d examples, want %d", c.file, len(exs), c.n)
		}
		for i, n := range c.turns {
			if exs[i].Format != c.format || len(exs[i].Messages) != n {
				t.Errorf("%s example %d: %s with %d messages, want %s with %d", c.file, i, exs[i].Format, len(exs[i].Messages), c.format, n)
			}
		}
	}
	// line numbers: the second row of the JSON Lines file starts on line 3
	// (after a blank line); JSON array rows on the line of their '{'
	exs, _, _ := readAll(t, "testdata/openai.jsonl", false)
	if exs[1].Where != "testdata/openai.jsonl:3" {
		t.Errorf("second row at %s", exs[1].Where)
	}
	exs, _, _ = readAll(t, "testdata/sharegpt.json", false)
	if exs[1].Where != "testdata/sharegpt.json:23" {
		t.Errorf("second conversation at %s", exs[1].Where)
	}
	// an input joins the instruction
	exs, _, _ = readAll(t, "testdata/alpaca_en.json", false)
	last := exs[len(exs)-1].Messages[0].Content
	if !strings.Contains(last, "\n\n") {
		t.Errorf("input not joined: %q", last)
	}
	// GPTeacher's rows (instruction, input, response) keep their input
	gp := filepath.Join(t.TempDir(), "gpteacher.json")
	os.WriteFile(gp, []byte(`[{"instruction": "Continue the story.", "input": "Tom had a ball.", "response": "He lost it."}]`), 0o644)
	exs, _, err := readAll(t, gp, false)
	if err != nil || len(exs) != 1 || exs[0].Messages[0].Content != "Continue the story.\n\nTom had a ball." || exs[0].Messages[1].Content != "He lost it." {
		t.Errorf("GPTeacher row: %v, %+v", err, exs)
	}
}

func TestMalformedRows(t *testing.T) {
	exs, _, err := readAll(t, "testdata/bad.jsonl", false)
	var re *RowError
	if !errors.As(err, &re) || re.Line != 2 || re.Field != "output" || len(exs) != 1 {
		t.Fatalf("err = %v after %d examples, want a RowError at line 2, field output", err, len(exs))
	}
	if !strings.Contains(err.Error(), "testdata/bad.jsonl:2: field output") {
		t.Errorf("message %q", err)
	}
	exs, r, err := readAll(t, "testdata/bad.jsonl", true)
	if err != nil || len(exs) != 2 || r.Bad() != 3 || r.Rows() != 5 {
		t.Fatalf("skipping: %d examples, %d bad of %d rows, %v; want 2, 3 of 5", len(exs), r.Bad(), r.Rows(), err)
	}
	// roles out of order, and a field message
	for _, c := range []struct{ row, field string }{
		{`{"messages": [{"role": "user", "content": "Hi"}, {"role": "robot", "content": "x"}]}`, "messages[1].role"},
		{`{"messages": [{"role": "user", "content": "Hi"}]}`, "messages"},
		{`{"conversations": [{"from": "gpt", "value": "Hi"}]}`, "conversations[0]"},
		{`{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": 1}]}`, "conversations[1].value"},
		{`{"instruction": "x", "output": "y", "history": [["a"]]}`, "history[0]"},
		{`{"text": "x"}`, ""},
	} {
		_, err := parseRow([]byte(c.row))
		if !errors.As(err, &re) || re.Field != c.field {
			t.Errorf("%s: err %v, want field %q", c.row, err, c.field)
		}
	}
	// a broken array stops even with skipBad
	p := filepath.Join(t.TempDir(), "broken.json")
	os.WriteFile(p, []byte("[\n{\"instruction\": \"a\", \"output\": \"b\"},\n{\"instruction\": \n"), 0o644)
	if _, _, err := readAll(t, p, true); err == nil || !strings.Contains(err.Error(), "broken.json:3") {
		t.Errorf("broken array: %v", err)
	}
}

// TestMaskedSpansDecode checks, for every example of every test file and
// several templates, that the positions with a loss are exactly the
// assistant turns: their targets decode to each assistant's text followed
// by the end-of-turn marker, in order, and nothing else is learned.
func TestMaskedSpansDecode(t *testing.T) {
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"alpaca_en.json", "alpaca_zh.json", "sharegpt.json", "dolly.jsonl", "openai.jsonl"}
	eot := map[string]string{"vicuna": "", "alpaca": "", "chatml": "<|im_end|>", "llama-2": " "}
	for _, tn := range []string{"vicuna", "alpaca", "chatml", "llama-2"} {
		tmpl, err := chat.Lookup(tn)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			exs, _, err := readAll(t, filepath.Join("testdata", f), false)
			if err != nil {
				t.Fatal(err)
			}
			e := &Encoder{Tok: tok, Template: tmpl, Ctx: 1 << 20}
			for _, ex := range exs {
				ss, err := e.Encode(ex)
				if err != nil || len(ss) != 1 {
					t.Fatalf("%s %s: %d samples, %v", tn, ex.Where, len(ss), err)
				}
				s := ss[0]
				// the learned runs, in order
				var runs [][]int
				for i, tg := range s.Targets {
					if tg < 0 {
						continue
					}
					if i == 0 || s.Targets[i-1] < 0 {
						runs = append(runs, nil)
					}
					runs = append(runs[:len(runs)-1], append(runs[len(runs)-1], tg))
				}
				var asst []string
				for _, m := range ex.Messages {
					if m.Role == chat.Assistant {
						asst = append(asst, m.Content)
					}
				}
				if len(runs) != len(asst) {
					t.Fatalf("%s %s: %d learned runs for %d assistant turns", tn, ex.Where, len(runs), len(asst))
				}
				for k, run := range runs {
					// the run is the message and its end-of-turn marker,
					// exactly (SentencePiece drops the leading space of a
					// decoded sequence)
					got := tok.Decode(run)
					want := strings.TrimPrefix(asst[k], " ") + eot[tn]
					if got != want {
						t.Errorf("%s %s turn %d: learned %q, want %q and the end of turn", tn, ex.Where, k, got, asst[k])
					}
					if run[len(run)-1] != tok.EOS() && tn != "chatml" {
						t.Errorf("%s %s turn %d: the learned run does not end with EOS", tn, ex.Where, k)
					}
				}
			}
		}
	}
}

func TestOverflow(t *testing.T) {
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("vicuna")
	exs, _, _ := readAll(t, "testdata/sharegpt.json", false)
	full := &Encoder{Tok: tok, Template: tmpl, Ctx: 1 << 20}
	long, _ := full.Encode(exs[0])
	n := len(long[0].Tokens)
	drop := &Encoder{Tok: tok, Template: tmpl, Ctx: n - 1}
	if ss, err := drop.Encode(exs[0]); err != nil || len(ss) != 0 || drop.Stats.Dropped != 1 {
		t.Errorf("drop: %d samples, stats %v, %v", len(ss), drop.Stats, err)
	}
	split := &Encoder{Tok: tok, Template: tmpl, Ctx: 16, Overflow: Split}
	ss, err := split.Encode(exs[0])
	if err != nil || split.Stats.Split != 1 {
		t.Fatalf("split: %v, stats %v", err, split.Stats)
	}
	// the windows' learned targets together are the whole example's
	var got, want []int
	for _, s := range ss {
		if len(s.Tokens) > 16 {
			t.Errorf("window of %d tokens", len(s.Tokens))
		}
		for _, tg := range s.Targets {
			if tg >= 0 {
				got = append(got, tg)
			}
		}
	}
	for _, tg := range long[0].Targets {
		if tg >= 0 {
			want = append(want, tg)
		}
	}
	if len(got) != len(want) || split.Stats.Samples+split.Stats.Windows != (n+15)/16 {
		t.Errorf("split learned %d of %d targets; %d windows kept + %d dropped for %d tokens", len(got), len(want), split.Stats.Samples, split.Stats.Windows, n)
	}
	if !strings.Contains(split.Stats.String(), "1 split") {
		t.Errorf("stats %q", split.Stats)
	}
}

func TestMix(t *testing.T) {
	src, err := ParseSources("testdata/dolly.jsonl:5,testdata/openai.jsonl:1,testdata/sharegpt.json")
	if err != nil || len(src) != 3 || src[0].Count != 5 || src[2].Count != 0 {
		t.Fatalf("ParseSources: %v, %v", src, err)
	}
	if _, err := ParseSources("a.json:0"); err == nil {
		t.Error("accepted a count of 0")
	}
	_, tok, _ := checkpoint.Default()
	tmpl, _ := chat.Lookup("vicuna")
	e := &Encoder{Tok: tok, Template: tmpl, Ctx: 1 << 20}
	ss, _, err := e.Mix(src, false, 1)
	if err != nil || len(ss) != 5+1+6 {
		t.Fatalf("%d samples, %v; want 12", len(ss), err)
	}
	n := 0
	for _, s := range ss[:5] {
		if strings.HasPrefix(s.Where, "testdata/dolly.jsonl") {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d of the first 5 samples from dolly", n)
	}
}
