package journal

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzResume: whatever the output and journal hold, opening them to
// resume returns a store or an error, never a panic.
func FuzzResume(f *testing.F) {
	f.Add(`{"id":"a"}`+"\n", `{"pipeline":"x","settings":"s"}`+"\n"+`{"unit":"u","kept":["a"]}`+"\n")
	f.Add(`{"id":"a"}`+"\n"+`{"id":"b"`, `{"pipeline":"x","settings":"s"}`+"\n"+`{"unit":"u","kept":["a"]}`)
	f.Fuzz(func(t *testing.T, out, jr string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "o.jsonl")
		os.WriteFile(p, []byte(out), 0o644)
		os.WriteFile(Path(p), []byte(jr), 0o644)
		st, err := openStore(p, true, Header{Pipeline: "x", Settings: "s"})
		if err == nil {
			if len(st.items) != st.stats.Kept {
				t.Fatalf("%d items resumed, the journal counts %d", len(st.items), st.stats.Kept)
			}
			st.close()
		}
	})
}
