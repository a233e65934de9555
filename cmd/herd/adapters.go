package main

import (
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/spf13/pflag"
)

// addLoRAFlag registers --lora ADAPTER[:SCALE] (repeatable).
func addLoRAFlag(f *pflag.FlagSet, specs *[]string) {
	f.StringArrayVar(specs, "lora", nil, "apply an adapter at inference without merging: a LoRA (PEFT directory or llama.cpp GGUF, optionally :SCALE) or a LLaMA-Adapter (.safetensors); repeatable")
}

// parseLoRASpec splits ADAPTER[:SCALE].
func parseLoRASpec(s string) (string, float32, error) { return lora.ParseSpec(s) }

// applyLoRAs loads each adapter and attaches it to m.
func applyLoRAs(m *llama.Model, specs []string) error { return lora.Apply(m, specs) }
