package tasks

import (
	"fmt"
	"reflect"
	"strings"
)

// Seed is the harness's default few-shot seed (fewshot_random_seed).
const Seed = 1234

// prompter builds documents' prompts with k few-shot examples, drawing
// them in document order from one random stream, as the harness does.
type prompter struct {
	t         *Task
	k         int
	rnd       *pyRandom
	bySubject map[string][]int // pool indices per subject, when grouped
}

func newPrompter(t *Task, k int) (*prompter, error) {
	if k < 0 {
		return nil, fmt.Errorf("task %s: %d few-shot examples", t.Name, k)
	}
	if t.MaxShots >= 0 && k > t.MaxShots {
		return nil, fmt.Errorf("task %s takes at most %d few-shot examples, not %d", t.Name, t.MaxShots, k)
	}
	if k > 0 && len(t.Pool) == 0 {
		return nil, fmt.Errorf("task %s: %d few-shot examples asked for, but the task has no few-shot split (give its training or dev file)", t.Name, k)
	}
	p := &prompter{t: t, k: k, rnd: newPyRandom(Seed)}
	if t.Group != "" {
		p.bySubject = map[string][]int{}
		for i, d := range t.Pool {
			p.bySubject[d.Subject] = append(p.bySubject[d.Subject], i)
		}
	}
	return p, nil
}

// examples picks the few-shot examples of d.
func (p *prompter) examples(d *Doc) ([]*Doc, error) {
	if p.k == 0 {
		return nil, nil
	}
	pool := make([]*Doc, 0, len(p.t.Pool))
	if p.bySubject != nil {
		for _, i := range p.bySubject[d.Subject] {
			pool = append(pool, &p.t.Pool[i])
		}
	} else {
		for i := range p.t.Pool {
			pool = append(pool, &p.t.Pool[i])
		}
	}
	n := p.k
	if p.t.SamePool {
		n++ // one more, in case d draws itself
	}
	var picked []*Doc
	switch p.t.Sampler {
	case SampleFirstN:
		picked = pool
	default:
		if n > len(pool) {
			return nil, fmt.Errorf("%s: %d few-shot examples asked for, the pool%s holds %d", d.Src, n, subjectOf(d), len(pool))
		}
		for _, i := range p.rnd.sample(len(pool), n) {
			picked = append(picked, pool[i])
		}
	}
	var out []*Doc
	for _, e := range picked {
		if p.t.SamePool && reflect.DeepEqual(e.raw, d.raw) {
			continue
		}
		out = append(out, e)
		if len(out) == p.k {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s: %d few-shot examples asked for, the pool%s holds only %d others", d.Src, p.k, subjectOf(d), len(out))
}

func subjectOf(d *Doc) string {
	if d.Subject == "" {
		return ""
	}
	return " of subject " + d.Subject
}

// contexts returns d's prompts: one, or one per choice for a
// multiple-input document. They are built as the harness's
// fewshot_context renders its messages as plain text: the description,
// then per example its text, the target delimiter, its answer and the
// few-shot delimiter (text alone when the answer is empty), then d's text.
func (p *prompter) contexts(d *Doc) ([]string, error) {
	ex, err := p.examples(d)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if p.t.Description != nil {
		b.WriteString(p.t.Description(d.Subject))
	}
	for _, e := range ex {
		b.WriteString(e.prompt())
		if a := e.answer(); a != "" {
			b.WriteString(p.t.TargetDelim)
			b.WriteString(a)
			b.WriteString(p.t.FewshotDelim)
		}
	}
	head := b.String()
	if len(d.Contexts) > 0 {
		out := make([]string, len(d.Contexts))
		for i, c := range d.Contexts {
			out[i] = head + c
		}
		return out, nil
	}
	return []string{head + d.Text}, nil
}
