// Package judge grades a model's answers with a judge model behind an
// OpenAI-compatible endpoint, as MT-bench does (Zheng et al. 2023): a
// single-answer score from 1 to 10 for each turn of two-turn questions
// (with reference answers for maths, reasoning and coding), and pairwise
// comparisons against a reference model's answers in both orders, a tie
// when the two orders disagree, giving win rates (AlpacaEval / Vicuna-bench
// style) with the answers' lengths beside them. It also writes the answers
// themselves with any Answerer (a local model through generate's
// scheduler, or an endpoint). Every judgment is logged with the judge's
// raw output; runs go through internal/journal, so they resume.
package judge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Question is an MT-bench question: one or two user turns, a category and,
// for some categories, reference answers per turn.
type Question struct {
	ID        json.RawMessage `json:"question_id"` // a number or a string, as the file has it
	Category  string          `json:"category"`
	Turns     []string        `json:"turns"`
	Reference []string        `json:"reference,omitempty"`
}

// Key is the question id as a string.
func (q *Question) Key() string { return idKey(q.ID) }

func idKey(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}

// Answer is a model's answers to a question, in FastChat's model answer
// layout, with the journal's "id" (the question id).
type Answer struct {
	ID         string          `json:"id"`
	QuestionID json.RawMessage `json:"question_id"`
	Model      string          `json:"model_id"`
	Choices    []Choice        `json:"choices"`
}

// Choice holds one answer per turn.
type Choice struct {
	Index int      `json:"index"`
	Turns []string `json:"turns"`
}

// Turns is the first choice's answers.
func (a *Answer) Turns() []string {
	if len(a.Choices) == 0 {
		return nil
	}
	return a.Choices[0].Turns
}

// eachLine calls fn with every non-empty line of a JSON Lines file.
func eachLine(path, what string, fn func(line []byte, no int) error) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	for i, ln := range bytes.Split(b, []byte{'\n'}) {
		if ln = bytes.TrimSpace(ln); len(ln) == 0 {
			continue
		}
		if err := fn(ln, i+1); err != nil {
			return fmt.Errorf("%s %s:%d: %w", what, path, i+1, err)
		}
	}
	return nil
}

// ReadQuestions reads a question file (JSON Lines); a malformed line, a
// missing id or no turns is an error naming the line.
func ReadQuestions(path string) ([]Question, error) {
	var out []Question
	seen := map[string]bool{}
	err := eachLine(path, "questions", func(ln []byte, _ int) error {
		var q Question
		if err := json.Unmarshal(ln, &q); err != nil {
			return err
		}
		switch {
		case len(q.ID) == 0 || string(q.ID) == "null":
			return fmt.Errorf("field question_id: missing")
		case len(q.Turns) == 0:
			return fmt.Errorf("field turns: no turns")
		case seen[q.Key()]:
			return fmt.Errorf("field question_id: %s twice", q.Key())
		}
		for i, t := range q.Turns {
			if strings.TrimSpace(t) == "" {
				return fmt.Errorf("field turns[%d]: empty", i)
			}
		}
		seen[q.Key()] = true
		out = append(out, q)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("questions %s: no questions", path)
	}
	return out, err
}

// ReadAnswers reads a model answer file into a map by question id.
func ReadAnswers(path string) (map[string]*Answer, error) {
	out := map[string]*Answer{}
	err := eachLine(path, "answers", func(ln []byte, _ int) error {
		var a Answer
		if err := json.Unmarshal(ln, &a); err != nil {
			return err
		}
		if len(a.QuestionID) == 0 {
			return fmt.Errorf("field question_id: missing")
		}
		if len(a.Turns()) == 0 {
			return fmt.Errorf("field choices: no answer turns")
		}
		out[idKey(a.QuestionID)] = &a
		return nil
	})
	return out, err
}

// needsReference lists the categories MT-bench grades against a reference
// answer.
var needsReference = map[string]bool{"math": true, "reasoning": true, "coding": true}
