package align

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
)

// torchCase is the input of testdata/dpo_torch.py: a tiny model's policy
// and reference weights (GGUF names, row-major), the pairs and the loss.
type torchCase struct {
	Config     llama.Config         `json:"config"`
	Shapes     map[string][]int     `json:"shapes"`
	Pairs      []torchPair          `json:"pairs"`
	Beta       float64              `json:"beta"`
	Smoothing  float64              `json:"label_smoothing"`
	PolicyW    map[string][]float64 `json:"policy"`
	ReferenceW map[string][]float64 `json:"reference"`
}

type torchPair struct {
	Prompt   []int `json:"prompt"`
	Chosen   []int `json:"chosen"`
	Rejected []int `json:"rejected"`
}

// torchOut is what the script computed, in float64.
type torchOut struct {
	Loss            float64              `json:"loss"`
	RewardsChosen   float64              `json:"rewards_chosen"`
	RewardsRejected float64              `json:"rewards_rejected"`
	LogpsChosen     []float64            `json:"logps_chosen"`
	LogpsRejected   []float64            `json:"logps_rejected"`
	Grads           map[string][]float64 `json:"grads"`
}

const (
	torchIn  = "testdata/dpo_tiny.json"
	torchRef = "testdata/dpo_torch.json"
)

// writeTorchCase makes testdata/dpo_tiny.json (ALIGN_WRITE_TORCH_CASE=1):
// the reference is a tiny random model, the policy the same moved a little.
func writeTorchCase(t *testing.T) {
	ref := tinyModel(t, 41)
	pol, err := ref.CloneF32()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(42, 43))
	c := torchCase{Config: tinyConfig, Shapes: map[string][]int{}, PolicyW: map[string][]float64{}, ReferenceW: map[string][]float64{}, Beta: 0.1, Smoothing: 0.1}
	pp, rp := pol.TrainParams(pol.NewGrads()), ref.TrainParams(ref.NewGrads())
	for i, p := range pp {
		for j := range p.Data {
			p.Data[j] += float32(r.NormFloat64() * 0.05)
		}
		c.PolicyW[p.Name], c.ReferenceW[p.Name] = f64s(p.Data), f64s(rp[i].Data)
	}
	for name, l := range linears(ref) {
		c.Shapes[name] = []int{l[0], l[1]}
	}
	for _, s := range tinyPairs(5, 44) {
		c.Pairs = append(c.Pairs, torchPair{s.Prompt, s.Chosen, s.Rejected})
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(torchIn, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// linears maps each matrix's GGUF name to its [Out, In].
func linears(m *llama.Model) map[string][2]int {
	out := map[string][2]int{m.Embed.Name: {m.Embed.Out, m.Embed.In}, m.Output.Name: {m.Output.Out, m.Output.In}}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, w := range []struct {
			name    string
			out, in int
		}{{l.Wq.Name, l.Wq.Out, l.Wq.In}, {l.Wk.Name, l.Wk.Out, l.Wk.In}, {l.Wv.Name, l.Wv.Out, l.Wv.In}, {l.Wo.Name, l.Wo.Out, l.Wo.In},
			{l.Gate.Name, l.Gate.Out, l.Gate.In}, {l.Up.Name, l.Up.Out, l.Up.In}, {l.Down.Name, l.Down.Out, l.Down.In}} {
			out[w.name] = [2]int{w.out, w.in}
		}
	}
	return out
}

// loadWeights builds a tiny float32 model with the weights w.
func loadWeights(t *testing.T, c llama.Config, w map[string][]float64) (*llama.Model, *llama.Grads, []autograd.Param) {
	m, err := llama.Random(c, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := m.NewGrads()
	ps := m.TrainParams(g)
	for _, p := range ps {
		src, ok := w[p.Name]
		if !ok || len(src) != len(p.Data) {
			t.Fatalf("weights: %s missing or of the wrong size", p.Name)
		}
		for i, x := range src {
			p.Data[i] = float32(x)
		}
	}
	return m, g, ps
}

// DPO's loss, rewards, log-probabilities and every weight's gradient on a
// tiny model equal a PyTorch transcription (testdata/dpo_torch.py, run in
// float64) to 1e-5 relative.
func TestDPOAgainstPyTorch(t *testing.T) {
	if os.Getenv("ALIGN_WRITE_TORCH_CASE") != "" {
		writeTorchCase(t)
	}
	var c torchCase
	var want torchOut
	for _, f := range []struct {
		path string
		v    any
	}{{torchIn, &c}, {torchRef, &want}} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, f.v); err != nil {
			t.Fatalf("%s: %v", f.path, err)
		}
	}
	pol, g, params := loadWeights(t, c.Config, c.PolicyW)
	ref, _, _ := loadWeights(t, c.Config, c.ReferenceW)
	var ss []Sample
	for _, p := range c.Pairs {
		ss = append(ss, Sample{Prompt: p.Prompt, Chosen: p.Chosen, Rejected: p.Rejected, Paired: true, Where: "torch"})
	}
	d := &DPO{Policy: &Policy{Model: pol, Grads: g, Ref: ref}, Params: Params{Loss: Sigmoid, Beta: c.Beta, LabelSmoothing: c.Smoothing}, Train: ss, Batch: len(ss)}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	var tape autograd.Tape
	m, err := d.Step(&tape, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	tape.Backward()
	rel := func(got, want float64) float64 { return math.Abs(got-want) / math.Max(math.Abs(want), 1e-30) }
	n := float64(m.Count)
	for _, v := range []struct {
		what      string
		got, want float64
	}{{"loss", m.Sum / n, want.Loss}, {"rewards/chosen", m.Mean(RewardsChosen), want.RewardsChosen}, {"rewards/rejected", m.Mean(RewardsRejected), want.RewardsRejected}} {
		if rel(v.got, v.want) > 1e-5 {
			t.Errorf("%s: %.9g, PyTorch %.9g", v.what, v.got, v.want)
		}
	}
	// every log-probability, through the evaluation pass (the same batch)
	b := pairBatch(ss)
	lp, err := d.Policy.policyLogProbs(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ss {
		if rel(lp[i], want.LogpsChosen[i]) > 1e-5 || rel(lp[len(ss)+i], want.LogpsRejected[i]) > 1e-5 {
			t.Errorf("pair %d: log-probabilities %.9g %.9g, PyTorch %.9g %.9g", i, lp[i], lp[len(ss)+i], want.LogpsChosen[i], want.LogpsRejected[i])
		}
	}
	// each tensor's gradient against its largest element: 1e-5
	worstAll := 0.0
	defer func() {
		t.Logf("loss %.12g (PyTorch %.12g); worst gradient error %.3g of its tensor's largest element", m.Sum/n, want.Loss, worstAll)
	}()
	for _, p := range params {
		w := want.Grads[p.Name]
		if len(w) != len(p.Grad) {
			t.Fatalf("%s: PyTorch gradient of %d values, herd %d", p.Name, len(w), len(p.Grad))
		}
		scale, worst := 0.0, 0.0
		for i := range w {
			scale = math.Max(scale, math.Abs(w[i]))
		}
		for i := range w {
			worst = math.Max(worst, math.Abs(float64(p.Grad[i])-w[i])/scale)
		}
		worstAll = math.Max(worstAll, worst)
		if worst > 1e-5 {
			t.Errorf("%s: gradient off by %.3g of its largest element", p.Name, worst)
		}
	}
}
