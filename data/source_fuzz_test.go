package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzReadJSONL feeds arbitrary bytes to the JSONL reader with a small
// size limit: it emits documents or returns an error, never panics; a row
// it emits is at most the limit long; and a file of well-formed rows
// gives back every row's text or counts it as too long.
func FuzzReadJSONL(f *testing.F) {
	f.Add(jsonl("one", "two"), 16)
	f.Add(append([]byte("\ufeff"), jsonl("a long enough row to be over the limit", "b")...), 24)
	f.Add([]byte("{\"text\": \"x\"}\n\n  \n{\"text\": \"caf\xe9\"}"), 64)
	f.Add([]byte("{\"text\": 1}\n"), 64)
	f.Fuzz(checkReadJSONL)
}

// checkReadJSONL is FuzzReadJSONL's check of one input.
func checkReadJSONL(t *testing.T, b []byte, limit int) {
	limit = 1 + abs(limit)%4096
	s := &Source{Name: "fuzz"}
	var docs []string
	var c readCounts
	err := s.readJSONL("fuzz.jsonl", bufio.NewReaderSize(bytes.NewReader(b), 16), limit, func(doc string, raw int64) error {
		docs = append(docs, doc)
		return nil
	}, &c)
	// rows that are each one JSON object with a string "text"
	var want []string
	for i, raw := range bytes.Split(b, []byte("\n")) {
		if len(raw) > limit {
			return // a row over the limit: only the absence of a panic is checked
		}
		if i == 0 {
			raw = bytes.TrimPrefix(raw, utf8BOM)
		}
		line := bytes.TrimSpace(raw)
		if len(line) == 0 {
			continue
		}
		var row map[string]json.RawMessage
		var text string
		if json.Unmarshal(line, &row) != nil || json.Unmarshal(row["text"], &text) != nil {
			return // not a file of good rows: only the absence of a panic is checked
		}
		want = append(want, text)
	}
	if err != nil || len(docs) != len(want) || c.TooLong != 0 {
		t.Fatalf("%d good rows: %d documents, %d too long, %v", len(want), len(docs), c.TooLong, err)
	}
	for i := range docs {
		if docs[i] != want[i] {
			t.Fatalf("row %d: %q, want %q", i, docs[i], want[i])
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
