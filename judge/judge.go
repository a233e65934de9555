package judge

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// Stats is a run's progress and report (units, tokens, requests).
type Stats = journal.Stats

// Options are the settings every judge run shares.
type Options struct {
	// Client is the judge's endpoint (nil for Answers with a local model).
	Client *oai.Client `json:"-"`
	// Out is the JSON Lines log of the run; its journal is beside it.
	Out    string `json:"-"`
	Resume bool   `json:"-"`
	Seed   int64
	// MaxTokens bounds each judgment or answer (default 1024).
	MaxTokens int
	// Concurrency is the units in flight (default: the client's).
	Concurrency int                 `json:"-"`
	OnProgress  func(journal.Stats) `json:"-"`
}

func (o *Options) open(pipeline string, settings any) (*journal.Runner, error) {
	if o.MaxTokens <= 0 {
		o.MaxTokens = 1024
	}
	b, err := json.Marshal(settings)
	if err != nil {
		return nil, err
	}
	s := string(b)
	if o.Client != nil {
		s += " judge " + o.Client.Model()
	}
	return journal.Open(journal.Config{Client: o.Client, Concurrency: o.Concurrency, Out: o.Out, Resume: o.Resume, Seed: o.Seed,
		Header: journal.Header{Pipeline: pipeline, Settings: fingerprint(s)}, OnProgress: o.OnProgress})
}

// Judgment is one single-answer grading, logged with the judge's output.
type Judgment struct {
	ID         string          `json:"id"`
	QuestionID json.RawMessage `json:"question_id"`
	Category   string          `json:"category"`
	Model      string          `json:"model"`
	Judge      string          `json:"judge"`
	Turn       int             `json:"turn"` // 1-based
	Reference  bool            `json:"reference"`
	Prompt     string          `json:"user_prompt"`
	Output     string          `json:"judgment"` // the judge's raw output
	Score      float64         `json:"score"`    // 1–10; -1 when the output held no readable score
}

// Single grades every turn of every answer on a 1–10 scale.
type Single struct {
	Options
	Questions, Answers string
	// References, when set, is an answer file whose turns serve as the
	// reference answers (else the questions' own "reference" field).
	References string
}

// SingleReport sums up a grading over the whole log.
type SingleReport struct {
	Stats       *Stats
	Model       string
	Judged      int // judgments with a readable score
	Malformed   int // judgments without one (in the log with score -1)
	NoAnswer    int // question turns the answer file lacks
	NoReference int // turns of maths/reasoning/coding questions graded without a reference
	Mean        float64
	ByTurn      map[int]float64
	ByCategory  map[string]float64
}

// turnUnits lists a unit key per question turn.
func turnUnits(qs []Question) ([]string, [][2]int) {
	var keys []string
	var at [][2]int
	for i := range qs {
		for t := range qs[i].Turns {
			keys = append(keys, fmt.Sprintf("%s.t%d", qs[i].Key(), t+1))
			at = append(at, [2]int{i, t})
		}
	}
	return keys, at
}

// references returns the reference answers of q (nil when its category
// needs none), and whether one was needed but is missing.
func references(q *Question, refs map[string]*Answer) ([]string, bool) {
	if !needsReference[strings.ToLower(q.Category)] {
		return nil, false
	}
	if a := refs[q.Key()]; a != nil {
		return a.Turns(), false
	}
	if len(q.Reference) > 0 {
		return q.Reference, false
	}
	return nil, true
}

// Run grades the answers and returns the report.
func (s *Single) Run(ctx context.Context) (*SingleReport, error) {
	if s.Client == nil {
		return nil, fmt.Errorf("judge: no judge endpoint")
	}
	qs, err := ReadQuestions(s.Questions)
	if err != nil {
		return nil, err
	}
	answers, err := ReadAnswers(s.Answers)
	if err != nil {
		return nil, err
	}
	refs := map[string]*Answer{}
	if s.References != "" {
		if refs, err = ReadAnswers(s.References); err != nil {
			return nil, err
		}
	}
	hashes, err := hashFiles(s.Questions, s.Answers, s.References)
	if err != nil {
		return nil, err
	}
	r, err := s.open("judge single", []any{&s.Options, hashes})
	if err != nil {
		return nil, err
	}
	keys, at := turnUnits(qs)
	r.Stats().Total = len(keys)
	err = r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, i int) error {
		q := &qs[at[i][0]]
		turn := at[i][1]
		a := answers[q.Key()]
		if a == nil || len(a.Turns()) <= turn {
			u.Drop("no_answer")
			return nil
		}
		ref, missing := references(q, refs)
		if missing {
			u.Drop("no_reference")
		}
		prompt := singlePrompt(q, a.Turns(), turn, ref)
		out, err := s.ask(ctx, u, prompt)
		if err != nil {
			return err
		}
		score, ok := ParseScore(out)
		if !ok {
			score = -1
		}
		return u.Keep(u.Key, Judgment{ID: u.Key, QuestionID: q.ID, Category: q.Category, Model: a.Model, Judge: s.Client.Model(),
			Turn: turn + 1, Reference: ref != nil, Prompt: prompt, Output: out, Score: score})
	}, nil)
	st, err := r.Finish(err)
	if err != nil {
		return &SingleReport{Stats: st}, err
	}
	return summariseSingle(s.Out, st)
}

// ask sends a judge prompt at temperature 0; an empty completion is an
// empty judgment (malformed), not an error.
func (o *Options) ask(ctx context.Context, u *journal.Unit, prompt string) (string, error) {
	resp, err := u.Chat(ctx, oai.Request{Messages: []oai.Message{{Role: "system", Content: judgeSystem}, {Role: "user", Content: prompt}},
		Temperature: 0, MaxTokens: o.MaxTokens})
	if err != nil && !isEmpty(err) {
		return "", err
	}
	return resp.Content, nil
}

func summariseSingle(path string, st *Stats) (*SingleReport, error) {
	rep := &SingleReport{Stats: st, NoAnswer: st.Drops["no_answer"], NoReference: st.Drops["no_reference"],
		ByTurn: map[int]float64{}, ByCategory: map[string]float64{}}
	turnN, catN := map[int]int{}, map[string]int{}
	sum := 0.0
	err := eachLine(path, "judgments", func(ln []byte, _ int) error {
		var j Judgment
		if err := json.Unmarshal(ln, &j); err != nil {
			return err
		}
		rep.Model = j.Model
		if j.Score < 0 {
			rep.Malformed++
			return nil
		}
		rep.Judged++
		sum += j.Score
		rep.ByTurn[j.Turn] += j.Score
		turnN[j.Turn]++
		rep.ByCategory[j.Category] += j.Score
		catN[j.Category]++
		return nil
	})
	if err != nil {
		return rep, err
	}
	if rep.Judged > 0 {
		rep.Mean = sum / float64(rep.Judged)
	}
	for t, n := range turnN {
		rep.ByTurn[t] /= float64(n)
	}
	for c, n := range catN {
		rep.ByCategory[c] /= float64(n)
	}
	return rep, nil
}

// String is the report as a table.
func (r *SingleReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model %s: mean score %.2f over %d judgments", r.Model, r.Mean, r.Judged)
	fmt.Fprintf(&b, " (malformed %d, no answer %d, no reference %d)\n", r.Malformed, r.NoAnswer, r.NoReference)
	for _, t := range slices.Sorted(maps.Keys(r.ByTurn)) {
		fmt.Fprintf(&b, "  turn %d: %.2f\n", t, r.ByTurn[t])
	}
	for _, c := range slices.Sorted(maps.Keys(r.ByCategory)) {
		fmt.Fprintf(&b, "  %-12s %.2f\n", c, r.ByCategory[c])
	}
	return b.String()
}

func hashFiles(paths ...string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "" {
			out = append(out, "")
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, fingerprint(string(b)))
	}
	return out, nil
}
