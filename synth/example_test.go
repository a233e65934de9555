package synth_test

import (
	"context"
	"fmt"

	"github.com/herd-llm/herd/oai"
	"github.com/herd-llm/herd/synth"
)

// A completion that continues a self-instruct prompt ending in
// "3. Instruction:" parses into tasks in Alpaca's layout.
func ExampleParseTasks() {
	for _, t := range synth.ParseTasks(" Name a prime number above 90.\n3. Input:\n<noinput>\n3. Output:\n97\n###\n4. Instruction: Reverse the word.\n4. Input: herd\n4. Output: dreh", 3) {
		fmt.Printf("%q %q %q\n", t.Instruction, t.Input, t.Output)
	}
	// Output:
	// "Name a prime number above 90." "" "97"
	// "Reverse the word." "herd" "dreh"
}

// Distilling a prompt file with a teacher behind herd serve (or any
// OpenAI-compatible endpoint); Resume continues a stopped run.
func ExampleDistill() {
	c, err := oai.New(oai.Config{Endpoint: "http://127.0.0.1:8080", Model: "teacher", Concurrency: 8, RPS: 5})
	if err != nil {
		fmt.Println(err)
		return
	}
	d := &synth.Distill{Options: synth.Options{Client: c, Out: "answers.jsonl", Seed: 1, Temperature: 0.7}, Input: "prompts.txt", Samples: 2}
	if st, err := d.Run(context.Background()); err == nil {
		fmt.Print(st.Report())
	}
}
