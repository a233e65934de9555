package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/spf13/pflag"
)

// addLoRAFlag registers --lora ADAPTER[:SCALE] (repeatable).
func addLoRAFlag(f *pflag.FlagSet, specs *[]string) {
	f.StringArrayVar(specs, "lora", nil, "apply a LoRA adapter at inference without merging: a PEFT directory or llama.cpp GGUF adapter, optionally :SCALE (repeatable)")
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
