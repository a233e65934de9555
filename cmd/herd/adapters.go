package main

import (
	"slices"
	"strconv"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/spf13/pflag"
)

// addLoRAFlag registers --lora ADAPTER[:SCALE] (repeatable) and
// --lora-any-base, which adds anyBase to the same list.
func addLoRAFlag(f *pflag.FlagSet, specs *[]string) {
	f.StringArrayVar(specs, "lora", nil, "apply an adapter at inference without merging: a LoRA (PEFT directory or llama.cpp GGUF, optionally :SCALE) or a LLaMA-Adapter (.safetensors); repeatable")
	f.Var(anyBaseFlag{specs}, "lora-any-base", "apply the --lora adapters even to a model other than the one they were trained on")
	f.Lookup("lora-any-base").NoOptDefVal = "true"
}

// anyBase is the entry --lora-any-base adds to the --lora list: a LoRA
// that records its base (herd's do) is refused on another model unless
// the list holds it.
const anyBase = lora.AnyBase

// anyBaseFlag is --lora-any-base, kept in the --lora list so that every
// command that takes --lora takes it without a field of its own.
type anyBaseFlag struct{ specs *[]string }

func (a anyBaseFlag) String() string {
	if a.specs != nil && slices.Contains(*a.specs, anyBase) {
		return "true"
	}
	return "false"
}

func (a anyBaseFlag) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	*a.specs = slices.DeleteFunc(*a.specs, func(s string) bool { return s == anyBase })
	if on {
		*a.specs = append(*a.specs, anyBase)
	}
	return nil
}

func (a anyBaseFlag) Type() string { return "bool" }

// loadLoRA reads the LoRA at path for m and checks that it was trained on
// m unless anyBase.
func loadLoRA(m *llama.Model, path string, anyBase bool) (*lora.Set, error) {
	return lora.LoadFor(m, path, anyBase)
}

// parseLoRASpec splits ADAPTER[:SCALE].
func parseLoRASpec(s string) (string, float32, error) { return lora.ParseSpec(s) }

// applyLoRAs loads each adapter and attaches it to m.
func applyLoRAs(m *llama.Model, specs []string) error { return lora.Apply(m, specs) }
