package tasks

import (
	"math"
	"unicode/utf8"
)

// Metric is one aggregated score of a task, as the harness reports it:
// the mean over documents and its standard error (the sample standard
// deviation over √n; NaN with fewer than two documents).
type Metric struct {
	Name   string  `json:"name"`
	Filter string  `json:"filter"` // the extraction ("none" for multiple choice)
	Value  float64 `json:"value"`
	Stderr float64 `json:"stderr"`
}

// meanStderr is the harness's mean and mean_stderr.
func meanStderr(x []float64) (float64, float64) {
	n := float64(len(x))
	if len(x) == 0 {
		return math.NaN(), math.NaN()
	}
	var s float64
	for _, v := range x {
		s += v
	}
	mu := s / n
	if len(x) < 2 {
		return mu, math.NaN()
	}
	var ss float64
	for _, v := range x {
		ss += (v - mu) * (v - mu)
	}
	return mu, math.Sqrt(ss/(n-1)) / math.Sqrt(n)
}

// argmax is numpy's argmax: the first of equal maxima.
func argmax(x []float64) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// mcScores are one multiple-choice document's per-metric scores: acc
// (argmax of the log-likelihoods), acc_norm (of the log-likelihoods over
// each choice's length in characters, as the harness's len(choice)),
// acc_bytes (over its length in UTF-8 bytes) and mc2 (the normalised
// probability mass of the true choices).
func mcScores(d *Doc, lls []float64) (map[string]float64, int) {
	norm := make([]float64, len(lls))
	byt := make([]float64, len(lls))
	for i, ll := range lls {
		norm[i] = ll / float64(utf8.RuneCountInString(d.Choices[i]))
		byt[i] = ll / float64(len(d.Choices[i]))
	}
	pred := argmax(lls)
	s := map[string]float64{
		"acc":       b2f(pred == d.Gold),
		"acc_norm":  b2f(argmax(norm) == d.Gold),
		"acc_bytes": b2f(argmax(byt) == d.Gold),
	}
	if d.Labels != nil {
		s["mc2"] = mc2(lls, d.Labels)
	}
	return s, pred
}

// mc2 is TruthfulQA's MC2: Σ p(true) / Σ p(all) with p = exp(ll). The
// largest log-likelihood is subtracted first, which leaves the ratio as it
// is and keeps very unlikely answers from underflowing to 0/0.
func mc2(lls []float64, labels []int) float64 {
	mx := lls[argmax(lls)]
	var tot, tru float64
	for i, ll := range lls {
		p := math.Exp(ll - mx)
		tot += p
		if labels[i] == 1 {
			tru += p
		}
	}
	return tru / tot
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// pooledStderr is the harness's pooled_sample_stderr: the standard error
// of a size-weighted mean over groups from their own standard errors.
func pooledStderr(stderrs []float64, sizes []int) float64 {
	var num float64
	var n int
	for i, se := range stderrs {
		num += float64(sizes[i]-1) * se * se * float64(sizes[i])
		n += sizes[i]
	}
	if n <= len(sizes) {
		return math.NaN()
	}
	return math.Sqrt(num / float64(n-len(sizes)) / float64(n))
}
