package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/oai"
)

// TestRoundTrip writes units, reopens the output to resume, and finds the
// units, items and counts written; torn last lines are cut, a file changed
// by hand is refused.
func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.jsonl")
	h := Header{Pipeline: "test", Settings: "s1"}
	st, err := openStore(p, false, h)
	if err != nil {
		t.Fatal(err)
	}
	u1 := &Unit{Key: "a", usage: oai.Usage{Prompt: 3, Completion: 4}, requests: 2}
	u1.Keep("a-0", map[string]string{"id": "a-0", "text": "x"})
	u1.Keep("a-1", map[string]string{"id": "a-1", "text": "y"})
	u1.Drop("short")
	u2 := &Unit{Key: "b", requests: 1}
	u2.Drop("short")
	u2.Drop("long")
	for _, u := range []*Unit{u1, u2} {
		if err := st.commit(u); err != nil {
			t.Fatal(err)
		}
	}
	st.close()
	want := readAll(t, p)
	if _, err := openStore(p, false, h); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("a new run over an output: %v", err)
	}
	// torn lines from a unit that never finished
	appendTo(t, p, `{"id":"c-0","text":"z"}`+"\n"+`{"id":"c-1","te`)
	appendTo(t, Path(p), `{"unit":"c","ke`)
	st, err = openStore(p, true, h)
	if err != nil {
		t.Fatal(err)
	}
	if !st.done["a"] || !st.done["b"] || st.done["c"] || len(st.order) != 2 || st.order[1] != "a-1" {
		t.Errorf("resumed %v %v", st.done, st.order)
	}
	s := st.stats
	if s.Kept != 2 || s.Drops["short"] != 2 || s.Drops["long"] != 1 || s.Units != 2 || s.Requests != 3 || s.Usage != (oai.Usage{Prompt: 3, Completion: 4}) {
		t.Errorf("stats %+v", s)
	}
	st.close()
	if got := readAll(t, p); got != want {
		t.Errorf("the unfinished unit's items were not cut:\n%s", got)
	}
	if _, err := openStore(p, true, Header{Pipeline: "test", Settings: "s2"}); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("other settings: %v", err)
	}
	// an item the journal vouches for, removed by hand
	os.WriteFile(p, []byte(strings.SplitAfter(want, "\n")[0]), 0o644)
	if _, err := openStore(p, true, h); err == nil || !strings.Contains(err.Error(), `"a-1", which the output lacks`) {
		t.Errorf("a lost item: %v", err)
	}
	// an output without its journal
	os.Remove(Path(p))
	if _, err := openStore(p, true, h); err == nil || !strings.Contains(err.Error(), "no journal") {
		t.Errorf("no journal: %v", err)
	}
}

func readAll(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func appendTo(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}
