package judge

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The judge prompts were written for herd after the MT-bench paper's
// description of its judges (single-answer grading on a 1–10 scale with a
// short explanation first, a reference answer for maths, reasoning and
// coding, the whole conversation shown when grading a second turn, and a
// pairwise verdict A, B or tie).

const judgeSystem = "You are a fair and careful judge of AI assistants' answers."

const singleRules = `Judge the quality of the AI assistant's %s shown below. Weigh helpfulness, relevance, accuracy, depth, creativity and level of detail.%s Start with a short explanation, be as objective as you can, then rate the answer from 1 to 10 in exactly this format: "Rating: [[5]]".`

const refRule = ` Compare the assistant's answer with the reference answer, and find and correct any mistakes.`

const pairRules = `Judge which of the two AI assistants answered %s better. Weigh helpfulness, relevance, accuracy, depth, creativity and level of detail.%s Compare the two answers and give a short explanation. Do not let the order in which the answers appear, their length or the assistants' names sway you, and be as objective as you can. After your explanation give your verdict in exactly this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, "[[C]]" for a tie.`

// singlePrompt is the user message that asks for a score of answer turn
// (0-based) of a conversation; ref is the reference answers ("" none).
func singlePrompt(q *Question, answers []string, turn int, ref []string) string {
	var b strings.Builder
	rule := ""
	if ref != nil {
		rule = refRule
	}
	what := "answer to the user's question"
	if turn > 0 {
		what = fmt.Sprintf("answer to the user's question in turn %d of the conversation (only that answer: the earlier turns are context)", turn+1)
	}
	fmt.Fprintf(&b, singleRules+"\n\n", what, rule)
	if ref != nil {
		for t := 0; t <= turn && t < len(ref); t++ {
			fmt.Fprintf(&b, "[Reference answer, turn %d]\n%s\n[End of the reference answer]\n\n", t+1, ref[t])
		}
	}
	b.WriteString("[Conversation]\n")
	for t := 0; t <= turn; t++ {
		fmt.Fprintf(&b, "### User (turn %d):\n%s\n\n### Assistant (turn %d):\n%s\n\n", t+1, q.Turns[t], t+1, answers[t])
	}
	b.WriteString("[End of the conversation]")
	return b.String()
}

// pairPrompt asks for a verdict between two answer sets, a shown as A.
func pairPrompt(q *Question, a, b []string, turn int, ref []string) string {
	var s strings.Builder
	rule := ""
	if ref != nil {
		rule = refRule
	}
	what := "the user's question"
	if turn > 0 {
		what = fmt.Sprintf("the user's question in turn %d of the conversation (judge that turn's answers; the earlier turns are context)", turn+1)
	}
	fmt.Fprintf(&s, pairRules+"\n\n", what, rule)
	if ref != nil {
		for t := 0; t <= turn && t < len(ref); t++ {
			fmt.Fprintf(&s, "[Reference answer, turn %d]\n%s\n[End of the reference answer]\n\n", t+1, ref[t])
		}
	}
	for _, side := range []struct {
		name string
		ans  []string
	}{{"A", a}, {"B", b}} {
		fmt.Fprintf(&s, "[Conversation with assistant %s]\n", side.name)
		for t := 0; t <= turn; t++ {
			fmt.Fprintf(&s, "### User (turn %d):\n%s\n\n### Assistant %s (turn %d):\n%s\n\n", t+1, q.Turns[t], side.name, t+1, side.ans[t])
		}
		fmt.Fprintf(&s, "[End of the conversation with assistant %s]\n\n", side.name)
	}
	return strings.TrimSpace(s.String())
}

var (
	scoreRE      = regexp.MustCompile(`\[\[\s*(\d+(?:\.\d+)?)\s*\]\]`)
	scoreLooseRE = regexp.MustCompile(`\[\s*(\d+(?:\.\d+)?)\s*\]`)
	ratingRE     = regexp.MustCompile(`(?i)rating\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?`)
	verdictRE    = regexp.MustCompile(`\[\[\s*([ABC])\s*\]\]`)
)

// ParseScore reads a judge's rating: the last "[[n]]", else the last
// "[n]", else "Rating: n"; ok is false when there is none or it lies
// outside 1–10 (a malformed judgment).
func ParseScore(s string) (float64, bool) {
	for _, re := range []*regexp.Regexp{scoreRE, scoreLooseRE, ratingRE} {
		m := re.FindAllStringSubmatch(s, -1)
		if len(m) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(m[len(m)-1][1], 64)
		if err != nil || v < 1 || v > 10 {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// ParseVerdict reads the last "[[A]]", "[[B]]" or "[[C]]" (tie); "" when
// there is none.
func ParseVerdict(s string) string {
	m := verdictRE.FindAllStringSubmatch(s, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// Outcome of a pairwise comparison from the first model's side.
const (
	Win       = "win"
	Loss      = "loss"
	Tie       = "tie"
	Malformed = "malformed"
)

// Combine turns the verdicts of both orders into the outcome for the
// model shown as A in the first order: g1 has it as A, g2 as B. Both
// orders must agree for a win or a loss; a tie in either, or a
// disagreement (a judge swayed by position), is a tie. An unreadable
// verdict makes the comparison malformed.
func Combine(g1, g2 string) string {
	if g1 == "" || g2 == "" {
		return Malformed
	}
	switch {
	case g1 == "A" && g2 == "B":
		return Win
	case g1 == "B" && g2 == "A":
		return Loss
	}
	return Tie
}
