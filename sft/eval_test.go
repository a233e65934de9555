package sft

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
)

// meanByHand is the mean cross-entropy of m over the learned tokens of
// samples, each run alone through the model and its log-softmax taken in
// float64 (lossAlone).
func meanByHand(t *testing.T, m *llama.Model, samples []Sample) float64 {
	t.Helper()
	var sum float64
	n := 0
	for _, s := range samples {
		ls, ln := lossAlone(t, m, s.Tokens, s.Targets)
		sum, n = sum+ls, n+ln
	}
	return sum / float64(n)
}

// close is |got-want| within a relative 1e-5.
func close(got, want float64) bool { return math.Abs(got-want) <= 1e-5*math.Abs(want) }

// TestEvaluatorByHand: the evaluator's loss over some or all of its
// batches, packed or not, is the mean masked cross-entropy computed by
// hand from the model's logits.
func TestEvaluatorByHand(t *testing.T) {
	samples := testSamples(t)
	m, _, _ := checkpoint.Default()
	want := meanByHand(t, m, samples)
	for _, c := range []struct{ batch, pack int }{{2, 0}, {1, 0}, {100, 0}, {2, 300}} {
		e := newEvaluator(samples, c.batch, c.pack)
		var seen []int
		for _, b := range e.batches {
			seen = append(seen, b...)
			rows, used := 1, 0
			for _, i := range b {
				if n := len(samples[i].Tokens); used > 0 && (c.pack == 0 || used+n > c.pack) {
					rows, used = rows+1, n
				} else {
					used += n
				}
			}
			if rows > c.batch {
				t.Errorf("batch %d pack %d: a batch of %d rows", c.batch, c.pack, rows)
			}
		}
		if len(seen) != len(samples) || !slices.IsSorted(seen) || seen[len(seen)-1] != len(samples)-1 {
			t.Fatalf("batch %d pack %d: the batches cover %v of %d samples", c.batch, c.pack, seen, len(samples))
		}
		if _, err := e.layout(m, nil); err != nil {
			t.Fatal(err)
		}
		got, n, err := e.loss(m, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !close(got, want) || n != e.learned {
			t.Errorf("batch %d pack %d: val loss %.7f over %d tokens, by hand %.7f over %d", c.batch, c.pack, got, n, want, e.learned)
		}
		first := e.batches[0]
		got, _, err = e.loss(m, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		if w := meanByHand(t, m, samples[first[0]:first[len(first)-1]+1]); !close(got, w) {
			t.Errorf("batch %d pack %d: the first batch's val loss %.7f, by hand %.7f", c.batch, c.pack, got, w)
		}
	}
}

// TestValLoss: every method's validation loss before the first step (of
// its first batch) and after the last (of all) is the mean masked
// cross-entropy by hand, of the base and of the tuned model (with LoRA dropout on in training: the evaluation runs
// without it); the steps between evaluate every EvalEvery.
func TestValLoss(t *testing.T) {
	samples := testSamples(t)
	tr, val := samples[:len(samples)-3], samples[len(samples)-3:]
	base, _, _ := checkpoint.Default()
	start := meanByHand(t, base, val[:2]) // the first batch: EvalBatches 1
	for _, o := range []Options{
		{Method: LoRA, LR: 1e-2, LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: 0.2, Targets: []string{"q", "v", "down"}}},
		{Method: Full, LR: 1e-3},
		{Method: Adapter, LR: 1e-2, PrefixLen: 4, PrefixLayers: 2},
		{Method: Embed, LR: 1e-2, EmbedTensors: []string{"embed"}, EmbedLoRA: true, LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"q"}}},
	} {
		o.Steps, o.Batch, o.Seed, o.Val, o.EvalEvery, o.EvalBatches = 5, 2, 3, val, 2, 1
		m, _, _ := checkpoint.Default()
		res, err := Tune(m, tr, o)
		if err != nil {
			t.Fatalf("%s: %v", o.Method, err)
		}
		if !close(res.StartValLoss, start) {
			t.Errorf("%s: val loss %.7f before the first step, the base's by hand %.7f", o.Method, res.StartValLoss, start)
		}
		end := meanByHand(t, res.Model, val)
		if !close(res.ValLoss, end) {
			t.Errorf("%s: val loss %.7f after the last step, the tuned model's by hand %.7f", o.Method, res.ValLoss, end)
		}
		if p := res.Memory; p.Eval <= 0 || p.Bound() != (p.Weights+p.Copies+p.Activations+p.State+p.Eval)*11/10 {
			t.Errorf("%s: predicted memory %+v counts no validation pass", o.Method, p)
		}
		if end == start {
			t.Errorf("%s: the tuned model has the base's val loss", o.Method)
		}
		for i, v := range res.ValLosses {
			if evaluated := i == 1 || i == 3 || i == 4; evaluated == math.IsNaN(v) {
				t.Errorf("%s: step %d: val loss %v", o.Method, i+1, v)
			}
		}
		if len(res.ValLosses) != 5 || res.ValLosses[4] != res.ValLoss {
			t.Errorf("%s: val losses %v, last %v", o.Method, res.ValLosses, res.ValLoss)
		}
		t.Logf("%s: val loss %.4f → %.4f", o.Method, res.StartValLoss, res.ValLoss)
	}
}

// TestEvalKeepsTrajectory: a run that evaluates every step trains bit for
// bit as one that does not (LoRA with dropout; full fine-tuning, packed,
// with recomputation), and leaves the adapters out of training mode.
func TestEvalKeepsTrajectory(t *testing.T) {
	samples := testSamples(t)
	for _, base := range []Options{
		{Method: LoRA, LR: 1e-2, LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: 0.2, Targets: lora.Modules}},
		{Method: Full, LR: 1e-3, Pack: 256, Recompute: true},
	} {
		run := func(val []Sample) *Result {
			o := base
			o.Steps, o.Batch, o.Seed, o.Val, o.EvalEvery = 4, 2, 7, val, 1
			m, _, _ := checkpoint.Default()
			res, err := Tune(m, samples, o)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		plain, evald := run(nil), run(samples[:3])
		if !slices.Equal(plain.Losses, evald.Losses) {
			t.Errorf("%s: losses %v evaluating, %v not", base.Method, evald.Losses, plain.Losses)
		}
		a, b := trained(evald), trained(plain)
		for i := range a {
			if !slices.Equal(a[i].Data, b[i].Data) {
				t.Fatalf("%s: %s differs when evaluating", base.Method, a[i].Name)
			}
		}
		for i, v := range evald.ValLosses {
			if math.IsNaN(v) || !math.IsNaN(plain.ValLosses[i]) {
				t.Errorf("%s: step %d: val loss %v evaluating, %v not", base.Method, i+1, v, plain.ValLosses[i])
			}
		}
		if evald.Adapters != nil {
			for _, a := range evald.Adapters.Adapters {
				if a.Train {
					t.Fatal("the tuned adapters are left in training mode")
				}
			}
		}
	}
}

// TestMixSplit: a validation split holds out, by seed, the rounded fraction
// of each file's examples (every window of a split example on one side),
// none of which the training samples take, even upsampled; the same seed
// holds out the same examples, another seed others.
func TestMixSplit(t *testing.T) {
	_, tok, _ := checkpoint.Default()
	tmpl, _ := chat.Lookup("vicuna")
	split := func(spec string, frac float64, seed uint64) (*Encoder, []Sample, []Sample) {
		t.Helper()
		e := &Encoder{Tok: tok, Template: tmpl, Ctx: 64, Overflow: Split}
		srcs, err := ParseSources(spec)
		if err != nil {
			t.Fatal(err)
		}
		tr, val, bad, err := e.MixSplit(srcs, false, seed, frac)
		if err != nil || bad != 0 {
			t.Fatalf("%s: %v", spec, err)
		}
		return e, tr, val
	}
	wheres := func(ss []Sample) []string {
		var w []string
		for _, s := range ss {
			if len(w) == 0 || w[len(w)-1] != s.Where {
				w = append(w, s.Where)
			}
		}
		return w
	}
	all, whole, _ := split("testdata/sharegpt.json,testdata/alpaca_en.json", 0, 1)
	if all.Stats.Held != 0 || all.Stats.Split == 0 {
		t.Fatalf("no split: %+v (the test wants examples split into windows)", all.Stats)
	}
	e, tr, val := split("testdata/sharegpt.json,testdata/alpaca_en.json:20", 0.25, 1)
	// 6 conversations and 8 Alpaca rows: 2 (1.5 rounded) and 2 held out
	held := wheres(val)
	kept := 0 // the conversations' samples not held out, all trained on
	for _, s := range whole {
		if strings.HasPrefix(s.Where, "testdata/sharegpt.json:") && !slices.Contains(held, s.Where) {
			kept++
		}
	}
	if e.Stats.Held != 4 || e.Stats.HeldSamples != len(val) || len(tr) != kept+20 {
		t.Errorf("held %d examples (%d samples) of 14; %d val samples, %d training, want %d", e.Stats.Held, e.Stats.HeldSamples, len(val), len(tr), kept+20)
	}
	if len(held) != 4 {
		t.Errorf("val samples from %v", held)
	}
	for _, s := range tr {
		if slices.Contains(held, s.Where) {
			t.Errorf("%s is trained on and held out", s.Where)
		}
	}
	// every window of a held-out example is held out, once
	n := 0
	for _, s := range whole {
		if slices.Contains(held, s.Where) {
			n++
		}
	}
	if n != len(val) {
		t.Errorf("the held-out examples have %d samples, the split %d", n, len(val))
	}
	_, tr2, val2 := split("testdata/sharegpt.json,testdata/alpaca_en.json:20", 0.25, 1)
	if !slices.Equal(wheres(val2), held) || !slices.EqualFunc(tr, tr2, func(a, b Sample) bool { return a.Where == b.Where }) {
		t.Error("the same seed splits differently")
	}
	if _, _, val3 := split("testdata/sharegpt.json,testdata/alpaca_en.json:20", 0.25, 2); slices.Equal(wheres(val3), held) {
		t.Error("seeds 1 and 2 hold out the same examples")
	}
	e = &Encoder{Tok: tok, Template: tmpl, Ctx: 256}
	for _, frac := range []float64{1, -0.1, math.NaN()} {
		if _, _, _, err := e.MixSplit([]Source{{Path: "testdata/openai.jsonl"}}, false, 1, frac); err == nil {
			t.Errorf("split %g: no error", frac)
		}
	}
	if _, _, _, err := e.MixSplit([]Source{{Path: "testdata/dolly.jsonl"}}, false, 1, 0.01); err != nil {
		t.Errorf("split 0.01 of 2 examples: %v", err)
	}
}
