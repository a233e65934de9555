package synth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTasks(t *testing.T) {
	got := ParseTasks(` Give three tips for staying healthy.
3. Input:
<noinput>
3. Output:
Eat well, sleep, move.
###
4 . Instruction: Name the capital.
4. Input: France
4. Output: Paris
###
5. Instruction: Answer this one.
5. Output:
Yes.

6. Instruction:
6. Input: nothing
###
7. Instruction: cut sho`, 3)
	want := []Task{
		{Instruction: "Give three tips for staying healthy.", Output: "Eat well, sleep, move."},
		{Instruction: "Name the capital.", Input: "France", Output: "Paris"},
		{Instruction: "Answer this one.", Output: "Yes."},
		{Instruction: "", Input: "nothing"},
		{Instruction: "cut sho"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d tasks: %+v", len(got), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("task %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// a completion that repeats the cue is not given a second one
	if got := ParseTasks("3. Instruction: Say hi to me now.\n3. Output: hi", 3); len(got) != 1 || got[0].Instruction != "Say hi to me now." || got[0].Output != "hi" {
		t.Errorf("repeated cue: %+v", got)
	}
}

func TestTaskFilter(t *testing.T) {
	f := TaskFilter{EnglishOnly: true}
	f.defaults()
	black := f.blacklistRE()
	long := strings.Repeat("word ", 151)
	for _, c := range []struct{ instr, want string }{
		{"Give three tips for staying healthy.", ""},
		{"Explain the maple tree's life cycle.", ""}, // "map" inside a word is no match
		{"Sort these.", DropTooShort},
		{long, DropTooLong},
		{"Describe the IMAGE in one sentence.", DropBlacklist},
		{"Tell me how to go to the station.", DropBlacklist},
		{"Write a program that sorts a list.", DropProgram},
		{"\"Quote\" this line back to me.", DropPunctuation},
		{"Übersetze diesen Satz bitte ins Englische.", DropNonEnglish},
	} {
		if got := f.Check(c.instr, black); got != c.want {
			t.Errorf("%.40q: %q, want %q", c.instr, got, c.want)
		}
	}
	f.EnglishOnly = false
	if got := f.Check("Übersetze diesen Satz bitte ins Englische.", black); got != "" {
		t.Errorf("non-English dropped without EnglishOnly: %q", got)
	}
}

// scriptSelfInstruct scripts the answers of a self-instruct run: every
// filter drops something, some tasks are kept, the last wave goes over
// the target.
func scriptSelfInstruct(s *scripted, seed int64) {
	s.on(seed, "w0.0", 0, ` Give three tips for staying healthy every day.
3. Input:
<noinput>
3. Output:
Eat well, sleep enough and walk.
###
4. Instruction: Describe the image below in great detail.
4. Input: <noinput>
4. Output: A cat.
###
5. Instruction: Sort them.
5. Output: No.
###
6. Instruction: Write a program that prints the primes below 100.
6. Output: for ...
###
7. Instruction: "Quote this sentence back to me, please."
7. Output: ok
###
8. Instruction: Translate the following sentence into French for me.
8. Input:
I like cheese.
###
9. Instruction: Give three tips for staying healthy each day.
9. Output: Eat, sleep, walk.
###
10. Instruction:
10. Input: lost
###
11. Instruction: Explain why the sky looks blue during`)
	s.bySeed[deriveSeed(seed, "w0.0", 0)] = answer{content: s.bySeed[deriveSeed(seed, "w0.0", 0)].content, finish: "length"}
	s.on(seed, "w0.0", 1, "J'aime le fromage.")
	s.on(seed, "w0.1", 0, ` Suggest a breakfast without any eggs that still has plenty of protein.
3. Output: Oats.
###
4. Instruction: Übersetze diesen Satz bitte ins Englische.
4. Output: ok
###
5. Instruction: `+strings.Repeat("very ", 151)+`long.
5. Output: ok
###
6. Instruction: List the planets of the solar system in order from the sun.
6. Output: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune.
###
7. Instruction: Give three tips for staying healthy every week.
7. Output: Rest.`)
	s.on(seed, "w1.0", 0, "  ")
	s.on(seed, "w1.1", 0, ` Name a mammal that lays eggs and say where it lives.
3. Output: The platypus, in eastern Australia.
###
4. Instruction: Convert 100 degrees Fahrenheit to Celsius and show the working.
4. Output: (100 − 32) × 5/9 ≈ 37.8 °C.
###
5. Instruction: Write a haiku about autumn leaves falling in the rain.
5. Output: Red leaves in the rain / ...`)
}

func selfInstructRun(out string, seed int64) *SelfInstruct {
	return &SelfInstruct{Options: Options{Out: out, Seed: seed, Temperature: 1}, Seeds: "testdata/seed_tasks.jsonl",
		Target: 5, Shown: 2, Machine: 1, Ask: 5, Wave: 2, Filter: TaskFilter{EnglishOnly: true}}
}

func TestSelfInstruct(t *testing.T) {
	s := newScripted(t)
	scriptSelfInstruct(s, 42)
	c, _ := s.serve(2)
	out := filepath.Join(t.TempDir(), "si.jsonl")
	run := selfInstructRun(out, 42)
	run.Client = c
	stats, err := run.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkDrops(t, stats, 5, map[string]int{DropBlacklist: 1, DropTooShort: 1, DropProgram: 1, DropPunctuation: 1,
		DropRouge: 3, DropUnparsed: 1, DropTruncated: 1, DropNonEnglish: 1, DropTooLong: 1, DropEmpty: 1, DropOverTarget: 1})
	items := readItems[Task](t, out)
	want := []Task{
		{ID: "w0.0-0", Instruction: "Give three tips for staying healthy every day.", Output: "Eat well, sleep enough and walk."},
		{ID: "w0.0-5", Instruction: "Translate the following sentence into French for me.", Input: "I like cheese.", Output: "J'aime le fromage."},
		{ID: "w0.1-3", Instruction: "List the planets of the solar system in order from the sun.", Output: "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune."},
		{ID: "w1.1-0", Instruction: "Name a mammal that lays eggs and say where it lives.", Output: "The platypus, in eastern Australia."},
		{ID: "w1.1-1", Instruction: "Convert 100 degrees Fahrenheit to Celsius and show the working.", Output: "(100 − 32) × 5/9 ≈ 37.8 °C."},
	}
	if len(items) != len(want) {
		t.Fatalf("%d items: %+v", len(items), items)
	}
	for i := range want {
		if items[i] != want[i] {
			t.Errorf("item %d: %+v, want %+v", i, items[i], want[i])
		}
	}
	if stats.Requests != 5 || stats.Usage.Prompt != 50 {
		t.Errorf("%d requests, usage %+v", stats.Requests, stats.Usage)
	}
	// the second wave's prompts show a machine task kept in the first
	var shown int
	for _, p := range s.prompts {
		if p.Seed == deriveSeed(42, "w1.0", 0) || p.Seed == deriveSeed(42, "w1.1", 0) {
			c := p.Messages[0].Content
			for _, w := range want[:3] {
				if strings.Contains(c, w.Instruction) {
					shown++
				}
			}
			if strings.Count(c, "###\n") != 3 || !strings.HasSuffix(c, "3. Instruction:") {
				t.Errorf("prompt layout: %q", c)
			}
		}
	}
	if shown != 2 {
		t.Errorf("%d machine tasks shown in the second wave's two prompts, want 2", shown)
	}
	t.Log(stats.Report())
	// a finished run resumed does nothing more
	before := s.requests.Load()
	run2 := selfInstructRun(out, 42)
	run2.Client, run2.Resume = c, true
	if st2, err := run2.Run(context.Background()); err != nil || st2.Kept != 5 || s.requests.Load() != before {
		t.Errorf("resume of a finished run: %v, %+v, %d new requests", err, st2, s.requests.Load()-before)
	}
	// a resume with other settings is refused
	run3 := selfInstructRun(out, 43)
	run3.Client, run3.Resume = c, true
	if _, err := run3.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Errorf("resume with another seed: %v", err)
	}
	// and a new run does not overwrite the output
	run4 := selfInstructRun(out, 42)
	run4.Client = c
	if _, err := run4.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("second run over the output: %v", err)
	}
}

func TestSeedFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{`{"instruction": "a", "instances": [{"input": "", "output": "b"}]}` + "\n{not json\n", "bad.jsonl:2"},
		{`{"instruction": "", "instances": [{"input": "", "output": "b"}]}`, "bad.jsonl:1: field instruction"},
		{`{"instruction": "a", "instances": []}`, "bad.jsonl:1: field instances"},
		{"\n\n", "no tasks"},
	} {
		p := filepath.Join(dir, "bad.jsonl")
		os.WriteFile(p, []byte(c.body), 0o644)
		if _, err := ReadSeedTasks(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.body, err)
		}
	}
}
