// Package testutil holds the helpers several packages' tests share, so
// that each exists once.
package testutil

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/herd-llm/herd/assets"
	"github.com/herd-llm/herd/tokenizer"
)

// Tok512 is the embedded 512-piece tokenizer of stories260K.
func Tok512(t testing.TB) *tokenizer.SPM {
	t.Helper()
	tok, err := tokenizer.FromLlama2c(assets.Tok512(), 512)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ReadJSONL parses every non-empty line of the file at path as a T (a
// metrics.jsonl's lines, say), failing the test on a line that does not.
func ReadJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("%s:%d: %q: %v", path, i+1, line, err)
		}
		out = append(out, v)
	}
	return out
}
