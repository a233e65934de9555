package synth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseTasks(f *testing.F) {
	f.Add(" Say hi.\n3. Input:\n<noinput>\n3. Output:\nhi\n###\n4. Instruction: x", 3)
	f.Add("1. Instruction:\n1. Output:", 1)
	f.Fuzz(func(t *testing.T, s string, next int) {
		for _, task := range ParseTasks(s, next%1000) {
			if task.Instruction != strings.TrimSpace(task.Instruction) {
				t.Fatalf("untrimmed instruction %q", task.Instruction)
			}
		}
		ParseVerdict(s)
	})
}

func FuzzPromptRow(f *testing.F) {
	f.Add(`{"instruction": "a", "input": "b"}`)
	f.Add(`{"conversations": [{"from": "human", "value": "x"}]}`)
	f.Add(`{"turns": ["a", "b"]}`)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := promptOf([]byte(s))
		if err == nil && (len(p.User) == 0 || strings.TrimSpace(p.User[0]) == "") {
			t.Fatalf("a prompt without user text: %+v", p)
		}
	})
}

// FuzzResume: whatever the output and journal hold, opening them to
// resume returns a store or an error, never a panic.
func FuzzResume(f *testing.F) {
	f.Add(`{"id":"a"}`+"\n", `{"pipeline":"x","settings":"s"}`+"\n"+`{"unit":"u","kept":["a"]}`+"\n")
	f.Add(`{"id":"a"}`+"\n"+`{"id":"b"`, `{"pipeline":"x","settings":"s"}`+"\n"+`{"unit":"u","kept":["a"]}`)
	f.Fuzz(func(t *testing.T, out, journal string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "o.jsonl")
		os.WriteFile(p, []byte(out), 0o644)
		os.WriteFile(JournalPath(p), []byte(journal), 0o644)
		st, err := openStore(p, true, journalHeader{Pipeline: "x", Settings: "s"})
		if err == nil {
			if len(st.items) != st.stats.Kept {
				t.Fatalf("%d items resumed, the journal counts %d", len(st.items), st.stats.Kept)
			}
			st.close()
		}
	})
}
