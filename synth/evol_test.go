package synth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/oai"
)

const evolInput = `Name a fruit.
Explain rain.
Say hello.
Describe a dog.
Give a colour.
Write a line about the sea.
List three primes.
Tell me a joke.
`

// scriptEvol scripts two rounds over eight prompts: each unit's requests
// are the evolution (0), the equality judgment (1) and the answer (2).
func scriptEvol(s *scripted, seed int64) {
	unit := func(key string, answers ...string) {
		for n, a := range answers {
			s.on(seed, key, n, a)
		}
	}
	unit("r1.0", "Name a tropical fruit that grows on trees and say where it grows.", "Not Equal", "The mango grows on trees in India and Southeast Asia.")
	unit("r1.1", "#Rewritten Prompt#: Explain rain in two sentences.")
	unit("r1.2", "Say hello to me.", "Equal")
	unit("r1.3", "Describe a dog breed used for herding sheep.", "Not Equal", "Sorry, I cannot help with that.")
	unit("r1.4", "Give a colour found in a rainbow and explain why.", "NOT EQUAL.", " ")
	unit("r1.5", "Write one line about the sea at night.", "I think they might be")
	unit("r1.6", "List three primes.", "Not Equal", "List three primes!")
	unit("r1.7", "Tell me a joke about cats.", "Not Equal", "Meow.")
	unit("r2.0", "Name a tropical fruit that grows on trees, say where it grows and when it ripens.", "Not Equal", "Mangoes ripen in early summer in India.")
	unit("r2.1", "Explain how rain forms in clouds.", "Not Equal", "Droplets grow around dust until they are heavy enough to fall.")
	for i := 2; i < 8; i++ {
		unit("r2."+string(rune('0'+i)), "")
	}
}

func evolRun(t testing.TB, out string, seed int64) *EvolInstruct {
	in := filepath.Join(filepath.Dir(out), "evol-input.txt")
	if err := os.WriteFile(in, []byte(evolInput), 0o644); err != nil {
		t.Fatal(err)
	}
	return &EvolInstruct{Options: Options{Out: out, Seed: seed, Temperature: 0.7}, Input: in, Rounds: 2, MinResponseWords: 2}
}

func TestEvolInstruct(t *testing.T) {
	s := newScripted(t)
	scriptEvol(s, 9)
	c, _ := s.serve(3)
	out := filepath.Join(t.TempDir(), "evol.jsonl")
	run := evolRun(t, out, 9)
	run.Client = c
	stats, err := run.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkDrops(t, stats, 3, map[string]int{DropLeak: 1, DropNoGain: 1, DropSorry: 1, DropEmpty: 7, DropJudgeUnparsed: 1, DropCopiesPrompt: 1, DropShortResponse: 1})
	items := readItems[EvolItem](t, out)
	if len(items) != 3 {
		t.Fatalf("%d items: %+v", len(items), items)
	}
	for i, w := range []struct{ id, parent, instr string }{
		{"r1.0", "p0", "Name a tropical fruit that grows on trees and say where it grows."},
		{"r2.0", "r1.0", "Name a tropical fruit that grows on trees, say where it grows and when it ripens."},
		{"r2.1", "p1", "Explain how rain forms in clouds."},
	} {
		it := items[i]
		if it.ID != w.id || it.Parent != w.parent || it.Instruction != w.instr || it.Round != int(w.id[1]-'0') {
			t.Errorf("item %d: %+v, want %+v", i, it, w)
		}
	}
	// the operation recorded is the one whose prompt was sent, and the
	// second round evolved the first round's survivor
	for _, it := range items {
		var sent string
		for _, p := range s.prompts {
			if p.Seed == deriveSeed(9, it.ID, 0) {
				sent = p.Messages[0].Content
			}
		}
		marker := depthMethods[it.Operation]
		if it.Operation == OpBreadth {
			marker = "as inspiration"
		}
		if marker == "" || !strings.Contains(sent, marker) {
			t.Errorf("%s: operation %q, prompt %q", it.ID, it.Operation, sent)
		}
		if it.ID == "r2.0" && !strings.Contains(sent, items[0].Instruction) {
			t.Errorf("r2.0 did not evolve r1.0's instruction: %q", sent)
		}
	}
	if _, err := (&EvolInstruct{Options: Options{Out: out + "2", Client: c}, Input: run.Input, Ops: []string{"shorten"}}).Run(context.Background()); err == nil {
		t.Error("an unknown operation was accepted")
	}
}

func TestEvolResume(t *testing.T) {
	checkResume(t, func(s *scripted) { scriptEvol(s, 9) }, func(out string, c *oai.Client, o func(*Options)) pipeline {
		r := evolRun(t, out, 9)
		r.Client = c
		if o != nil {
			o(&r.Options)
		}
		return r
	})
}
