package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
)

// TestLoRAOtherBase checks that an adapter herd sft trained on one model
// is refused on another of the same shapes (before, it was applied
// without a word), by herd run and herd merge, with a message naming the
// base and the flag that forces it; and that it still applies to its own
// base, in both of herd's adapter files.
func TestLoRAOtherBase(t *testing.T) {
	dir := t.TempDir()
	adapter := filepath.Join(dir, "adapter")
	if _, se, err := herd(t, "", "sft", "--method", "lora", "--data", "../../sft/testdata/alpaca_en.json", "--steps", "2",
		"--batch", "2", "--quiet", "-o", adapter); err != nil {
		t.Fatalf("sft: %v\n%s", err, se)
	}
	// another model of the same shapes: the embedded one with other norms
	m, tok, err := checkpoint.Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.OutNorm {
		m.OutNorm[i] *= 1.5
	}
	other := filepath.Join(dir, "other.gguf")
	if err := checkpoint.SaveGGUF(other, m, tok, checkpoint.SaveOptions{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{adapter, filepath.Join(adapter, "adapter.gguf")} {
		if _, se, err := herd(t, "", "run", "--lora", a, "-n", "4", "--temp", "0", "-p", "Once"); err != nil {
			t.Errorf("%s on its own base: %v\n%s", a, err, se)
		}
		_, _, err := herd(t, "", "run", other, "--lora", a, "-n", "4", "--temp", "0", "-p", "Once")
		if err == nil || !strings.Contains(err.Error(), "trained on stories260K (embedded)") || !strings.Contains(err.Error(), "--lora-any-base") {
			t.Errorf("%s on another base: %v, want a refusal naming the base and --lora-any-base", a, err)
		}
		if _, se, err := herd(t, "", "run", other, "--lora", a, "--lora-any-base", "-n", "4", "--temp", "0", "-p", "Once"); err != nil {
			t.Errorf("%s forced onto another base: %v\n%s", a, err, se)
		}
	}
	_, _, err = herd(t, "", "merge", other, "--lora", adapter, "-o", filepath.Join(dir, "merged.gguf"))
	if err == nil || !strings.Contains(err.Error(), "--lora-any-base") {
		t.Errorf("merge into another base: %v", err)
	}
	if _, se, err := herd(t, "", "merge", other, "--lora", adapter, "--lora-any-base", "-o", filepath.Join(dir, "merged.gguf")); err != nil {
		t.Errorf("forced merge: %v\n%s", err, se)
	}
}
