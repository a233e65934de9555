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

// addNoMmapFlag registers --no-mmap (llama.Model.NoMmap, as llama.cpp's).
func addNoMmapFlag(f *pflag.FlagSet, p *bool) {
	f.BoolVar(p, "no-mmap", false, "copy the weights read in place from the file's mapping (BF16, F32, formats not repacked) into memory with huge pages at load: a slower start, and faster decoding where the file's 4 KiB pages hold it back")
}

// packWeights rearranges the models' Q4_0, Q8_0, Q4_K, Q6_K and F16 matrices into the
// layout the CPU's kernels multiply fastest (llama.Model.PackForInference);
// the commands that only run models forward call it once any adapters are
// attached.
func packWeights(models ...*llama.Model) {
	for _, m := range models {
		m.PackForInference()
	}
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
