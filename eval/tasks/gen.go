package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// genJob is one document's generation.
type genJob struct {
	pd     prepared
	prompt []int
	ch     <-chan generate.Event
}

// runGenerate evaluates a generation task: each prompt is continued
// greedily through generate's continuous-batching scheduler (Parallel
// documents decoded together) until a stop string, the EOS token, the
// token budget or the end of the context; then every filter extracts an
// answer that is matched against the document's target.
func runGenerate(m *llama.Model, tok tokenizer.Tokenizer, t *Task, opt Options) (*Result, error) {
	docs, shots, err := prepare(t, opt)
	if err != nil {
		return nil, err
	}
	res := &Result{Task: t.Name, Shots: shots, Docs: len(t.Docs)}
	par := opt.Parallel
	if par <= 0 {
		par = 8
	}
	if opt.OneAtATime {
		par = 1
	}
	var jobs []*genJob
	for _, pd := range docs {
		p := tok.Encode(pd.contexts[0], tok.BOS() >= 0, false)
		if len(p) >= opt.Ctx {
			res.Skipped = append(res.Skipped, pd.doc.Src)
			continue
		}
		jobs = append(jobs, &genJob{pd: pd, prompt: p})
	}
	s := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: par, Context: opt.Ctx, MaxQueue: len(jobs) + 1})
	defer s.Close()
	stop := generate.Stop{Strings: t.Gen.Until}
	if tok.EOS() >= 0 {
		stop.IDs = []int{tok.EOS()}
	}
	start := time.Now()
	for _, j := range jobs {
		req := generate.Request{Prompt: j.prompt, MaxTokens: min(t.Gen.MaxTokens, opt.Ctx-len(j.prompt)), Stop: stop}
		if j.ch, err = s.Submit(context.Background(), req); err != nil {
			return nil, err
		}
	}
	for i, j := range jobs {
		text, err := collect(j.ch)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", j.pd.doc.Src, err)
		}
		res.Samples = append(res.Samples, genSample(t, j.pd, text))
		if opt.Progress != nil {
			opt.Progress(t.Name, i+1, len(jobs))
		}
	}
	res.Seconds = time.Since(start).Seconds()
	finish(res, t)
	return res, nil
}

// collect gathers a generation's text.
func collect(ch <-chan generate.Event) (string, error) {
	var text []byte
	for ev := range ch {
		text = append(text, ev.Text...)
		if ev.Done {
			return string(text), ev.Err
		}
	}
	return string(text), fmt.Errorf("the generation ended without a result")
}

// genSample scores a generated text under every filter.
func genSample(t *Task, pd prepared, text string) Sample {
	s := Sample{Doc: pd.idx, Source: pd.doc.Src, Prompt: pd.contexts[0], Generated: text, Target: pd.doc.Target,
		Extracted: map[string]string{}, Scores: map[string]float64{}}
	for _, f := range t.Gen.Filters {
		pred := f.Apply(text)
		s.Extracted[f.Name] = pred
		for _, m := range t.Metrics {
			s.Scores[scoreKey(m, f.Name)] = b2f(t.Gen.Match.Equal(pred, pd.doc.Target))
		}
	}
	return s
}
