package lora

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/llama"
)

// ParseSpec splits an adapter spec ADAPTER[:SCALE] (herd's --lora) into
// the path and the scale (1 when none is given).
func ParseSpec(s string) (string, float32, error) {
	if i := strings.LastIndexByte(s, ':'); i > 0 {
		if w, err := strconv.ParseFloat(s[i+1:], 32); err == nil {
			return s[:i], float32(w), nil
		}
	}
	if s == "" {
		return "", 0, fmt.Errorf("lora: empty adapter path")
	}
	return s, 1, nil
}

// Apply loads each adapter of specs (ADAPTER[:SCALE]) and attaches it to m
// for inference, unmerged: a LoRA (a PEFT directory or a llama.cpp GGUF)
// at its scale, or LLaMA-Adapter prompts (a .safetensors file written by
// SavePrefixes, no scale).
func Apply(m *llama.Model, specs []string) error {
	for _, s := range specs {
		path, w, err := ParseSpec(s)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".safetensors") {
			if w != 1 {
				return fmt.Errorf("adapter %s: a LLaMA-Adapter takes no scale", s)
			}
			if err := LoadPrefixes(path, m); err != nil {
				return err
			}
			continue
		}
		set, err := Load(path, m.Config)
		if err != nil {
			return err
		}
		if err := set.Attach(m, w); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}
