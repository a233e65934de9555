package sft

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
)

// Issue 21, item 2: full fine-tuning with a learning rate of 1e4 and no
// clipping saturates the model (loss at ln V, zero gradient); Tune stops
// with the divergence error as pretraining does, instead of returning a
// model that generates NaN, and keeps no checkpoint of it.
func TestTuneDivergenceStops(t *testing.T) {
	samples := testSamples(t)
	m, _, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	_, err = Tune(m, samples, Options{Method: Full, LR: 1e4, Steps: 6, Batch: 2, Seed: 1, Dir: dir, SaveEvery: 1})
	if err == nil || !strings.Contains(err.Error(), "diverged") || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("error %v", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "step-*")); len(ents) != 0 {
		t.Errorf("checkpoints of a diverged model: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dir, "metrics.jsonl")); err != nil {
		t.Error(err)
	}
}
