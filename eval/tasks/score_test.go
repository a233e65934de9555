package tasks

import (
	"math"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/internal/llamaref"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

func stories(t testing.TB) (*llama.Model, tokenizer.Tokenizer) {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}

// refLL is a continuation's log-likelihood by the float64 reference, the
// pair encoded here on its own (the harness's rule: the context's trailing
// spaces join the continuation, the continuation is what the whole adds
// to the context's tokens).
func refLL(ref *llamaref.Model, tok tokenizer.Tokenizer, ctx, cont string) float64 {
	trimmed := strings.TrimRightFunc(ctx, unicode.IsSpace)
	whole := tok.Encode(ctx+cont, true, false)
	n := len(whole) - len(tok.Encode(trimmed, true, false))
	return ref.Continuation(whole, n)
}

// refMetrics scores one document from reference log-likelihoods.
func refMetrics(d *Doc, lls []float64) map[string]float64 {
	best, bestNorm, bestByte := 0, 0, 0
	for i := range lls {
		if lls[i] > lls[best] {
			best = i
		}
		if lls[i]/float64(utf8.RuneCountInString(d.Choices[i])) > lls[bestNorm]/float64(utf8.RuneCountInString(d.Choices[bestNorm])) {
			bestNorm = i
		}
		if lls[i]/float64(len(d.Choices[i])) > lls[bestByte]/float64(len(d.Choices[bestByte])) {
			bestByte = i
		}
	}
	out := map[string]float64{"acc": b2f(best == d.Gold), "acc_norm": b2f(bestNorm == d.Gold), "acc_bytes": b2f(bestByte == d.Gold)}
	if d.Labels != nil {
		var tot, tru float64
		for i, ll := range lls {
			tot += math.Exp(ll)
			if d.Labels[i] == 1 {
				tru += math.Exp(ll)
			}
		}
		out["mc2"] = tru / tot
	}
	return out
}

// TestMultipleChoiceAgainstReference scores the shipped multiple-choice
// task files on stories260K and checks every log-likelihood against the
// float64 reference forward, every document's scores against the
// reference's, and the task's metrics against the values the reference
// gives, written out here (computed once by hand from its
// log-likelihoods).
func TestMultipleChoiceAgainstReference(t *testing.T) {
	m, tok := stories(t)
	m.KVF32 = true // the reference keeps keys and values in float64; an F16 cache rounds them
	ref := llamaref.New(m)
	cases := []struct {
		spec  string
		shots int
		want  map[string]float64
	}{
		// hellaswag 0-shot, first document (gold 0): reference log-likelihoods
		// -19.73, -52.19, -14.42, -35.51; argmax is choice 2 (acc 0), over the
		// choices' 37, 27, 10 and 34 characters choice 0 (acc_norm 1)
		{"testdata/hellaswag.yaml", 0, map[string]float64{"acc": 0, "acc_norm": 2.0 / 3}},
		{"testdata/hellaswag.yaml", 1, map[string]float64{"acc": 0, "acc_norm": 2.0 / 3}},
		{"testdata/arc_easy.yaml", 0, map[string]float64{"acc": 0.5, "acc_norm": 0.5}},
		{"testdata/arc_easy.yaml", 2, map[string]float64{"acc": 0.5, "acc_norm": 0.5}},
		{"testdata/mmlu.yaml", 1, map[string]float64{"acc": 0.2}},
		{"testdata/truthfulqa_mc1.yaml", 0, map[string]float64{"acc": 1.0 / 3}},
		// MC2 of the three questions: 0.98597, 1 − 1.2e-7 and 0.0038473 (Σ e^ll of the
		// true answers over Σ e^ll of all, from the reference's log-likelihoods)
		{"testdata/truthfulqa_mc2.yaml", 0, map[string]float64{"acc": 0.66327}},
		{"testdata/winogrande.yaml", 0, map[string]float64{"acc": 1}},
		{"testdata/winogrande.yaml", 1, map[string]float64{"acc": 1.0 / 3}},
		{"testdata/colors.yaml", 1, map[string]float64{"acc": 2.0 / 3, "acc_norm": 1.0 / 3}},
	}
	for _, c := range cases {
		if testing.Short() && c.shots > 0 {
			continue
		}
		tk := loadTask(t, c.spec)
		rs, err := Run(m, tok, []*Task{tk}, Options{Shots: c.shots})
		if err != nil {
			t.Fatal(err)
		}
		r := rs[0]
		sums := map[string]float64{}
		ctxs, _, err := prepare(tk, Options{Shots: c.shots})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Samples {
			d := &tk.Docs[s.Doc]
			pd := ctxs[s.Doc]
			lls := make([]float64, len(s.LogLikelihoods))
			for j := range lls {
				if len(d.Contexts) > 0 {
					lls[j] = refLL(ref, tok, pd.contexts[j], tk.TargetDelim+d.Target)
				} else {
					lls[j] = refLL(ref, tok, pd.contexts[0], tk.TargetDelim+d.Choices[j])
				}
				if diff := math.Abs(s.LogLikelihoods[j] - lls[j]); diff > 2e-4*(1+math.Abs(lls[j])) {
					t.Errorf("%s %d-shot %s choice %d: log-likelihood %.6f, reference %.6f", c.spec, c.shots, s.Source, j, s.LogLikelihoods[j], lls[j])
				}
			}
			want := refMetrics(d, lls)
			for _, mt := range tk.Metrics {
				if math.Abs(s.Scores[mt]-want[mt]) > 1e-5 {
					t.Errorf("%s %d-shot %s: %s %g, reference %g (lls %v)", c.spec, c.shots, s.Source, mt, s.Scores[mt], want[mt], lls)
				}
				sums[mt] += want[mt]
			}
		}
		for _, mt := range r.Metrics {
			key := mt.Name
			if tk.Metrics[0] == "mc2" {
				key = "mc2"
			}
			refMean := sums[key] / float64(len(r.Samples))
			if math.Abs(mt.Value-refMean) > 1e-5 {
				t.Errorf("%s %d-shot: %s %g, reference %g", c.spec, c.shots, mt.Name, mt.Value, refMean)
			}
			if w, ok := c.want[mt.Name]; ok && math.Abs(mt.Value-w) > 5e-5 {
				t.Errorf("%s %d-shot: %s %.4f, hand-computed %.4f", c.spec, c.shots, mt.Name, mt.Value, w)
			}
		}
	}
}

// TestEncodePair checks the harness's tokenization of a pair: trailing
// whitespace of the context belongs to the continuation, and an empty
// context is BOS alone.
func TestEncodePair(t *testing.T) {
	_, tok := stories(t)
	a, na, err := encodePair(tok, "Question: what?\nAnswer: ", "yes")
	if err != nil {
		t.Fatal(err)
	}
	b, nb, err := encodePair(tok, "Question: what?\nAnswer:", " yes")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) || na != nb {
		t.Errorf("trailing space: %v/%d, moved by hand %v/%d", a, na, b, nb)
	}
	whole := tok.Encode("Question: what?\nAnswer: yes", true, false)
	if !slices.Equal(a, whole) || na != len(whole)-len(tok.Encode("Question: what?\nAnswer:", true, false)) {
		t.Errorf("pair %v/%d, whole %v", a, na, whole)
	}
	e, ne, err := encodePair(tok, "", "Once upon a time")
	if err != nil {
		t.Fatal(err)
	}
	cont := tok.Encode("Once upon a time", false, false)
	if e[0] != tok.BOS() || !slices.Equal(e[1:], cont) || ne != len(cont) {
		t.Errorf("empty context: %v/%d, want BOS + %v", e, ne, cont)
	}
	if _, _, err := encodePair(tok, "Question:", ""); err == nil {
		t.Error("an empty continuation was accepted")
	}
}
