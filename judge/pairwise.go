package judge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// PairJudgment is one pairwise comparison, both orders logged with the
// judge's raw output.
type PairJudgment struct {
	ID         string          `json:"id"`
	QuestionID json.RawMessage `json:"question_id"`
	Category   string          `json:"category"`
	Model      string          `json:"model_1"`
	Baseline   string          `json:"model_2"`
	Judge      string          `json:"judge"`
	Turn       int             `json:"turn"`
	G1Prompt   string          `json:"g1_user_prompt"` // the model as A
	G1Output   string          `json:"g1_judgment"`
	G1Verdict  string          `json:"g1_winner"`      // A, B, C (tie) or "" (unreadable)
	G2Prompt   string          `json:"g2_user_prompt"` // the model as B
	G2Output   string          `json:"g2_judgment"`
	G2Verdict  string          `json:"g2_winner"`
	Outcome    string          `json:"outcome"` // for model_1: win, loss, tie, malformed
	// Lengths in characters of the two answers of this turn.
	Len         int `json:"len_1"`
	BaselineLen int `json:"len_2"`
}

// Pairwise compares a model's answers with a baseline's, turn by turn,
// in both orders.
type Pairwise struct {
	Options
	Questions, Answers, Baseline string
	References                   string // as Single.References
}

// PairReport sums up a comparison over the whole log.
type PairReport struct {
	Stats                         *Stats
	Model, Baseline               string
	Wins, Losses, Ties, Malformed int
	NoAnswer                      int
	// WinRate is (wins + ties/2) / (wins + losses + ties).
	WinRate float64
	// Inconsistent counts the ties that came from the two orders
	// disagreeing (a position-biased judge).
	Inconsistent int
	// Len and BaselineLen are the mean answer lengths in characters over
	// the turns compared.
	Len, BaselineLen float64
	ByTurn           map[int]float64 // win rate per turn
}

// Run compares the answers and returns the report.
func (p *Pairwise) Run(ctx context.Context) (*PairReport, error) {
	if p.Client == nil {
		return nil, fmt.Errorf("judge: no judge endpoint")
	}
	qs, err := ReadQuestions(p.Questions)
	if err != nil {
		return nil, err
	}
	mine, err := ReadAnswers(p.Answers)
	if err != nil {
		return nil, err
	}
	base, err := ReadAnswers(p.Baseline)
	if err != nil {
		return nil, err
	}
	refs := map[string]*Answer{}
	if p.References != "" {
		if refs, err = ReadAnswers(p.References); err != nil {
			return nil, err
		}
	}
	hashes, err := hashFiles(p.Questions, p.Answers, p.Baseline, p.References)
	if err != nil {
		return nil, err
	}
	r, err := p.open("judge pairwise", []any{&p.Options, hashes})
	if err != nil {
		return nil, err
	}
	keys, at := turnUnits(qs)
	r.Stats().Total = len(keys)
	err = r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, i int) error {
		q := &qs[at[i][0]]
		turn := at[i][1]
		a, b := mine[q.Key()], base[q.Key()]
		if a == nil || b == nil || len(a.Turns()) <= turn || len(b.Turns()) <= turn {
			u.Drop("no_answer")
			return nil
		}
		ref, _ := references(q, refs)
		j := PairJudgment{ID: u.Key, QuestionID: q.ID, Category: q.Category, Model: a.Model, Baseline: b.Model, Judge: p.Client.Model(),
			Turn: turn + 1, Len: utf8.RuneCountInString(a.Turns()[turn]), BaselineLen: utf8.RuneCountInString(b.Turns()[turn])}
		j.G1Prompt = pairPrompt(q, a.Turns(), b.Turns(), turn, ref)
		j.G2Prompt = pairPrompt(q, b.Turns(), a.Turns(), turn, ref)
		if j.G1Output, err = p.ask(ctx, u, j.G1Prompt); err != nil {
			return err
		}
		if j.G2Output, err = p.ask(ctx, u, j.G2Prompt); err != nil {
			return err
		}
		j.G1Verdict, j.G2Verdict = ParseVerdict(j.G1Output), ParseVerdict(j.G2Output)
		j.Outcome = Combine(j.G1Verdict, j.G2Verdict)
		return u.Keep(u.Key, j)
	}, nil)
	st, err := r.Finish(err)
	if err != nil {
		return &PairReport{Stats: st}, err
	}
	return summarisePairs(p.Out, st)
}

func summarisePairs(path string, st *Stats) (*PairReport, error) {
	rep := &PairReport{Stats: st, NoAnswer: st.Drops["no_answer"], ByTurn: map[int]float64{}}
	turnN := map[int]int{}
	var lens, baseLens, n int
	err := eachLine(path, "judgments", func(ln []byte, _ int) error {
		var j PairJudgment
		if err := json.Unmarshal(ln, &j); err != nil {
			return err
		}
		rep.Model, rep.Baseline = j.Model, j.Baseline
		lens += j.Len
		baseLens += j.BaselineLen
		n++
		switch j.Outcome {
		case Win:
			rep.Wins++
			rep.ByTurn[j.Turn]++
		case Loss:
			rep.Losses++
		case Tie:
			rep.Ties++
			rep.ByTurn[j.Turn] += 0.5
			if j.G1Verdict != "C" && j.G2Verdict != "C" {
				rep.Inconsistent++
			}
		default:
			rep.Malformed++
			return nil
		}
		turnN[j.Turn]++
		return nil
	})
	if err != nil {
		return rep, err
	}
	if d := rep.Wins + rep.Losses + rep.Ties; d > 0 {
		rep.WinRate = (float64(rep.Wins) + float64(rep.Ties)/2) / float64(d)
	}
	for t, c := range turnN {
		rep.ByTurn[t] /= float64(c)
	}
	if n > 0 {
		rep.Len, rep.BaselineLen = float64(lens)/float64(n), float64(baseLens)/float64(n)
	}
	return rep, nil
}

// String is the report as a table.
func (r *PairReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s against %s: win rate %.1f%% (%d wins, %d losses, %d ties of which %d from the two orders disagreeing; %d malformed, %d without an answer)\n",
		r.Model, r.Baseline, 100*r.WinRate, r.Wins, r.Losses, r.Ties, r.Inconsistent, r.Malformed, r.NoAnswer)
	fmt.Fprintf(&b, "  mean answer length: %s %.0f characters, %s %.0f\n", r.Model, r.Len, r.Baseline, r.BaselineLen)
	for _, t := range slices.Sorted(maps.Keys(r.ByTurn)) {
		fmt.Fprintf(&b, "  turn %d: win rate %.1f%%\n", t, 100*r.ByTurn[t])
	}
	return b.String()
}

func isEmpty(err error) bool { return errors.Is(err, oai.ErrEmpty) }

func fingerprint(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}
