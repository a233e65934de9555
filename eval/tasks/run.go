package tasks

import (
	"fmt"
	"math"
	"time"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// Options control an evaluation.
type Options struct {
	Shots int // few-shot examples; -1: each task's default
	Limit int // evaluate at most this many documents per task (per subject of a grouped task); 0: all
	// Ctx is the number of positions a prompt and its continuation may
	// take (0: the model's context length); longer documents are skipped
	// and counted, never truncated.
	Ctx         int
	BatchTokens int  // tokens per forward pass when scoring (default 512)
	OneAtATime  bool // score each continuation alone, generate one document at a time
	Parallel    int  // generations decoded together (default 8)
	// Progress, when set, is called as documents finish.
	Progress func(task string, done, total int)
}

// Sample is one document's outcome.
type Sample struct {
	Doc            int                `json:"doc_id"`
	Source         string             `json:"source"`
	Prompt         string             `json:"prompt,omitempty"` // the first context
	Choices        []string           `json:"choices,omitempty"`
	Gold           int                `json:"gold"`
	LogLikelihoods []float64          `json:"loglikelihoods,omitempty"`
	Greedy         []bool             `json:"is_greedy,omitempty"`
	Pred           int                `json:"pred"`
	Generated      string             `json:"generated,omitempty"`
	Target         string             `json:"target,omitempty"`
	Extracted      map[string]string  `json:"extracted,omitempty"` // per filter
	Scores         map[string]float64 `json:"scores"`              // metric (,filter) → 0/1 or MC2 mass
}

// Result is a task's evaluation.
type Result struct {
	Task     string    `json:"task"`
	Shots    int       `json:"n_shot"`
	Docs     int       `json:"docs"`      // documents in the file (before the limit)
	Scored   int       `json:"evaluated"` // documents scored
	Skipped  []string  `json:"skipped"`   // sources of documents that did not fit in the context
	Metrics  []Metric  `json:"metrics"`
	Seconds  float64   `json:"seconds"`          // time in the model (scoring or generating), prompts and tokenization excluded
	Rate     float64   `json:"examples_per_sec"` // Scored / Seconds
	Samples  []Sample  `json:"-"`
	Subjects []*Result `json:"-"` // per subject, for a grouped task
	Group    []Metric  `json:"-"` // the group's averages (acc: size-weighted, acc_macro: over subjects)
}

// Run evaluates m (with tokenizer tok) on each task.
func Run(m *llama.Model, tok tokenizer.Tokenizer, ts []*Task, opt Options) ([]*Result, error) {
	if opt.Ctx <= 0 {
		opt.Ctx = m.Config.ContextLen
	}
	sc := &Scorer{Model: m, BatchTokens: opt.BatchTokens, OneAtATime: opt.OneAtATime}
	var out []*Result
	for _, t := range ts {
		if err := t.validate(); err != nil {
			return nil, err
		}
		var r *Result
		var err error
		if t.Kind == Generate {
			r, err = runGenerate(m, tok, t, opt)
		} else {
			r, err = runMC(sc, tok, t, opt)
		}
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", t.Name, err)
		}
		if t.Group != "" {
			groupResults(t, r)
		}
		out = append(out, r)
	}
	return out, nil
}

// prepared is a document with its prompts, ready to run.
type prepared struct {
	idx      int
	doc      *Doc
	contexts []string
}

// prepare builds the prompts of the documents under the limit, in order
// (the few-shot draws depend on it). A grouped task's limit applies to
// each subject, as the harness's --limit applies to each of MMLU's
// subject tasks.
func prepare(t *Task, opt Options) ([]prepared, int, error) {
	shots := t.Shots
	if opt.Shots >= 0 {
		shots = opt.Shots
	}
	p, err := newPrompter(t, shots)
	if err != nil {
		return nil, 0, err
	}
	var out []prepared
	taken := map[string]int{}
	for i := range t.Docs {
		d := &t.Docs[i]
		if opt.Limit > 0 && taken[d.Subject] >= opt.Limit {
			continue
		}
		taken[d.Subject]++
		c, err := p.contexts(d)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, prepared{i, d, c})
	}
	return out, shots, nil
}

// mcRequests are a document's continuations to score.
func mcRequests(tok tokenizer.Tokenizer, pd prepared, delim string) ([]Req, error) {
	d := pd.doc
	var reqs []Req
	add := func(ctx, cont string) error {
		toks, n, err := encodePair(tok, ctx, delim+cont)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Src, err)
		}
		reqs = append(reqs, Req{Tokens: toks, Cont: n})
		return nil
	}
	if len(d.Contexts) > 0 {
		for _, c := range pd.contexts {
			if err := add(c, d.Target); err != nil {
				return nil, err
			}
		}
		return reqs, nil
	}
	for _, c := range d.Choices {
		if err := add(pd.contexts[0], c); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

// runMC evaluates a multiple-choice task.
func runMC(sc *Scorer, tok tokenizer.Tokenizer, t *Task, opt Options) (*Result, error) {
	docs, shots, err := prepare(t, opt)
	if err != nil {
		return nil, err
	}
	res := &Result{Task: t.Name, Shots: shots, Docs: len(t.Docs)}
	var qs [][]Req
	var kept []prepared
	for _, pd := range docs {
		reqs, err := mcRequests(tok, pd, t.TargetDelim)
		if err != nil {
			return nil, err
		}
		if longest(reqs) > opt.Ctx {
			res.Skipped = append(res.Skipped, pd.doc.Src)
			continue
		}
		qs = append(qs, reqs)
		kept = append(kept, pd)
	}
	start := time.Now()
	scores, err := sc.Score(qs, func(n int) {
		if opt.Progress != nil {
			opt.Progress(t.Name, n, len(qs))
		}
	})
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	for i, pd := range kept {
		for j, s := range scores[i] {
			if math.IsNaN(s.LogProb) || math.IsInf(s.LogProb, 0) {
				return nil, fmt.Errorf("%s: choice %d: the model's log-likelihood is %v (its logits are not finite)", pd.doc.Src, j, s.LogProb)
			}
		}
		res.Samples = append(res.Samples, mcSample(t, pd, scores[i]))
	}
	finish(res, t)
	return res, nil
}

// longest is the positions the longest request needs (its last token is
// never an input).
func longest(reqs []Req) int {
	n := 0
	for _, r := range reqs {
		n = max(n, len(r.Tokens)-1)
	}
	return n
}

func mcSample(t *Task, pd prepared, sc []Score) Sample {
	d := pd.doc
	lls := make([]float64, len(sc))
	greedy := make([]bool, len(sc))
	for j, s := range sc {
		lls[j], greedy[j] = s.LogProb, s.Greedy
	}
	all, pred := mcScores(d, lls)
	scores := map[string]float64{}
	for _, m := range t.Metrics {
		scores[m] = all[m]
	}
	return Sample{Doc: pd.idx, Source: d.Src, Prompt: pd.contexts[0], Choices: d.Choices, Gold: d.Gold,
		LogLikelihoods: lls, Greedy: greedy, Pred: pred, Scores: scores}
}

// metricKeys are a task's (metric, filter) pairs in report order.
func metricKeys(t *Task) [][2]string {
	var out [][2]string
	if t.Kind == Generate {
		for _, f := range t.Gen.Filters {
			for _, m := range t.Metrics {
				out = append(out, [2]string{m, f.Name})
			}
		}
		return out
	}
	for _, m := range t.Metrics {
		out = append(out, [2]string{m, "none"})
	}
	return out
}

// scoreKey is where a sample keeps a metric's score.
func scoreKey(m, filter string) string {
	if filter == "none" {
		return m
	}
	return m + "," + filter
}

// aggregate computes the task's metrics over samples.
func aggregate(t *Task, samples []Sample) []Metric {
	var out []Metric
	for _, k := range metricKeys(t) {
		x := make([]float64, len(samples))
		for i, s := range samples {
			x[i] = s.Scores[scoreKey(k[0], k[1])]
		}
		mu, se := meanStderr(x)
		out = append(out, Metric{Name: reportName(k[0]), Filter: k[1], Value: mu, Stderr: se})
	}
	return out
}

// reportName is the name the harness reports a metric under: MC2 is
// truthfulqa_mc2's "acc".
func reportName(m string) string {
	if m == "mc2" {
		return "acc"
	}
	return m
}

// finish fills a result's counts, rate and metrics.
func finish(res *Result, t *Task) {
	res.Scored = len(res.Samples)
	if res.Seconds > 0 {
		res.Rate = float64(res.Scored) / res.Seconds
	}
	res.Metrics = aggregate(t, res.Samples)
}

// groupResults splits a grouped task's samples by subject and averages
// the subjects: acc weighted by size with the harness's pooled standard
// error (its mmlu group), acc_macro the plain mean over subjects with the
// standard error of a mean of independent estimates.
func groupResults(t *Task, r *Result) {
	by := map[string]*Result{}
	var order []string
	for _, s := range r.Samples {
		subj := t.Docs[s.Doc].Subject
		sr, ok := by[subj]
		if !ok {
			sr = &Result{Task: t.Group + "_" + subj, Shots: r.Shots}
			by[subj] = sr
			order = append(order, subj)
		}
		sr.Samples = append(sr.Samples, s)
	}
	for _, subj := range order {
		sr := by[subj]
		sr.Scored = len(sr.Samples)
		sr.Metrics = aggregate(t, sr.Samples)
		r.Subjects = append(r.Subjects, sr)
	}
	for mi, m := range r.Metrics {
		var ses, vals []float64
		var sizes []int
		var macro, v2 float64
		for _, sr := range r.Subjects {
			sm := sr.Metrics[mi]
			ses, vals, sizes = append(ses, sm.Stderr), append(vals, sm.Value), append(sizes, sr.Scored)
			macro += sm.Value
			v2 += sm.Stderr * sm.Stderr
		}
		k := float64(len(vals))
		r.Group = append(r.Group,
			Metric{Name: m.Name, Filter: m.Filter, Value: m.Value, Stderr: pooledStderr(ses, sizes)},
			Metric{Name: m.Name + "_macro", Filter: m.Filter, Value: macro / k, Stderr: math.Sqrt(v2) / k})
	}
}
