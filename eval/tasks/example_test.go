package tasks_test

import (
	"fmt"
	"log"
	"os"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval/tasks"
)

// Evaluate the embedded stories260K on a task file, as herd eval does.
func ExampleRun() {
	m, tok, err := checkpoint.Default()
	if err != nil {
		log.Fatal(err)
	}
	t, err := tasks.Load("testdata/arc_easy.yaml") // or "arc_easy=ARC-Easy-Test.jsonl,ARC-Easy-Train.jsonl"
	if err != nil {
		log.Fatal(err)
	}
	rs, err := tasks.Run(m, tok, []*tasks.Task{t}, tasks.Options{Shots: -1})
	if err != nil {
		log.Fatal(err)
	}
	for _, mt := range rs[0].Metrics {
		fmt.Printf("%s %s: %.4f ± %.4f\n", rs[0].Task, mt.Name, mt.Value, mt.Stderr)
	}
	if err := tasks.WriteTable(os.Stdout, rs); err != nil {
		log.Fatal(err)
	}
	// Output:
	// arc_easy_tiny acc: 0.5000 ± 0.2887
	// arc_easy_tiny acc_norm: 0.5000 ± 0.2887
	// |Tasks        |Filter|n-shot|Metric  | | Value| |Stderr|
	// |-------------|------|-----:|--------|-|-----:|-|-----:|
	// |arc_easy_tiny|none  |     0|acc     |↑|0.5000|±|0.2887|
	// |             |none  |     0|acc_norm|↑|0.5000|±|0.2887|
}
