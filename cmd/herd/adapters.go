package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/spf13/pflag"
)

// addLoRAFlag registers --lora ADAPTER[:SCALE] (repeatable).
func addLoRAFlag(f *pflag.FlagSet, specs *[]string) {
	f.StringArrayVar(specs, "lora", nil, "apply an adapter at inference without merging: a LoRA (PEFT directory or llama.cpp GGUF, optionally :SCALE) or a LLaMA-Adapter (.safetensors); repeatable")
}

// parseLoRASpec splits ADAPTER[:SCALE].
func parseLoRASpec(s string) (string, float32, error) {
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		if w, err := strconv.ParseFloat(s[i+1:], 32); err == nil {
			return s[:i], float32(w), nil
		}
	}
	if s == "" {
		return "", 0, fmt.Errorf("--lora: empty adapter path")
	}
	return s, 1, nil
}

// applyLoRAs loads each adapter and attaches it to m.
func applyLoRAs(m *llama.Model, specs []string) error {
	for _, s := range specs {
		path, w, err := parseLoRASpec(s)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".safetensors") {
			// a LLaMA-Adapter from herd sft --method adapter
			if w != 1 {
				return fmt.Errorf("--lora %s: a LLaMA-Adapter takes no scale", s)
			}
			if err := sft.LoadPrefixes(path, m); err != nil {
				return err
			}
			continue
		}
		set, err := lora.Load(path, m.Config)
		if err != nil {
			return err
		}
		if err := set.Attach(m, w); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}
