package convert

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfig feeds arbitrary bytes as config.json (LLaMA/Baichuan and
// Falcon readers) and index.json: no panic, and an accepted config is
// valid.
func FuzzConfig(f *testing.F) {
	for _, d := range []string{"llama_st", "baichuan13_bin", "falcon40_st", "falcon7_bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", d, "config.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, _ := os.ReadFile("testdata/llama_sharded/model.safetensors.index.json")
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "config.json")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, c, err := readHFConfig(p); err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted an invalid config: %v", err)
			}
		}
		if _, c, err := readFalconConfig(p); err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted an invalid Falcon config: %v", err)
			}
		}
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), data, 0o644)
		w := &weights{byName: map[string]*srcTensor{}}
		w.tryLayout(dir, "model.safetensors", w.openSafetensors)
		w.close()
	})
}
