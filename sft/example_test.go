package sft_test

import (
	"fmt"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
)

// Fine-tune a model with LoRA for a few steps: encode instruction data
// through a chat template (the loss covers the answers only), tune, and
// read the adapters off the result (lora.SavePEFT and lora.SaveGGUF
// write them; Result.Save writes what herd sft writes).
func ExampleTune() {
	m, tok, err := checkpoint.Default()
	if err != nil {
		panic(err)
	}
	tmpl, _ := chat.Lookup("alpaca")
	enc := &sft.Encoder{Tok: tok, Template: tmpl, Ctx: 256, Overflow: sft.Split}
	samples, _, err := enc.LoadAll([]string{"testdata/alpaca_en.json"}, false)
	if err != nil {
		panic(err)
	}
	res, err := sft.Tune(m, samples[:8], sft.Options{Method: sft.LoRA, Steps: 4, Batch: 4, LR: 1e-2, Seed: 1,
		LoRA: lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q", "v"}}})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(res.Losses), "steps;", len(res.Adapters.Adapters), "adapters;", res.Losses[3] < res.Losses[0])
	// Output: 4 steps; 10 adapters; true
}
