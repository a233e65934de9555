package main

import (
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/spf13/pflag"
)

// addKVFlag registers --cache-type f16|f32, the element type of the KV cache
// (llama.cpp's --cache-type-k/-v; F16 by default, as there).
func addKVFlag(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "cache-type", "f16", "KV cache element type: f16 (half the memory, as llama.cpp) or f32")
}

// applyKVType makes the models keep their KV caches in the type s names.
func applyKVType(s string, models ...*llama.Model) error {
	dt, err := llama.ParseKVType(s)
	if err != nil {
		return err
	}
	for _, m := range models {
		m.KVF32 = dt == tensor.F32
	}
	return nil
}
