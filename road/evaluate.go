package road

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/herd-llm/herd/align"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// answerTokens is the longest answer a stage writes to a prompt.
const answerTokens = 96

// Stage is one model on the road and how it did.
type Stage struct {
	Name  string `json:"name"`
	Model string `json:"model"` // relative to Dir
	// Perplexity on the held-out stories (llama-perplexity's chunking,
	// 256-token chunks) and its standard error.
	Perplexity    float64 `json:"perplexity"`
	PerplexityErr float64 `json:"perplexity_err"`
	// Reward is the reward model's mean score of the stage's answers to
	// the evaluation prompts; WinRate the share of prompts where it beats
	// the previous stage's answer (ties count half; absent for the first).
	// ChoiceAccuracy is a two-choice task on the held-out stories: the
	// share where the model gives a story's own next sentences a higher
	// log-likelihood than another story's (HellaSwag's acc).
	ChoiceAccuracy float64 `json:"choice_accuracy"`
	Reward         float64 `json:"reward"`
	// Empty counts the answers that were empty (the model ended its turn
	// at once), scored as a bare full stop: many of them beside a high
	// reward is the reward model being gamed.
	Empty   int       `json:"empty_answers"`
	WinRate *float64  `json:"win_rate,omitempty"`
	Rewards []float64 `json:"rewards"`
	Answers []string  `json:"answers"`
}

// stageModels are the models the evaluation compares, in road order.
func (r *Road) stageModels() [][2]string {
	return [][2]string{
		{"base", "data/base.gguf"}, {"pretrain", "pretrain/model.gguf"}, {"sft", "sft/model.gguf"},
		{"dpo", "dpo/model.gguf"}, {"quantize", "quantize/" + r.quantName()},
	}
}

func runEval(r *Road, in *Info) error {
	kernels.SetThreads(r.Threads)
	var ps []string
	b, err := os.ReadFile(r.Path("data", "prompts.json"))
	if err == nil {
		err = json.Unmarshal(b, &ps)
	}
	if err != nil {
		return fmt.Errorf("prompts.json: %w", err)
	}
	rm, tok, err := align.LoadReward(r.Path("rm", align.RewardFile), "", "")
	if err != nil {
		return err
	}
	defer rm.Policy.Model.Close()
	tmpl, err := chat.Lookup(Template)
	if err != nil {
		return err
	}
	text, err := heldOutText()
	if err != nil {
		return err
	}
	heldOut := tok.Encode(text, true, false)
	pairs, err := choicePairs(tok, tmpl)
	if err != nil {
		return err
	}
	var stages []Stage
	for _, sm := range r.stageModels() {
		st, err := r.evalStage(sm[0], sm[1], ps, heldOut, pairs, tmpl, rm)
		if err != nil {
			return fmt.Errorf("stage %s: %w", sm[0], err)
		}
		if len(stages) > 0 {
			w := winRate(st.Rewards, stages[len(stages)-1].Rewards)
			st.WinRate = &w
		}
		stages = append(stages, st)
		fmt.Fprintf(r.log, "   %-9s perplexity %7.3f ± %.3f  2-choice %.0f%%  reward %+.3f%s\n", st.Name, st.Perplexity, st.PerplexityErr,
			100*st.ChoiceAccuracy, st.Reward, winText(st.WinRate))
	}
	for _, st := range stages {
		in.figure(st.Name+"/perplexity", st.Perplexity)
		in.figure(st.Name+"/reward", st.Reward)
		in.figure(st.Name+"/choice_accuracy", st.ChoiceAccuracy)
	}
	if err := writeJSON(r.Path("eval", "stages.json"), stages); err != nil {
		return err
	}
	in.Outputs = append(in.Outputs, "eval/stages.json")
	return nil
}

func winText(w *float64) string {
	if w == nil {
		return ""
	}
	return fmt.Sprintf("  win rate vs previous %.0f%%", 100**w)
}

// heldOutText is the held-out stories joined as one text.
func heldOutText() (string, error) {
	val, err := stories("stories-val.jsonl.gz")
	return strings.Join(val, "\n"), err
}

// evalStage measures one stage's model: perplexity, answers, rewards.
func (r *Road) evalStage(name, rel string, ps []string, heldOut []int, pairs []align.Sample, tmpl *chat.Template, rm *align.RewardModel) (Stage, error) {
	st := Stage{Name: name, Model: rel}
	m, tok, err := checkpoint.Load(r.Path(rel), "")
	if err != nil {
		return st, err
	}
	defer m.Close()
	ctx := min(256, m.Config.ContextLen, len(heldOut)/2)
	pr, err := eval.Perplexity(m, heldOut, tok.BOS(), eval.Options{Ctx: ctx})
	if err != nil {
		return st, err
	}
	st.Perplexity, st.PerplexityErr = pr.PPL, pr.PPLErr
	if st.ChoiceAccuracy, err = choiceAccuracy(m, pairs); err != nil {
		return st, err
	}
	enc := &align.Encoder{Tok: tok, Template: tmpl, MaxLen: rm.Policy.Model.Config.ContextLen}
	var seqs [][]int
	for _, p := range ps {
		a, err := answer(m, tok, tmpl, p)
		if err != nil {
			return st, err
		}
		st.Answers = append(st.Answers, a)
		if strings.TrimSpace(a) == "" {
			a = "." // an empty answer is scored as a bare full stop
			st.Empty++
		}
		s, err := enc.Encode(&align.Example{Prompt: []chat.Message{{Role: chat.User, Content: p}}, Chosen: a, Where: name})
		if err != nil || s == nil {
			return st, fmt.Errorf("encoding the answer to %q: %v", p, err)
		}
		seqs = append(seqs, slices.Concat(s.Prompt, s.Chosen))
	}
	if st.Rewards, err = rm.Score(seqs); err != nil {
		return st, err
	}
	for _, x := range st.Rewards {
		st.Reward += x / float64(len(st.Rewards))
	}
	return st, nil
}

// answer is m's greedy answer to prompt in tmpl (repetition penalised
// as llama.cpp's default 1.1), cut at EOS, a stop token or a stop string.
func answer(m *llama.Model, tok tokenizer.Tokenizer, tmpl *chat.Template, prompt string) (string, error) {
	rd, err := tmpl.Render([]chat.Message{{Role: chat.User, Content: prompt}}, true)
	if err != nil {
		return "", err
	}
	ids := rd.Encode(tok).IDs
	out, err := generate.Tokens(m, ids, answerTokens, generate.NewSampler(generate.SamplerConfig{RepeatPenalty: 1.1}))
	if err != nil {
		return "", err
	}
	gen := out[len(ids):]
	if i := slices.Index(gen, tok.EOS()); i >= 0 {
		gen = gen[:i]
	}
	text := tok.Decode(gen)
	for _, s := range tmpl.Stop {
		if i := strings.Index(text, s); i >= 0 {
			text = text[:i]
		}
	}
	return tidy(text), nil
}

// tidy trims an answer and folds its runs of blank lines into one line
// break, for the report's table.
func tidy(s string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimRight(l, " \t"))
		}
	}
	return strings.Join(lines, "\n")
}

// winRate is the share of positions where a beats b, ties counted half.
func winRate(a, b []float64) float64 {
	var w float64
	for i := range a {
		switch {
		case a[i] > b[i]:
			w++
		case a[i] == b[i]:
			w += 0.5
		}
	}
	return w / math.Max(1, float64(len(a)))
}

// choicePairs are the two-choice task's items, made from the held-out
// stories: after a story's first sentence, its own next two sentences
// (right) or the next story's (wrong), as in HellaSwag's endings.
func choicePairs(tok tokenizer.Tokenizer, tmpl *chat.Template) ([]align.Sample, error) {
	val, err := stories("stories-val.jsonl.gz")
	if err != nil {
		return nil, err
	}
	var exs []*align.Example
	for i, s := range val {
		a, b := sentences(s), sentences(val[(i+1)%len(val)])
		if len(a) < 3 || len(b) < 3 {
			continue
		}
		exs = append(exs, &align.Example{Prompt: []chat.Message{{Role: chat.User, Content: "Continue the story: " + a[0]}},
			Chosen: a[1] + " " + a[2], Rejected: b[1] + " " + b[2], Paired: true, Where: fmt.Sprintf("held-out story %d", i+1)})
	}
	enc := &align.Encoder{Tok: tok, Template: tmpl, MaxLen: 512}
	return enc.EncodeAll(exs)
}

// choiceAccuracy is the share of pairs whose chosen response m gives a
// higher log-likelihood (after the prompt) than the rejected one.
func choiceAccuracy(m *llama.Model, pairs []align.Sample) (float64, error) {
	if len(pairs) == 0 {
		return math.NaN(), nil
	}
	var right float64
	for _, p := range pairs {
		c, err := logLikelihood(m, p.Prompt, p.Chosen)
		if err != nil {
			return 0, err
		}
		rj, err := logLikelihood(m, p.Prompt, p.Rejected)
		if err != nil {
			return 0, err
		}
		switch {
		case c > rj:
			right++
		case c == rj:
			right += 0.5
		}
	}
	return right / float64(len(pairs)), nil
}

// logLikelihood is Σ log p(resp[i] | prompt, resp[:i]) under m, each
// log-softmax taken in float64.
func logLikelihood(m *llama.Model, prompt, resp []int) (float64, error) {
	seq := slices.Concat(prompt, resp)
	if len(seq) > m.Config.ContextLen || len(prompt) == 0 {
		return 0, fmt.Errorf("a pair of %d tokens does not fit the context %d", len(seq), m.Config.ContextLen)
	}
	var st llama.State
	logits, err := m.Forward(&st, m.NewKVCache(len(seq)), seq[:len(seq)-1], 0, true)
	if err != nil {
		return 0, err
	}
	v := m.Config.VocabSize
	var sum float64
	for i := len(prompt) - 1; i < len(seq)-1; i++ {
		row := logits[i*v : (i+1)*v]
		sum += logSoftmaxAt(row, seq[i+1])
	}
	return sum, nil
}

// logSoftmaxAt is log softmax(row)[k] in float64.
func logSoftmaxAt(row []float32, k int) float64 {
	mx := math.Inf(-1)
	for _, x := range row {
		mx = math.Max(mx, float64(x))
	}
	var z float64
	for _, x := range row {
		z += math.Exp(float64(x) - mx)
	}
	return float64(row[k]) - mx - math.Log(z)
}
