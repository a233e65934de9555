package synth

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/herd-llm/herd/oai"
)

func script(s *scripted, seed int64, key string, answers ...string) {
	for n, a := range answers {
		s.on(seed, key, n, a)
	}
}

func scriptSelfChat(s *scripted) {
	script(s, 3, "p0", "Rain falls when droplets grow heavy.", "Why do they grow?", "They collect water from the air.", "Thanks! [END]")
	script(s, 3, "p1", "A1", "Q2", "A2", "Q3", "A3")
	script(s, 3, "p2", "")
	script(s, 3, "p3", "Cats purr when content.", "Do lions purr?", " ")
}

func selfChatRun(t testing.TB, out string) *SelfChat {
	in := filepath.Join(filepath.Dir(out), "questions.jsonl")
	os.WriteFile(in, []byte(`{"instruction": "Why does it rain?"}
{"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "old answer"}]}
{"prompt": "Unanswerable?"}
{"messages": [{"role": "user", "content": "Why do cats purr?"}]}
`), 0o644)
	return &SelfChat{Options: Options{Out: out, Seed: 3, Temperature: 0.5}, Input: in, Turns: 3}
}

func TestSelfChat(t *testing.T) {
	s := newScripted(t)
	scriptSelfChat(s)
	c, _ := s.serve(2)
	out := filepath.Join(t.TempDir(), "chat.jsonl")
	run := selfChatRun(t, out)
	run.Client = c
	stats, err := run.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkDrops(t, stats, 3, map[string]int{DropNoAnswer: 1})
	got := readItems[Conversation](t, out)
	want := []Conversation{
		{"p0", []Turn{{"human", "Why does it rain?"}, {"gpt", "Rain falls when droplets grow heavy."}, {"human", "Why do they grow?"}, {"gpt", "They collect water from the air."}}},
		{"p1", []Turn{{"human", "Q1"}, {"gpt", "A1"}, {"human", "Q2"}, {"gpt", "A2"}, {"human", "Q3"}, {"gpt", "A3"}}},
		{"p3", []Turn{{"human", "Why do cats purr?"}, {"gpt", "Cats purr when content."}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("conversations:\n%+v\nwant\n%+v", got, want)
	}
	// the simulated user sees its own turns as the assistant's
	for _, p := range s.prompts {
		if p.Seed == deriveSeed(3, "p0", 1) {
			roles := []string{}
			for _, m := range p.Messages {
				roles = append(roles, m.Role)
			}
			if strings.Join(roles, ",") != "system,assistant,user" || p.Messages[1].Content != "Why does it rain?" || !strings.Contains(p.Messages[0].Content, EndMark) {
				t.Errorf("user view: %+v", p.Messages)
			}
		}
	}
}

func TestSelfChatResume(t *testing.T) {
	checkResume(t, scriptSelfChat, func(out string, c *oai.Client, o func(*Options)) pipeline {
		r := selfChatRun(t, out)
		r.Client = c
		if o != nil {
			o(&r.Options)
		}
		return r
	})
}

func scriptDistill(s *scripted) {
	script(s, 5, "p0.s0", "5")
	script(s, 5, "p0.s1", "Five.")
	script(s, 5, "p1.s0", "a1", "a2")
	script(s, 5, "p1.s1", "b1", "")
	script(s, 5, "p2.s0", "")
	script(s, 5, "p2.s1", "")
}

func distillRun(t testing.TB, out string) *Distill {
	in := filepath.Join(filepath.Dir(out), "prompts.json")
	os.WriteFile(in, []byte(`[
  {"instruction": "Add 2 and 3.", "input": "", "output": "old"},
  {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "x"}, {"from": "human", "value": "Bye"}]},
  {"prompt": "Nothing comes back."}
]`), 0o644)
	return &Distill{Options: Options{Out: out, Seed: 5, Temperature: 0.7}, Input: in, Samples: 2}
}

func TestDistill(t *testing.T) {
	s := newScripted(t)
	scriptDistill(s)
	c, _ := s.serve(2)
	out := filepath.Join(t.TempDir(), "distill.jsonl")
	run := distillRun(t, out)
	run.Client = c
	stats, err := run.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkDrops(t, stats, 4, map[string]int{DropEmpty: 2})
	got := readItems[Conversation](t, out)
	want := []Conversation{
		{"p0.s0", []Turn{{"human", "Add 2 and 3."}, {"gpt", "5"}}},
		{"p0.s1", []Turn{{"human", "Add 2 and 3."}, {"gpt", "Five."}}},
		{"p1.s0", []Turn{{"system", "Be brief."}, {"human", "Hi"}, {"gpt", "a1"}, {"human", "Bye"}, {"gpt", "a2"}}},
		{"p1.s1", []Turn{{"system", "Be brief."}, {"human", "Hi"}, {"gpt", "b1"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("conversations:\n%+v\nwant\n%+v", got, want)
	}
	// the second turn is asked with the teacher's own first answer
	for _, p := range s.prompts {
		if p.Seed == deriveSeed(5, "p1.s0", 1) && (len(p.Messages) != 4 || p.Messages[2].Content != "a1") {
			t.Errorf("second turn sent %+v", p.Messages)
		}
	}
}

func TestDistillResume(t *testing.T) {
	checkResume(t, scriptDistill, func(out string, c *oai.Client, o func(*Options)) pipeline {
		r := distillRun(t, out)
		r.Client = c
		if o != nil {
			o(&r.Options)
		}
		return r
	})
}

func scriptPairs(s *scripted) {
	script(s, 6, "p0.s0", "A long, careful answer.", "meh", "A is better. [[A]]", "Having compared: [[B]]")
	script(s, 6, "p1.s0", "x", "y", "[[B]]", "[[A]]")
	script(s, 6, "p2.s0", "first", "second", "[[A]]", "[[A]]")
	script(s, 6, "p3.s0", "same", "same")
	script(s, 6, "p4.s0", "one", "two", "I prefer A.")
	script(s, 6, "p5.s0", "uno", "dos", "[[C]]", "[[C]]")
}

func pairsRun(t testing.TB, out string) *Distill {
	in := filepath.Join(filepath.Dir(out), "prompts.txt")
	os.WriteFile(in, []byte("q0\nq1\n\nq2\nq3\nq4\nq5\n"), 0o644)
	return &Distill{Options: Options{Out: out, Seed: 6, Temperature: 1}, Input: in, Pairs: true}
}

func TestDistillPairs(t *testing.T) {
	s := newScripted(t)
	scriptPairs(s)
	c, _ := s.serve(3)
	out := filepath.Join(t.TempDir(), "pairs.jsonl")
	run := pairsRun(t, out)
	run.Client = c
	stats, err := run.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkDrops(t, stats, 2, map[string]int{DropTie: 2, DropIdentical: 1, DropJudgeUnparsed: 1})
	got := readItems[Pair](t, out)
	want := []Pair{{ID: "p0.s0", Prompt: "q0", Chosen: "A long, careful answer.", Rejected: "meh"}, {ID: "p1.s0", Prompt: "q1", Chosen: "y", Rejected: "x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pairs %+v, want %+v", got, want)
	}
	// the judge saw the answers in both orders
	for n, first := range map[int]string{2: "[Answer A]\nx\n", 3: "[Answer A]\ny\n"} {
		found := false
		for _, p := range s.prompts {
			if p.Seed == deriveSeed(6, "p1.s0", n) {
				found = strings.Contains(p.Messages[0].Content, first)
			}
		}
		if !found {
			t.Errorf("judgment %d did not show %q first", n, first)
		}
	}
	for _, c := range []struct{ in, want string }{{"[[A]]", "A"}, {"maybe [[B]] or [[C]]", "C"}, {"[A]", ""}, {"[[D]]", ""}} {
		if got := ParseVerdict(c.in); got != c.want {
			t.Errorf("ParseVerdict(%q) = %q", c.in, got)
		}
	}
}

func TestReadPromptsErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{`{"instruction": "a"}` + "\n" + `{"instruction": 3}`, "p.jsonl:2"},
		{`{"instruction": "a"}` + "\n\n" + `{"text": "b"}`, "p.jsonl:3: no instruction"},
		{`[{"instruction": "a"},` + "\n" + `{"instruction": ""}]`, "p.jsonl:2: no user text"},
		{`{"instruction": "a"}` + "\n{broken", "p.jsonl:2: not a JSON object"},
		{"", "no prompts"},
	} {
		p := filepath.Join(dir, "p.jsonl")
		os.WriteFile(p, []byte(c.body), 0o644)
		if _, err := ReadPrompts(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.body, err)
		}
	}
}
