package sft

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader feeds arbitrary files to the readers (seeded with the test
// data): they return examples or errors, never panic, and an example always
// has a turn to learn.
func FuzzReader(f *testing.F) {
	for _, n := range []string{"alpaca_en.json", "alpaca_zh.json", "sharegpt.json", "dolly.jsonl", "openai.jsonl", "bad.jsonl"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, b []byte, skip bool) {
		p := filepath.Join(t.TempDir(), "f.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(p, skip)
		if err != nil {
			return
		}
		defer r.Close()
		for {
			ex, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				var re *RowError
				if skip && errors.As(err, &re) {
					t.Fatalf("skipping bad rows, a row error still ended the read: %v", err)
				}
				return
			}
			if n := len(ex.Messages); n == 0 || ex.Messages[n-1].Role != "assistant" {
				t.Fatalf("%s: example without an assistant turn to learn: %+v", ex.Where, ex.Messages)
			}
		}
	})
}

// FuzzArrayRows checks the JSON array scanner against encoding/json: a
// file that is one valid JSON array (after an optional BOM) is read to
// its end without an error, one row per element, whatever the elements
// hold; and anything after the array's end is an error.
func FuzzArrayRows(f *testing.F) {
	for _, s := range []string{`[]`, `[{"a": "]"}, {"b": "\"}"}]`, "\ufeff[1, \"x\", [2, [3]], {\"k\": {}}, null]",
		`[{"instruction": "hi", "output": "yo"}] trailing`, `[{"a":1},]`, `[ {"a" : "\\"} , true ]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		body := bytes.TrimPrefix(b, []byte("\ufeff"))
		var elems []json.RawMessage
		valid := json.Unmarshal(body, &elems) == nil && bytes.HasPrefix(bytes.TrimSpace(body), []byte("["))
		p := filepath.Join(t.TempDir(), "f.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(p, true)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if !r.array {
			return
		}
		for err == nil {
			_, err = r.Next()
		}
		if valid && (err != io.EOF || r.Rows() != len(elems)) {
			t.Fatalf("valid array of %d elements: %d rows, %v", len(elems), r.Rows(), err)
		}
	})
}
