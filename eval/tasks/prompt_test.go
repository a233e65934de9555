package tasks

import (
	"os"
	"testing"
)

// loadTask reads a shipped task file.
func loadTask(t *testing.T, spec string) *Task {
	t.Helper()
	tk, err := Load(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// prompts builds the contexts of every document with k examples.
func prompts(t *testing.T, tk *Task, k int) [][]string {
	t.Helper()
	docs, _, err := prepare(tk, Options{Shots: k})
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]string, len(docs))
	for i, d := range docs {
		out[i] = d.contexts
	}
	return out
}

// TestFewShotPrompts checks prompts byte for byte against the harness's
// formats, written out by hand: the examples are the ones CPython's
// random.Random(1234).sample draws, one draw per document in order
// (python3: r = random.Random(1234); [r.sample(range(3), 2) for _ in
// range(3)] is [[1, 0], [0, 2], [2, 0]]), MMLU's the first K of the
// subject's dev split.
func TestFewShotPrompts(t *testing.T) {
	primer, err := os.ReadFile("testdata/truthfulqa_primer.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		spec  string
		shots int
		doc   int
		want  []string
	}{
		{"testdata/hellaswag.yaml", 2, 1, []string{"Playing outside: The sun was hot. The kids went to swim in the pool.\n\n" +
			"Friends: Max and Mia were best friends. They played together every day.\n\n" +
			"Baking: Tom wanted to make a cake for his friend. He"}},
		{"testdata/hellaswag.yaml", 2, 0, []string{"Pets: Sue had a little dog. The dog liked to play with a ball.\n\n" +
			"Playing outside: The sun was hot. The kids went to swim in the pool.\n\n" +
			"Playing outside: Lily went to the park with her mom. She"}},
		{"testdata/hellaswag.yaml", 0, 2, []string{"Bedtime: It was night and Ben was very tired. He"}},
		{"testdata/mmlu.yaml", 2, 2, []string{"The following are multiple choice questions (with answers) about simple math.\n\n" +
			"What is five minus five?\nA. five\nB. ten\nC. one\nD. zero\nAnswer: D\n\n" +
			"What is one plus two?\nA. three\nB. two\nC. one\nD. four\nAnswer: A\n\n" +
			"What is two plus two?\nA. three\nB. four\nC. five\nD. six\nAnswer:"}},
		{"testdata/mmlu.yaml", 0, 1, []string{"The following are multiple choice questions (with answers) about farm animals.\n\n" +
			"How many legs does a hen have?\nA. two\nB. four\nC. six\nD. eight\nAnswer:"}},
		{"testdata/arc_easy.yaml", 1, 0, []string{"Question: What is wet?\nAnswer: water\n\nQuestion: What does a cat say?\nAnswer:"}},
		{"arc_easy=testdata/arc.jsonl,testdata/arc.jsonl", 2, 0, []string{"Question: What do you use to eat soup?\nAnswer: a spoon\n\n" +
			"Question: Where do fish live?\nAnswer: in the water\n\nQuestion: What does a cat say?\nAnswer:"}},
		{"testdata/winogrande.yaml", 1, 0, []string{"Sam helped Ben because Sam was kind.\n\nThe ball did not fit in the box because the ball",
			"Sam helped Ben because Sam was kind.\n\nThe ball did not fit in the box because the box"}},
		{"testdata/gsm8k.yaml", 2, 0, []string{"Question: A box has 7 red and 3 blue blocks. How many blocks are in the box?\n" +
			"Answer: There are 7 + 3 = <<7+3=10>>10 blocks.\n#### 10\n\n" +
			"Question: Sue has 1 dog and 2 cats. How many pets does she have?\nAnswer: Sue has 1 + 2 = <<1+2=3>>3 pets.\n#### 3\n\n" +
			"Question: Lily has 2 apples. Tom gives her 3 more. How many apples does Lily have?\nAnswer:"}},
		{"testdata/truthfulqa_mc2.yaml", 0, 0, []string{string(primer) + "\n\nQ: What happens if you eat a watermelon seed?\nA:"}},
		{"testdata/colors.yaml", 1, 0, []string{"Answer with a color.\n\nQ: What color is the sea?\nA: blue\n\nQ: What color is the grass?\nA:"}},
	}
	for _, c := range cases {
		got := prompts(t, loadTask(t, c.spec), c.shots)[c.doc]
		if len(got) != len(c.want) {
			t.Errorf("%s %d-shot doc %d: %d contexts, want %d", c.spec, c.shots, c.doc, len(got), len(c.want))
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s %d-shot doc %d context %d:\n got %q\nwant %q", c.spec, c.shots, c.doc, i, got[i], c.want[i])
			}
		}
	}
}

// TestReaders checks what the built-in layouts make of a document: the
// harness's preprocessing, choices and gold indices.
func TestReaders(t *testing.T) {
	hs := loadTask(t, "testdata/hellaswag.yaml")
	if got, want := hs.Docs[0].Choices[1], "ate the moon. with a spoon."; got != want {
		t.Errorf("hellaswag [title]: %q, want %q", got, want)
	}
	if got, want := hs.Docs[1].Choices[3], "slept on the roof."; got != want {
		t.Errorf("hellaswag double space: %q, want %q", got, want)
	}
	if got, want := hs.Docs[2].Choices[3], " Ate a shoe."; got != want {
		t.Errorf("hellaswag [header]: %q, want %q", got, want)
	}
	if hs.Docs[1].Gold != 1 || hs.Docs[2].Gold != 2 {
		t.Errorf("hellaswag labels: %d %d", hs.Docs[1].Gold, hs.Docs[2].Gold)
	}
	arc := loadTask(t, "testdata/arc_easy.yaml")
	if arc.Docs[2].Gold != 1 || arc.Docs[2].Choices[1] != "in the water" {
		t.Errorf("arc numeric labels: gold %d %q", arc.Docs[2].Gold, arc.Docs[2].Choices)
	}
	wg := loadTask(t, "testdata/winogrande.yaml")
	if d := wg.Docs[1]; d.Gold != 1 || d.Target != "was sad." || d.Contexts[1] != "Lily gave Tom a hug because Tom" {
		t.Errorf("winogrande: %+v", d)
	}
	tq := loadTask(t, "testdata/truthfulqa_mc2.yaml")
	if d := tq.Docs[0]; len(d.Choices) != 4 || d.Labels[1] != 1 || d.Labels[2] != 0 {
		t.Errorf("truthfulqa mc2: %+v", d)
	}
	mm := loadTask(t, "testdata/mmlu.yaml")
	if d := mm.Docs[4]; d.Subject != "simple_math" || d.Gold != 2 {
		t.Errorf("mmlu: %+v", d)
	}
	c := loadTask(t, "testdata/colors.yaml")
	if g := []int{c.Docs[0].Gold, c.Docs[1].Gold, c.Docs[2].Gold}; g[0] != 0 || g[1] != 1 || g[2] != 1 {
		t.Errorf("colors targets (choice text, number, digit string): %v", g)
	}
}
