package synth

import (
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
