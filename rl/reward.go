package rl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/herd-llm/herd/align"
)

// Item is one rollout as a reward sees it.
type Item struct {
	Prompt     string // the prompt as the model saw it (rendered)
	Completion string // the sampled response's text (without EOS)
	Answer     string // the prompt's reference answer, when its file had one
	Tokens     []int  // prompt and response tokens, as the model read them
	Len        int    // response tokens
	EOS        bool   // the response ended with the end-of-sequence token
}

// A Reward scores rollouts: one number per item, or NaN for an item it
// could not score (counted and left out of the update, never a silent 0).
type Reward interface {
	Score(ctx context.Context, items []Item) ([]float64, error)
	Name() string
}

// A Rule is a built-in verifiable reward of one rollout.
type Rule struct {
	Spec  string
	score func(it *Item) float64
}

// Rules are summed rule rewards.
type Rules []Rule

// Name lists the rules.
func (rs Rules) Name() string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Spec)
	}
	return "rules " + strings.Join(s, " + ")
}

// Score sums the rules of each item.
func (rs Rules) Score(_ context.Context, items []Item) ([]float64, error) {
	out := make([]float64, len(items))
	for i := range items {
		for _, r := range rs {
			out[i] += r.score(&items[i])
		}
	}
	return out, nil
}

// RuleHelp lists the rules ParseRule reads.
const RuleHelp = `contains:WORD (1 when the completion holds WORD as a word, case-insensitive), ` +
	`avoids:WORD (1 when it does not), regex:RE (1 on a match), length:N (1 − |tokens − N|/N, at least −1), ` +
	`eos:N (1 when the response ends with EOS within N tokens), json (1 when the completion is valid JSON), ` +
	`gsm8k (1 when the number after "####" equals the prompt's answer's)`

// ParseRule reads one rule (RuleHelp).
func ParseRule(spec string) (Rule, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	r := Rule{Spec: spec}
	num := func() (int, error) {
		n, err := strconv.Atoi(arg)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("reward rule %q: %s needs a positive number of tokens", spec, kind)
		}
		return n, nil
	}
	switch kind {
	case "contains", "avoids":
		if strings.TrimSpace(arg) == "" {
			return r, fmt.Errorf("reward rule %q: %s needs a word", spec, kind)
		}
		want := kind == "contains"
		w := strings.ToLower(arg)
		r.score = func(it *Item) float64 { return b2f(hasWord(it.Completion, w) == want) }
	case "regex":
		re, err := regexp.Compile(arg)
		if err != nil {
			return r, fmt.Errorf("reward rule %q: %w", spec, err)
		}
		r.score = func(it *Item) float64 { return b2f(re.MatchString(it.Completion)) }
	case "length":
		n, err := num()
		if err != nil {
			return r, err
		}
		r.score = func(it *Item) float64 { return max(-1, 1-math.Abs(float64(it.Len-n))/float64(n)) }
	case "eos":
		n, err := num()
		if err != nil {
			return r, err
		}
		r.score = func(it *Item) float64 { return b2f(it.EOS && it.Len <= n) }
	case "json":
		r.score = func(it *Item) float64 { return b2f(json.Valid([]byte(strings.TrimSpace(it.Completion)))) }
	case "gsm8k":
		r.score = func(it *Item) float64 {
			got, ok := FinalNumber(it.Completion)
			want, ok2 := FinalNumber(it.Answer)
			if !ok2 {
				want, ok2 = normNumber(it.Answer)
			}
			return b2f(ok && ok2 && got == want)
		}
	default:
		return r, fmt.Errorf("reward rule %q: unknown; the rules are %s", spec, RuleHelp)
	}
	return r, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// hasWord reports whether text holds w (lower case) as a whole word.
func hasWord(text, w string) bool {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' })
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}

var finalRe = regexp.MustCompile(`####\s*(-?[\d,]*\.?\d+)`)

// FinalNumber is the number after the last "####" of a GSM8K-style answer
// (commas dropped, a trailing ".0…" removed), and whether there is one.
func FinalNumber(s string) (string, bool) {
	m := finalRe.FindAllStringSubmatch(s, -1)
	if m == nil {
		return "", false
	}
	return normNumber(m[len(m)-1][1])
}

// normNumber is a number's canonical text.
func normNumber(s string) (string, bool) {
	s = strings.ReplaceAll(strings.TrimSpace(s), ",", "")
	if _, err := strconv.ParseFloat(s, 64); err != nil || s == "" {
		return "", false
	}
	if i := strings.IndexByte(s, '.'); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
		s = s[:i]
	}
	return s, true
}

// Model is a reward model from herd rm train.
type Model struct {
	RM   *align.RewardModel
	Path string
}

// Name is the reward model's file.
func (m Model) Name() string { return "reward model " + m.Path }

// Score runs the reward model over prompt + response tokens in batches.
func (m Model) Score(_ context.Context, items []Item) ([]float64, error) {
	seqs := make([][]int, len(items))
	for i := range items {
		seqs[i] = items[i].Tokens
	}
	return m.RM.Score(seqs)
}

// HTTP is an external scorer: each rollout is POSTed to URL as JSON
// {"prompt", "completion", "answer"} and the reply is a number, or a JSON
// object with a numeric "reward" (or "score"). A timeout, an HTTP error or
// a reply that is not a finite number is an error naming the item, or with
// Skip a NaN (a counted skip).
type HTTP struct {
	URL     string
	Timeout time.Duration // per request (0: 30 s)
	Skip    bool
	Client  *http.Client
	// Concurrency is the requests in flight at once (0: 4); the scores
	// come back in the rollouts' order whatever order they finish in.
	Concurrency int
}

// Name is the scorer's address.
func (h *HTTP) Name() string { return "scorer " + h.URL }

// Score posts every item.
func (h *HTTP) Score(ctx context.Context, items []Item) ([]float64, error) {
	out := make([]float64, len(items))
	errs := make([]error, len(items))
	n := h.Concurrency
	if n <= 0 {
		n = 4
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = h.one(ctx, &items[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			continue
		}
		if !h.Skip {
			return nil, fmt.Errorf("scorer %s: rollout %d: %w (pass --scorer-skip to count and skip such rollouts)", h.URL, i, err)
		}
		out[i] = math.NaN()
	}
	return out, nil
}

func (h *HTTP) one(ctx context.Context, it *Item) (float64, error) {
	t := h.Timeout
	if t <= 0 {
		t = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"prompt": it.Prompt, "completion": it.Completion, "answer": it.Answer})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	c := h.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %s: %.200q", resp.Status, b)
	}
	return parseScore(b)
}

// parseScore reads a number or {"reward": x} / {"score": x}.
func parseScore(b []byte) (float64, error) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("the reply %.200q is not JSON", b)
	}
	if o, ok := v.(map[string]any); ok {
		if r, ok := o["reward"]; ok {
			v = r
		} else {
			v = o["score"]
		}
	}
	x, ok := v.(float64)
	if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("the reply %.200q is not a number nor an object with a numeric reward", b)
	}
	return x, nil
}
