package sft

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
)

// TestTune runs every method a few steps on stories260K and the Alpaca
// slice: the loss on the same batch falls and the base is left alone
// where the method says so.
func TestTune(t *testing.T) {
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("alpaca")
	e := &Encoder{Tok: tok, Template: tmpl, Ctx: 256, Overflow: Split}
	samples, bad, err := e.LoadAll([]string{"testdata/alpaca_en.json", "testdata/sharegpt.json"}, false)
	if err != nil || bad != 0 {
		t.Fatal(err)
	}
	samples = samples[:4]
	for _, c := range []struct {
		opt Options
	}{
		{Options{Method: Full, LR: 3e-3}},
		{Options{Method: LoRA, LR: 1e-2, LoRA: lora.Config{Rank: 8, Alpha: 16, Targets: lora.Modules}}},
		{Options{Method: QLoRA, LR: 1e-2, LoRA: lora.Config{Rank: 8, Alpha: 16, Dropout: 0.05, Targets: []string{"q", "k", "v", "o"}}}},
		{Options{Method: QLoRA, BaseType: tensor.Q8_0, LR: 1e-2, LoRA: lora.Config{Rank: 4, Alpha: 8, RSLoRA: true, Targets: []string{"q", "v"}}}},
		{Options{Method: Embed, LR: 1e-2, EmbedTensors: []string{"embed"}}},
		{Options{Method: Embed, LR: 1e-2, EmbedTensors: []string{"embed"}, EmbedLoRA: true, LoRA: lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q", "v"}}}},
		{Options{Method: Adapter, LR: 1e-2, PrefixLen: 10, PrefixLayers: 3}},
	} {
		o := c.opt
		if testing.Short() && (o.Method == QLoRA || o.Method == Embed) {
			continue
		}
		m, _, err := checkpoint.Default()
		if err != nil {
			t.Fatal(err)
		}
		o.Steps, o.Batch, o.Seed = 12, 4, 1
		res, err := Tune(m, samples, o)
		if err != nil {
			t.Fatalf("%s: %v", o.Method, err)
		}
		first, last := res.Losses[0], res.Losses[len(res.Losses)-1]
		if !(last < first) {
			t.Errorf("%s: loss %.3f → %.3f did not fall", o.Method, first, last)
		}
		if (o.Method == LoRA || o.Method == QLoRA) && res.Trainable != res.Adapters.Count() {
			t.Errorf("%s: %d trainable, the adapters have %d", o.Method, res.Trainable, res.Adapters.Count())
		}
		t.Logf("%s: loss %.3f → %.3f, %d trainable", o.Method, first, last, res.Trainable)
	}
}

// TestResumeIsExact: a LoRA run with dropout stopped after 3 steps and
// resumed gives the losses and adapters of the run that did not stop.
func TestResumeIsExact(t *testing.T) {
	_, tok, _ := checkpoint.Default()
	tmpl, _ := chat.Lookup("vicuna")
	e := &Encoder{Tok: tok, Template: tmpl, Ctx: 256, Overflow: Split}
	samples, _, err := e.LoadAll([]string{"testdata/sharegpt.json", "testdata/openai.jsonl"}, false)
	if err != nil {
		t.Fatal(err)
	}
	opt := func(dir string, steps int, resume bool) Options {
		return Options{Method: LoRA, LR: 1e-2, Steps: 6, Batch: 3, Seed: 4, Dir: dir, SaveEvery: steps, Resume: resume,
			LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"q", "v", "down"}}}
	}
	m, _, _ := checkpoint.Default()
	whole, err := Tune(m, samples, opt(t.TempDir(), 0, false))
	if err != nil {
		t.Fatal(err)
	}
	// a run that checkpointed at step 3 and died before its last
	dir := t.TempDir()
	m1, _, _ := checkpoint.Default()
	if _, err := Tune(m1, samples, opt(dir, 3, false)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "step-6")); err != nil {
		t.Fatal(err)
	}
	m2, _, _ := checkpoint.Default()
	rest, err := Tune(m2, samples, opt(dir, 3, true))
	if err != nil {
		t.Fatal(err)
	}
	if rest.Start != 3 || len(rest.Losses) != 3 {
		t.Fatalf("resumed at %d with %d steps", rest.Start, len(rest.Losses))
	}
	for i, l := range rest.Losses {
		if l != whole.Losses[3+i] {
			t.Errorf("step %d: loss %v resumed, %v straight", 4+i, l, whole.Losses[3+i])
		}
	}
	for i, a := range rest.Adapters.Adapters {
		b := whole.Adapters.Adapters[i]
		for j := range a.B {
			if a.B[j] != b.B[j] {
				t.Fatalf("adapter %d differs after resuming", i)
			}
		}
	}
}
