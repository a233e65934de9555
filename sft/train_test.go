package sft

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/internal/testutil"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
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

// testSamples encodes the test data's conversations for stories260K.
func testSamples(t *testing.T) []Sample {
	t.Helper()
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("vicuna")
	e := &Encoder{Tok: tok, Template: tmpl, Ctx: 256, Overflow: Split}
	samples, _, err := e.LoadAll([]string{"testdata/sharegpt.json", "testdata/openai.jsonl"}, false)
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

// trained lists what a run trained: its adapters' matrices, or every
// weight of the model it tuned.
func trained(res *Result) []autograd.Param {
	if res.Adapters != nil {
		return res.Adapters.Params()
	}
	return res.Model.TrainParams(res.Model.NewGrads())
}

// readMetrics parses a metrics.jsonl file.
func readMetrics(t *testing.T, path string) []train.Metric {
	t.Helper()
	return testutil.ReadJSONL[train.Metric](t, path)
}

// TestResumeIsExact: a run stopped after 3 steps and resumed gives, bit
// for bit, the losses, validation losses and weights of the run that did
// not stop (LoRA with dropout; full fine-tuning, packed, with
// recomputation; both evaluating every 2 steps), and its metrics.jsonl has
// each step once with the straight run's loss and, at steps 2, 4 and 6,
// val loss; loss.png is a plot.
func TestResumeIsExact(t *testing.T) {
	samples := testSamples(t)
	for _, base := range []Options{
		{Method: LoRA, LR: 1e-2, LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"q", "v", "down"}}},
		{Method: Full, LR: 1e-3, Pack: 256, Recompute: true, WeightDecay: 0.1},
	} {
		opt := func(dir string, every int, resume bool) Options {
			o := base
			o.Steps, o.Batch, o.Seed, o.Dir, o.SaveEvery, o.Resume = 6, 3, 4, dir, every, resume
			o.Val, o.EvalEvery = samples[len(samples)-2:], 2
			return o
		}
		m, _, _ := checkpoint.Default()
		straight := t.TempDir()
		whole, err := Tune(m, samples, opt(straight, 0, false))
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
			t.Fatalf("%s: resumed at %d with %d steps", base.Method, rest.Start, len(rest.Losses))
		}
		for i, l := range rest.Losses {
			if l != whole.Losses[3+i] {
				t.Errorf("%s: step %d: loss %v resumed, %v straight", base.Method, 4+i, l, whole.Losses[3+i])
			}
			if v, w := rest.ValLosses[i], whole.ValLosses[3+i]; v != w && !(math.IsNaN(v) && math.IsNaN(w)) {
				t.Errorf("%s: step %d: val loss %v resumed, %v straight", base.Method, 4+i, v, w)
			}
		}
		a, b := trained(rest), trained(whole)
		if len(a) != len(b) || len(a) == 0 {
			t.Fatalf("%s: %d trained tensors resumed, %d straight", base.Method, len(a), len(b))
		}
		for i := range a {
			if !slices.Equal(a[i].Data, b[i].Data) {
				t.Fatalf("%s: %s differs after resuming", base.Method, a[i].Name)
			}
		}
		got, want := readMetrics(t, filepath.Join(dir, train.MetricsName)), readMetrics(t, filepath.Join(straight, train.MetricsName))
		if len(got) != 6 || len(want) != 6 {
			t.Fatalf("%s: metrics.jsonl has %d lines resumed, %d straight; want 6", base.Method, len(got), len(want))
		}
		for i := range got {
			if got[i].Step != i+1 || got[i].Loss != want[i].Loss || !(got[i].TokensPerSec > 0) || !(got[i].LR > 0) || !(got[i].GradNorm > 0) {
				t.Errorf("%s: metrics line %d: %+v resumed, %+v straight", base.Method, i+1, got[i], want[i])
			}
			g, w := got[i].ValLoss, want[i].ValLoss
			if evaluated := (i+1)%2 == 0; (g != nil) != evaluated || (w != nil) != evaluated || (g != nil && (*g != *w || !(*g > 0))) {
				t.Errorf("%s: metrics line %d: val loss %v resumed, %v straight", base.Method, i+1, g, w)
			}
		}
		for _, d := range []string{dir, straight} {
			f, err := os.Open(filepath.Join(d, train.PlotName))
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(f)
			f.Close()
			if err != nil || img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
				t.Errorf("%s: loss.png: %v", base.Method, err)
			}
		}
	}
}

// lossAlone is the summed cross-entropy of s's learned tokens and their
// count, s run by itself through the model without a tape (float64 sums).
func lossAlone(t *testing.T, m *llama.Model, tokens, targets []int) (float64, int) {
	t.Helper()
	var st llama.State
	out, err := m.ForwardBatch(&st, []llama.Seq{{Tokens: tokens, All: true}})
	if err != nil {
		t.Fatal(err)
	}
	v := m.Config.VocabSize
	var sum float64
	n := 0
	for i, tg := range targets {
		if tg < 0 {
			continue
		}
		row := out[0][i*v : (i+1)*v]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = max(mx, float64(x))
		}
		var z float64
		for _, x := range row {
			z += math.Exp(float64(x) - mx)
		}
		sum += mx + math.Log(z) - float64(row[tg])
		n++
	}
	return sum, n
}

// TestPackKeepsExamplesApart: one packed row of four examples has the
// loss of the four run one by one (attention stays within each example,
// each from position 0), not the loss of their concatenation as one
// sequence; a packed run's rows hold whole examples up to the length.
func TestPackKeepsExamplesApart(t *testing.T) {
	samples := testSamples(t)[:4]
	total := 0
	for _, s := range samples {
		total += len(s.Tokens)
	}
	m, _, _ := checkpoint.Default()
	res, err := Tune(m, samples, Options{Method: LoRA, LR: 1e-3, Steps: 1, Batch: 1, Pack: total, Seed: 2,
		LoRA: lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q"}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tokens != int64(total) {
		t.Fatalf("the packed row held %d tokens, the four examples %d", res.Tokens, total)
	}
	base, _, _ := checkpoint.Default()
	var sum float64
	var n int
	var cat, catTargets []int
	for _, s := range samples {
		ls, ln := lossAlone(t, base, s.Tokens, s.Targets)
		sum, n = sum+ls, n+ln
		cat, catTargets = append(cat, s.Tokens...), append(catTargets, s.Targets...)
	}
	alone := sum / float64(n)
	if math.Abs(res.Losses[0]-alone) > 1e-5*alone {
		t.Errorf("packed row loss %.7f, the examples alone %.7f", res.Losses[0], alone)
	}
	cs, cn := lossAlone(t, base, cat, catTargets)
	if crossed := cs / float64(cn); math.Abs(crossed-alone) < 1e-3 {
		t.Errorf("one concatenated sequence has the loss %.7f of the separate examples %.7f: the test cannot tell them apart", crossed, alone)
	}

	// rows of at most 300 tokens, whole examples each
	all := testSamples(t)
	b := newBatcher(all, Options{Batch: 2, Pack: 300, Seed: 1})
	seen := 0
	for range 5 {
		rowTokens, rows := 0, 0
		for _, i := range b.next() {
			if rowTokens+len(all[i].Tokens) > 300 {
				rows, rowTokens = rows+1, 0
			}
			rowTokens += len(all[i].Tokens)
			seen++
		}
		if rows+1 > 2 {
			t.Errorf("a step of 2 packed rows of 300 tokens needs %d rows", rows+1)
		}
	}
	if seen <= 10 {
		t.Errorf("5 steps of 2 packed rows took %d examples: packing packs nothing", seen)
	}
	if _, err := Tune(base, all, Options{Method: LoRA, Pack: 8, LoRA: lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q"}}}); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("a sample longer than the packed row: %v", err)
	}
}

// TestDropoutUnderRecompute: LoRA with dropout trains bit for bit the same
// with and without recomputation (the recomputed block draws the masks of
// its first pass), and the dropout does drop (the run differs from one
// without it).
func TestDropoutUnderRecompute(t *testing.T) {
	samples := testSamples(t)
	run := func(dropout float64, recompute bool) *Result {
		m, _, _ := checkpoint.Default()
		res, err := Tune(m, samples, Options{Method: LoRA, LR: 1e-2, Steps: 3, Batch: 3, Seed: 5, Recompute: recompute,
			LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: dropout, Targets: lora.Modules}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	plain, rec, none := run(0.2, false), run(0.2, true), run(0, false)
	if !slices.Equal(plain.Losses, rec.Losses) {
		t.Errorf("losses %v with recomputation, %v without", rec.Losses, plain.Losses)
	}
	a, b := trained(rec), trained(plain)
	for i := range a {
		if !slices.Equal(a[i].Data, b[i].Data) {
			t.Fatalf("%s differs with recomputation", a[i].Name)
		}
	}
	if slices.Equal(plain.Losses[1:], none.Losses[1:]) {
		t.Error("dropout 0.2 trains as dropout 0")
	}
	for _, a := range rec.Adapters.Adapters {
		if a.Train {
			t.Fatal("the tuned adapters are left in training mode")
		}
	}
}

// TestMemoryPrediction: the predicted peak counts the activations of the
// longest batch (llama.ActivationBytes plus the adapters' products and
// dropout masks), 16 bytes per trainable weight and the base's weights;
// recomputation predicts less.
func TestMemoryPrediction(t *testing.T) {
	samples := testSamples(t)
	lens := make([]int, len(samples))
	for i, s := range samples {
		lens[i] = len(s.Tokens)
	}
	slices.Sort(lens)
	longest := lens[len(lens)-1] + lens[len(lens)-2]
	var mem [2]Memory
	for i, recompute := range []bool{false, true} {
		m, _, _ := checkpoint.Default()
		res, err := Tune(m, samples, Options{Method: LoRA, LR: 1e-3, Steps: 1, Batch: 2, Recompute: recompute, LimitMemory: true,
			LoRA: lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"q", "down"}}})
		if err != nil {
			t.Fatal(err)
		}
		c, p := m.Config, res.Memory
		adapters := int64(longest) * int64(c.NLayers) * (2*4*4 + int64(c.Dim) + int64(c.FFNDim))
		if p.Tokens != longest || p.Weights != m.WeightBytes() || p.State != 16*res.Trainable ||
			p.Activations != llama.ActivationBytes(c, longest, recompute)+adapters {
			t.Errorf("recompute=%v: predicted %+v for the %d longest positions, %d trainable", recompute, p, longest, res.Trainable)
		}
		if p.Bound() != (p.Weights+p.Copies+p.Activations+p.State)*11/10 {
			t.Errorf("bound %d of %+v", p.Bound(), p)
		}
		mem[i] = p
	}
	if mem[1].Activations >= mem[0].Activations {
		t.Error("recomputation predicts no saving")
	}
}
