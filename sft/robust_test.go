package sft

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func writeData(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	rowA = `{"instruction": "Say hi.", "output": "Hi."}`
	rowB = `{"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}`
)

// TestBOM checks that a UTF-8 byte-order mark before line 1 is accepted in
// JSON Lines and JSON array files (it was a parse error on line 1).
func TestBOM(t *testing.T) {
	for name, content := range map[string]string{
		"bom.jsonl": "\ufeff" + rowA + "\n" + rowB + "\n",
		"bom.json":  "\ufeff[" + rowA + ",\n" + rowB + "]\n",
	} {
		exs, _, err := readAll(t, writeData(t, name, content), false)
		if err != nil || len(exs) != 2 || !strings.HasSuffix(exs[0].Where, ":1") {
			t.Errorf("%s: %d examples, err %v; want 2 from line 1", name, len(exs), err)
		}
	}
}

// TestArrayStructure checks that a JSON array file is read to its closing
// bracket and no further: trailing data (silently ignored before) and a
// broken array are errors naming the line; rows keep their line numbers.
func TestArrayStructure(t *testing.T) {
	exs, _, err := readAll(t, writeData(t, "ok.json", "[\n"+rowA+",\n\n"+rowB+"\n]\n"), false)
	if err != nil || len(exs) != 2 || !strings.HasSuffix(exs[1].Where, ":4") {
		t.Fatalf("good array: %v, %d examples (%v)", err, len(exs), exs)
	}
	for _, c := range []struct{ content, want string }{
		{"[" + rowA + "]\ngarbage", "ok.json:2: data after the end of the JSON array"},
		{"[" + rowA + "] [" + rowB + "]", "data after the end"},
		{"[" + rowA + ",\n" + rowB, "not closed"},
		{"[" + rowA + " " + rowB + "]", "want ',' or ']'"},
		{"[" + rowA + ",]", "a ',' before"},
		{"[" + `{"instruction": "x", "output": "unterminated]`, "not closed"},
	} {
		_, _, err := readAll(t, writeData(t, "ok.json", c.content), true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error containing %q", c.content, err, c.want)
		}
	}
}

// TestInvalidUTF8 checks that a row holding invalid UTF-8 is refused with
// its line and byte (encoding/json replaced it with U+FFFD silently), and
// counted as bad with skipBad.
func TestInvalidUTF8(t *testing.T) {
	content := rowA + "\n" + `{"instruction": "caf` + "\xe9" + `", "output": "x"}` + "\n" + rowB + "\n"
	p := writeData(t, "latin1.jsonl", content)
	_, _, err := readAll(t, p, false)
	var re *RowError
	if !errors.As(err, &re) || re.Line != 2 || !strings.Contains(err.Error(), "invalid UTF-8 at byte 20") {
		t.Errorf("got %v, want a row error on line 2 naming invalid UTF-8 at byte 20", err)
	}
	exs, r, err := readAll(t, p, true)
	if err != nil || len(exs) != 2 || r.Bad() != 1 {
		t.Errorf("skipping: %d examples, %d bad, err %v; want 2 and 1", len(exs), r.Bad(), err)
	}
	// a lone surrogate escape decodes to U+FFFD: refused too; a U+FFFD
	// the file itself holds is kept
	lone := `{"instruction": "x\ud800y", "output": "z"}`
	if _, _, err := readAll(t, writeData(t, "lone.jsonl", lone+"\n"), false); err == nil || !strings.Contains(err.Error(), "lone UTF-16 surrogate") {
		t.Errorf("a lone surrogate escape: %v", err)
	}
	for _, ok := range []string{`{"instruction": "x\ufffdy", "output": "z"}`, `{"instruction": "x` + "\ufffd" + `y", "output": "z"}`,
		`{"instruction": "\ud83d\ude00", "output": "z"}`} {
		if exs, _, err := readAll(t, writeData(t, "ok.jsonl", ok+"\n"), false); err != nil || len(exs) != 1 {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

// TestPreferenceRowsRefused checks that KTO rows (messages + a boolean
// label) are not read as conversations, whose undesirable answers would be
// trained as good, and that the message points to the preference trainer.
func TestPreferenceRowsRefused(t *testing.T) {
	for _, row := range []string{
		`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}], "label": false}`,
		`{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "label": true}`,
	} {
		_, _, err := readAll(t, writeData(t, "kto.jsonl", row+"\n"), false)
		if err == nil || !strings.Contains(err.Error(), "field label") || !strings.Contains(err.Error(), "herd dpo --loss kto") {
			t.Errorf("%s: got %v, want a refusal pointing to herd dpo --loss kto", row, err)
		}
	}
	pair := `{"prompt": "hi", "chosen": "hello", "rejected": "go away"}`
	if _, _, err := readAll(t, writeData(t, "dpo.jsonl", pair+"\n"), false); err == nil || !strings.Contains(err.Error(), "herd dpo") {
		t.Errorf("a chosen/rejected pair: got %v, want a refusal pointing to herd dpo", err)
	}
	// a non-boolean label is an ordinary field
	row := `{"instruction": "Name a colour.", "output": "Red.", "label": "colours"}`
	if exs, _, err := readAll(t, writeData(t, "tag.jsonl", row+"\n"), false); err != nil || len(exs) != 1 {
		t.Errorf("a string label: %v", err)
	}
}

// hugeRow is an Alpaca row of about n bytes.
func hugeRow(n int) string {
	return `{"instruction": "Repeat.", "output": "` + strings.Repeat("word ", n/5) + `"}`
}

// TestHugeRowSkipped checks that a row over MaxRow bytes is skipped and
// counted before it is parsed, in JSON Lines and in a JSON array, and that
// reading past it allocates far less than its size (a 100 MB row cost
// 2.7 GB before).
func TestHugeRowSkipped(t *testing.T) {
	const size = 16 << 20
	huge := hugeRow(size)
	for name, content := range map[string]string{
		"huge.jsonl": rowA + "\n" + huge + "\n" + rowB + "\n",
		"huge.json":  "[" + rowA + ",\n" + huge + ",\n" + rowB + "]",
	} {
		p := writeData(t, name, content)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		exs, r, err := readAll(t, p, false)
		runtime.ReadMemStats(&after)
		if err != nil || len(exs) != 2 || r.TooLarge() != 1 || r.Rows() != 3 {
			t.Fatalf("%s: %d examples, %d too large, %d rows, err %v; want 2, 1, 3", name, len(exs), r.TooLarge(), r.Rows(), err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/8 {
			t.Errorf("%s: reading past a %d-byte row allocated %d bytes", name, size, alloc)
		}
		if !strings.HasSuffix(exs[1].Where, ":3") {
			t.Errorf("%s: the row after the huge one is at %s, want line 3", name, exs[1].Where)
		}
	}
	// with no limit the row is read
	r, err := Open(writeData(t, "huge.jsonl", huge+"\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.MaxRow = -1
	if ex, err := r.Next(); err != nil || len(ex.Messages[1].Content) < size-10 {
		t.Errorf("MaxRow -1: %v", err)
	}
}
