package sft

import (
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
