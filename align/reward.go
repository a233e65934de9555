package align

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/llama"
)

// HeadName is the reward head's tensor name: Hugging Face's
// LlamaForSequenceClassification with one label calls its score layer
// "score" (a Dim → 1 linear map without bias).
const HeadName = "score.weight"

// Reward-model metric names.
const (
	Accuracy = "accuracy"
	Margin   = "margin"
)

// RewardModel is a LLaMA trunk (full, LoRA, or LoRA on a quantized base:
// Policy says which weights train) and a scalar head: the reward of a
// sequence is Head · the final normed hidden state of its last token.
// Trained on pairs with the Bradley–Terry loss −log σ(r_c − r_r − margin).
type RewardModel struct {
	Policy         *Policy // Model, Grads, Adapters, Tape, Seed (Ref unused)
	Head, HeadGrad []float32
	Train, Val     []Sample
	Batch, Accum   int
	Seed           uint64
	Log            io.Writer // receives the validation metrics of each Validate

	ord order
}

// NewHead is a head for a model of width dim, drawn as Hugging Face
// initialises a linear layer of a LLaMA (normal, standard deviation 0.02).
func NewHead(dim int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x5c0e))
	h := make([]float32, dim)
	for i := range h {
		h[i] = float32(r.NormFloat64() * 0.02)
	}
	return h
}

// HeadParam is the head as an optimizer sees it (no weight decay, as
// the trunk's gains: it is one vector).
func (r *RewardModel) HeadParam() autograd.Param {
	if r.HeadGrad == nil {
		r.HeadGrad = make([]float32, len(r.Head))
	}
	return autograd.Param{Name: HeadName, Data: r.Head, Grad: r.HeadGrad}
}

// Init checks the objective and prepares its data order.
func (r *RewardModel) Init() error {
	if len(r.Head) != r.Policy.Model.Config.Dim {
		return fmt.Errorf("reward model: a head of %d for a model of width %d", len(r.Head), r.Policy.Model.Config.Dim)
	}
	for _, ss := range [][]Sample{r.Train, r.Val} {
		for i := range ss {
			if !ss[i].Paired {
				return fmt.Errorf("%s: an unpaired sample; a reward model trains on pairs", ss[i].Where)
			}
		}
	}
	if len(r.Train) == 0 {
		return fmt.Errorf("reward model: no training pairs")
	}
	r.Batch, r.Accum = max(1, r.Batch), max(1, r.Accum)
	r.HeadParam()
	r.ord = order{n: len(r.Train), seed: r.Seed}
	return nil
}

// rmSeqs are the full sequences (prompt + response, nothing shifted) of
// every chosen then every rejected response.
func rmSeqs(ss []Sample, all bool) ([]llama.Seq, int) {
	var seqs []llama.Seq
	n := 0
	for _, pick := range []func(s *Sample) []int{func(s *Sample) []int { return s.Chosen }, func(s *Sample) []int { return s.Rejected }} {
		for i := range ss {
			t := slices.Concat(ss[i].Prompt, pick(&ss[i]))
			seqs = append(seqs, llama.Seq{Tokens: t, All: all})
			n += len(t)
		}
	}
	return seqs, n
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// Step is one micro-batch of pairs on tape, the gradient of the step's
// mean loss seeded into the hidden states and the head; the caller runs
// tape.Backward().
func (r *RewardModel) Step(tape *autograd.Tape, step, k int) (Metrics, error) {
	ss := make([]Sample, r.Batch)
	at := (step*r.Accum + k) * r.Batch
	for i := range ss {
		ss[i] = r.Train[r.ord.at(at+i)]
	}
	r.Policy.train(true, step, k)
	seqs, ntok := rmSeqs(ss, true)
	h, err := r.Policy.Model.HiddenTape(&r.Policy.st, tape, r.Policy.Grads, seqs, r.Policy.Tape)
	if err != nil {
		return Metrics{}, err
	}
	dim := len(r.Head)
	last := make([]int, len(seqs)) // the row of each sequence's last token
	row := 0
	rewards := make([]float64, len(seqs))
	for i, q := range seqs {
		row += len(q.Tokens)
		last[i] = row - 1
		rewards[i] = dot(r.Head, h.Data[last[i]*dim:(last[i]+1)*dim])
	}
	n := len(ss)
	scale := 1 / float64(r.Batch*r.Accum)
	m := pairMetrics(ss, rewards, func(i int, dc, dr float64) {
		for j, dl := range [2]float64{dc * scale, dr * scale} {
			q := last[i+j*n]
			hr, hg := h.Data[q*dim:(q+1)*dim], h.Grad[q*dim:(q+1)*dim]
			for x := range hr {
				hg[x] += float32(dl) * r.Head[x]
				r.HeadGrad[x] += float32(dl) * hr[x]
			}
		}
	})
	m.Tokens = ntok
	return m, nil
}

// pairMetrics sums the Bradley–Terry loss, accuracy and margin of pairs
// whose chosen rewards are rewards[:n] and rejected rewards[n:], calling
// grad (when not nil) with each pair's dL/dr_c and dL/dr_r.
func pairMetrics(ss []Sample, rewards []float64, grad func(i int, dc, dr float64)) Metrics {
	n := len(ss)
	m := Metrics{Count: n, Extra: map[string]float64{}}
	for i := range ss {
		rc, rr := rewards[i], rewards[n+i]
		l, dc, dr := BradleyTerry(rc, rr, ss[i].Margin)
		m.Sum += l
		if rc > rr {
			m.Extra[Accuracy]++
		}
		m.Extra[Margin] += rc - rr
		m.Extra[RewardsChosen] += rc
		m.Extra[RewardsRejected] += rr
		if grad != nil {
			grad(i, dc, dr)
		}
	}
	return m
}

// Score is the reward of each token sequence (a prompt and response, as
// Sample.Prompt + a response), Batch at a time through the batched forward
// pass without a tape.
func (r *RewardModel) Score(seqs [][]int) ([]float64, error) {
	out := make([]float64, 0, len(seqs))
	st := &r.Policy.infer
	b := max(1, r.Batch)
	for lo := 0; lo < len(seqs); lo += b {
		var batch []llama.Seq
		for _, t := range seqs[lo:min(len(seqs), lo+b)] {
			batch = append(batch, llama.Seq{Tokens: t})
		}
		var hs [][]float32
		err := r.Policy.noDropout(func() (err error) {
			hs, err = r.Policy.Model.Hidden(st, batch)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			out = append(out, dot(r.Head, h))
		}
	}
	return out, nil
}

// Evaluate is the summed loss, accuracy and margin of pairs (means by
// Metrics.Mean), without a tape.
func (r *RewardModel) Evaluate(ss []Sample, maxBatches int) (Metrics, error) {
	var tot Metrics
	for lo, nb := 0, 0; lo < len(ss) && (maxBatches <= 0 || nb < maxBatches); lo, nb = lo+r.Batch, nb+1 {
		part := ss[lo:min(len(ss), lo+r.Batch)]
		seqs, ntok := rmSeqs(part, false)
		toks := make([][]int, len(seqs))
		for i := range seqs {
			toks[i] = seqs[i].Tokens
		}
		rw, err := r.Score(toks)
		if err != nil {
			return Metrics{}, err
		}
		m := pairMetrics(part, rw, nil)
		m.Tokens = ntok
		tot.add(m)
	}
	return tot, nil
}

// Validate is the mean loss over the first n validation batches.
func (r *RewardModel) Validate(n int) (float64, error) {
	m, err := r.Evaluate(r.Val, n)
	if err != nil {
		return math.NaN(), err
	}
	logVal(r.Log, m, Accuracy, Margin)
	return m.Sum / float64(max(1, m.Count)), nil
}

// ValBatches is the number of validation batches.
func (r *RewardModel) ValBatches() int { return (len(r.Val) + r.Batch - 1) / max(1, r.Batch) }
