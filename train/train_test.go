package train

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/internal/testutil"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
)

// AdamW against a float64 transcription of the update rule.
func TestAdamWMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	mk := func(n int, decay bool) autograd.Param {
		p := autograd.Param{Name: "p", Data: make([]float32, n), Grad: make([]float32, n), Decay: decay}
		for i := range p.Data {
			p.Data[i] = float32(r.NormFloat64())
		}
		return p
	}
	params := []autograd.Param{mk(40000, true), mk(7, false)}
	ref := make([][]float64, len(params))
	m64, v64 := make([][]float64, len(params)), make([][]float64, len(params))
	for i, p := range params {
		for _, x := range p.Data {
			ref[i] = append(ref[i], float64(x))
		}
		m64[i], v64[i] = make([]float64, len(p.Data)), make([]float64, len(p.Data))
	}
	const b1, b2, eps, wd = 0.9, 0.95, 1e-8, 0.1
	o := NewAdamW(params, b1, b2, eps, wd)
	for step := 1; step <= 3; step++ {
		lr := 1e-2 * float64(step)
		for i, p := range params {
			for j := range p.Grad {
				p.Grad[j] = float32(r.NormFloat64())
				g := float64(p.Grad[j])
				m64[i][j] = b1*m64[i][j] + (1-b1)*g
				v64[i][j] = b2*v64[i][j] + (1-b2)*g*g
				mh := m64[i][j] / (1 - math.Pow(b1, float64(step)))
				vh := v64[i][j] / (1 - math.Pow(b2, float64(step)))
				d := 0.0
				if p.Decay {
					d = wd * ref[i][j]
				}
				ref[i][j] -= lr * (mh/(math.Sqrt(vh)+eps) + d)
			}
		}
		o.Update(params, lr)
	}
	for i, p := range params {
		for j, x := range p.Data {
			if math.Abs(float64(x)-ref[i][j]) > 1e-5 {
				t.Fatalf("param %d[%d] = %g, reference %g", i, j, x, ref[i][j])
			}
		}
	}
	if o.Step != 3 {
		t.Errorf("step %d", o.Step)
	}
}

func TestSchedule(t *testing.T) {
	s := Schedule{Kind: "cosine", LR: 1, MinLR: 0.1, Warmup: 10, Steps: 110}
	for _, c := range []struct {
		step int
		want float64
	}{{0, 0.1}, {4, 0.5}, {9, 1}, {10, 1}, {60, 0.1 + 0.45*(1+math.Cos(math.Pi*50/99))}, {109, 0.1}, {500, 0.1}} {
		if got := s.At(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("cosine step %d: %g, want %g", c.step, got, c.want)
		}
	}
	s.Kind = "constant"
	if s.At(3) != 0.4 || s.At(50) != 1 {
		t.Errorf("constant: %g, %g", s.At(3), s.At(50))
	}
	for _, bad := range []Schedule{{Kind: "linear", LR: 1}, {Kind: "cosine", LR: 0}, {Kind: "cosine", LR: 1, MinLR: 2}, {Kind: "constant", LR: 1, Warmup: -1}} {
		if bad.Check() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestGradNormAndClip(t *testing.T) {
	params := []autograd.Param{{Grad: make([]float32, 200000)}, {Grad: []float32{3, 4}}}
	for i := range params[0].Grad {
		params[0].Grad[i] = float32(i%3) * 0.001
	}
	var want float64
	for _, p := range params {
		for _, g := range p.Grad {
			want += float64(g) * float64(g)
		}
	}
	want = math.Sqrt(want)
	var first float64
	for _, n := range []int{1, 2, 3} {
		kernels.SetThreads(n)
		got := GradNorm(params)
		if math.Abs(got-want) > 1e-9*want {
			t.Errorf("threads %d: norm %g, want %g", n, got, want)
		}
		if n > 1 && got != first {
			t.Errorf("threads %d: norm %v differs from one thread's %v", n, got, first)
		}
		first = got
	}
	kernels.SetThreads(0)
	ScaleGrads(params, 0.5)
	if params[1].Grad[0] != 1.5 {
		t.Error("ScaleGrads")
	}
}

func TestRecipes(t *testing.T) {
	files, _ := filepath.Glob("recipes/*.yaml")
	if len(files) < 2 {
		t.Fatalf("recipes: %v", files)
	}
	for _, f := range files {
		r, err := LoadRecipe(f)
		if err != nil {
			t.Fatal(err)
		}
		r.Data, r.Out = "d", "o"
		if err := r.Check(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if _, err := llama.LookupPreset(r.Preset); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "typo.yaml"), []byte("preset: stories260k\nlearning_rate: 1\n"), 0o644)
	if _, err := LoadRecipe(filepath.Join(dir, "typo.yaml")); err == nil || !strings.Contains(err.Error(), "learning_rate") {
		t.Errorf("a misspelt key: %v", err)
	}
	r := Defaults()
	r.Preset, r.Data, r.Out = "stories260k", "d", "o"
	for _, edit := range []func(*Recipe){
		func(r *Recipe) { r.Init = "x" }, func(r *Recipe) { r.Preset = "" }, func(r *Recipe) { r.Batch = 0 },
		func(r *Recipe) { r.Beta2 = 1 }, func(r *Recipe) { r.Schedule = "step" }, func(r *Recipe) { r.Keep = 0 },
	} {
		b := r
		edit(&b)
		if b.Check() == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

// prepared tokenizes testdata/tinystories.txt with tok512 into a data
// directory (paragraph documents, one in eight for validation).
func prepared(t *testing.T) string {
	t.Helper()
	_, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	_, err = data.Prepare(data.Recipe{
		Sources:     []data.Source{{Name: "ts", Paths: []string{"testdata/tinystories.txt"}, Split: "paragraph"}},
		ValFraction: 0.125, Seed: 1,
	}, tok, dir, data.PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func tiny(dataDir, out string) Recipe {
	r := Defaults()
	r.Preset, r.Data, r.Out = "stories260k", dataDir, out
	r.Steps, r.Batch, r.Seq, r.Accum = 16, 4, 32, 2
	r.LR, r.Warmup, r.EvalEvery, r.EvalBatches, r.SaveEvery, r.Keep = 3e-3, 3, 4, 2, 4, 10
	r.Threads = 2
	return r
}

func readMetrics(t *testing.T, path string) []Metric {
	t.Helper()
	return testutil.ReadJSONL[Metric](t, path)
}

func TestPretrain(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	r := tiny(dir, out)
	var steps []Progress
	var log bytes.Buffer
	res, err := Pretrain(r, Options{Log: &log, OnStep: func(p Progress) { steps = append(steps, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 16 || res.Steps != 16 {
		t.Fatalf("%d steps reported", len(steps))
	}
	if !(steps[15].Loss < steps[0].Loss-0.3) {
		t.Errorf("the loss went from %.3f to %.3f", steps[0].Loss, steps[15].Loss)
	}
	if !(res.ValLoss < res.StartValLoss) {
		t.Errorf("val loss %g at the end, %g at the start", res.ValLoss, res.StartValLoss)
	}
	if math.IsNaN(res.ValLoss) || math.IsNaN(steps[3].ValLoss) || !math.IsNaN(steps[2].ValLoss) {
		t.Errorf("validation: result %g, step 4 %g, step 3 %g", res.ValLoss, steps[3].ValLoss, steps[2].ValLoss)
	}
	if !strings.Contains(log.String(), "recipe:") || !strings.Contains(log.String(), "batch: 4") {
		t.Errorf("the effective recipe was not printed:\n%s", log.String())
	}
	ms := readMetrics(t, filepath.Join(out, MetricsName))
	if len(ms) != 16 || ms[15].Loss != steps[15].Loss || ms[3].ValLoss == nil || ms[0].TokensPerSec <= 0 {
		t.Errorf("metrics: %d lines, last %+v", len(ms), ms[len(ms)-1])
	}
	for _, f := range []string{ModelName, PlotName, LatestName, "step-00000016/" + OptimizerName, "step-00000004/" + ModelName} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	// the checkpoint is a model herd loads, with the recipe in its metadata
	m, tok, err := checkpoint.Load(res.Checkpoint, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if tok.VocabSize() != 512 {
		t.Errorf("tokenizer of %d pieces", tok.VocabSize())
	}
	f, err := gguf.Open(res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if s, _ := f.GetUint("herd.step"); s != 16 {
		t.Errorf("herd.step %d", s)
	}
	if rec, _ := f.GetString("herd.recipe"); !strings.Contains(rec, "preset: stories260k") {
		t.Errorf("herd.recipe %q", rec)
	}
	// a second run into the same directory needs --resume
	if _, err := Pretrain(r, Options{}); err == nil || !strings.Contains(err.Error(), "resume") {
		t.Errorf("a second run over a run: %v", err)
	}
}

// A run resumed from a checkpoint reaches the same losses and weights as
// the run that did not stop, bit for bit.
func TestResumeIsExact(t *testing.T) {
	dir := prepared(t)
	base := t.TempDir()
	full := filepath.Join(base, "full")
	if _, err := Pretrain(tiny(dir, full), Options{}); err != nil {
		t.Fatal(err)
	}
	// a run that stopped after step 8: its directory as it was then
	cut := filepath.Join(base, "cut")
	r := tiny(dir, cut)
	r.Steps = 16
	if err := os.MkdirAll(cut, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, filepath.Join(full, "step-00000008"), filepath.Join(cut, "step-00000008"))
	os.WriteFile(filepath.Join(cut, LatestName), []byte("step-00000008\n"), 0o644)
	ms := readMetrics(t, filepath.Join(full, MetricsName))
	var partial bytes.Buffer
	for _, m := range ms[:11] { // three steps past the checkpoint, as a killed run leaves them
		b, _ := json.Marshal(m)
		partial.Write(append(b, '\n'))
	}
	partial.WriteString(`{"step":12,"lo`) // and a line cut short
	os.WriteFile(filepath.Join(cut, MetricsName), partial.Bytes(), 0o644)

	r.Resume = true
	var log bytes.Buffer
	if _, err := Pretrain(r, Options{Log: &log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "resuming from") {
		t.Errorf("log: %s", log.String())
	}
	got := readMetrics(t, filepath.Join(cut, MetricsName))
	if len(got) != 16 {
		t.Fatalf("%d metric lines after resuming", len(got))
	}
	for i := range ms {
		if got[i].Loss != ms[i].Loss || got[i].GradNorm != ms[i].GradNorm {
			t.Errorf("step %d: loss %v / norm %v resumed, %v / %v uninterrupted", i+1, got[i].Loss, got[i].GradNorm, ms[i].Loss, ms[i].GradNorm)
		}
	}
	// the same tensors and training metadata (the recipe differs: its output directory)
	for _, f := range []string{ModelName, "step-00000016/" + OptimizerName} {
		a, err := gguf.Open(filepath.Join(full, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := gguf.Open(filepath.Join(cut, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, ta := range a.Tensors {
			tb, ok := b.Tensor(ta.Name)
			if !ok || !bytes.Equal(ta.Data, tb.Data) {
				t.Errorf("%s: tensor %s differs between the resumed and the uninterrupted run", f, ta.Name)
			}
		}
		for _, k := range []string{"herd.step", "herd.train_loss", "herd.val_loss", "herd.optimizer.step"} {
			va, _ := a.Get(k)
			vb, _ := b.Get(k)
			if va.String() != vb.String() {
				t.Errorf("%s: %s is %v resumed, %v uninterrupted", f, k, vb, va)
			}
		}
		a.Close()
		b.Close()
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
}

// A diverging run stops with a clear message and keeps its last good
// checkpoint.
func TestDivergenceStops(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	r := tiny(dir, out)
	r.LR, r.Warmup, r.GradClip, r.SaveEvery, r.Schedule, r.WeightDecay = 1e30, 0, 0, 1, "constant", 0
	_, err := Pretrain(r, Options{})
	if err == nil || !strings.Contains(err.Error(), "diverged") || !strings.Contains(err.Error(), "last good checkpoint") {
		t.Fatalf("error %v", err)
	}
	latest, lerr := latestCheckpoint(out)
	if lerr != nil || latest == "" {
		t.Fatalf("no checkpoint kept: %q %v", latest, lerr)
	}
	if !strings.Contains(err.Error(), latest) {
		t.Errorf("the error does not name %s: %v", latest, err)
	}
	m, err := llama.Open(filepath.Join(out, latest, ModelName))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
}

// Continued pretraining starts from the checkpoint's weights: its first
// loss is that of the trained model, far below a random start's.
func TestContinuedPretraining(t *testing.T) {
	dir := prepared(t)
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	init := filepath.Join(t.TempDir(), "stories260K.gguf")
	if err := checkpoint.SaveGGUF(init, m, tok, checkpoint.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	r := tiny(dir, filepath.Join(t.TempDir(), "cont"))
	r.Preset, r.Init, r.Steps, r.LR = "", init, 4, 1e-4
	var first float64
	if _, err := Pretrain(r, Options{OnStep: func(p Progress) {
		if p.Step == 1 {
			first = p.Loss
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if !(first < 2.5) { // a random model starts at ln 512 ≈ 6.2
		t.Errorf("first loss %.3f continuing from stories260K", first)
	}
}

// A fixed seed reproduces a run bit for bit (same machine, same threads);
// another seed does not.
func TestSeedReproduces(t *testing.T) {
	dir := prepared(t)
	run := func(seed uint64) []Progress {
		r := tiny(dir, filepath.Join(t.TempDir(), "run"))
		r.Steps, r.Seed = 5, seed
		var ps []Progress
		if _, err := Pretrain(r, Options{OnStep: func(p Progress) { ps = append(ps, p) }}); err != nil {
			t.Fatal(err)
		}
		return ps
	}
	a, b, c := run(7), run(7), run(8)
	for i := range a {
		if a[i].Loss != b[i].Loss || a[i].GradNorm != b[i].GradNorm {
			t.Errorf("step %d: loss %v and %v with the same seed", i+1, a[i].Loss, b[i].Loss)
		}
	}
	if a[0].Loss == c[0].Loss {
		t.Error("seeds 7 and 8 start at the same loss")
	}
}
