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
	"github.com/herd-llm/herd/eval/tasks"
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
	// KLD is a quantized stage's mean KL divergence from the model it
	// was quantized from (the rl stage's float model) on the held-out
	// stories, SameTop the share of positions where both models' most
	// likely next token agree (llama-perplexity --kl-divergence's);
	// absent for the float stages.
	KLD     *float64 `json:"kld,omitempty"`
	KLDErr  *float64 `json:"kld_err,omitempty"`
	SameTop *float64 `json:"same_top,omitempty"`
	// Acc and AccNorm are the multiple-choice task's (story_cloze, run by
	// herd eval's task machinery, zero-shot): the share of held-out
	// stories whose own next sentence gets the highest log-likelihood of
	// the four endings, raw and normalised by the ending's length in bytes,
	// each with its standard error.
	Acc        float64 `json:"acc"`
	AccErr     float64 `json:"acc_stderr"`
	AccNorm    float64 `json:"acc_norm"`
	AccNormErr float64 `json:"acc_norm_stderr"`
	// Reward is the reward model's mean score of the stage's answers to
	// the evaluation prompts; WinRate the share of prompts where it beats
	// the previous stage's answer (ties count half; absent for the first).
	Reward float64 `json:"reward"`
	// Empty counts the answers that were empty (the model ended its turn
	// at once); the reward model scores such an answer as it is (the
	// prompt and the end of the turn), as herd rl's rollouts are scored.
	Empty   int       `json:"empty_answers"`
	WinRate *float64  `json:"win_rate,omitempty"`
	Rewards []float64 `json:"rewards"`
	Answers []string  `json:"answers"`
}

// stageModels are the models the evaluation compares, in road order.
func (r *Road) stageModels() [][2]string {
	return [][2]string{
		{"base", "data/base.gguf"}, {"pretrain", "pretrain/model.gguf"}, {"sft", "sft/model.gguf"},
		{"dpo", "dpo/model.gguf"}, {"rl", "rl/model.gguf"}, {"quantize", "quantize/" + r.quantName()},
		{"rtn-q4_0", "gptq/" + rtnName}, {"gptq-q4_0", "gptq/" + gptqName},
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
	task, err := tasks.LoadFile(r.Path("data", clozeTask))
	if err != nil {
		return err
	}
	ref, _, err := checkpoint.Load(r.final(), "")
	if err != nil {
		return err
	}
	defer ref.Close()
	var stages []Stage
	for _, sm := range r.stageModels() {
		st, err := r.evalStage(sm[0], sm[1], ps, heldOut, task, tmpl, rm, ref)
		if err != nil {
			return fmt.Errorf("stage %s: %w", sm[0], err)
		}
		if len(stages) > 0 {
			w := winRate(st.Rewards, stages[len(stages)-1].Rewards)
			st.WinRate = &w
		}
		stages = append(stages, st)
		kld := ""
		if st.KLD != nil {
			kld = fmt.Sprintf("  KLD %.4f same top %.1f%%", *st.KLD, 100**st.SameTop)
		}
		fmt.Fprintf(r.log, "   %-9s perplexity %7.3f ± %.3f%s  story_cloze acc %.3f acc_norm %.3f  reward %+.3f (%d empty)%s\n", st.Name, st.Perplexity, st.PerplexityErr,
			kld, st.Acc, st.AccNorm, st.Reward, st.Empty, winText(st.WinRate))
	}
	for _, st := range stages {
		in.figure(st.Name+"/perplexity", st.Perplexity)
		in.figure(st.Name+"/reward", st.Reward)
		in.figure(st.Name+"/acc", st.Acc)
		in.figure(st.Name+"/acc_norm", st.AccNorm)
		if st.KLD != nil {
			in.figure(st.Name+"/kld", *st.KLD)
		}
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

// evalStage measures one stage's model: perplexity (and KLD from ref
// when the model is quantized), the multiple-choice task, answers,
// rewards.
func (r *Road) evalStage(name, rel string, ps []string, heldOut []int, task *tasks.Task, tmpl *chat.Template, rm *align.RewardModel, ref *llama.Model) (Stage, error) {
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
	if quantized(m) {
		k, err := eval.KLDivergence(ref, m, heldOut, tok.BOS(), eval.Options{Ctx: ctx}, nil)
		if err != nil {
			return st, err
		}
		kl, ke := k.MeanKLD()
		same, _ := k.SameTopP()
		st.KLD, st.KLDErr, st.SameTop = &kl, &ke, &same
	}
	res, err := tasks.Run(m, tok, []*tasks.Task{task}, tasks.Options{Shots: -1})
	if err != nil {
		return st, err
	}
	for _, mt := range res[0].Metrics {
		switch mt.Name {
		case "acc":
			st.Acc, st.AccErr = mt.Value, mt.Stderr
		case "acc_norm":
			st.AccNorm, st.AccNormErr = mt.Value, mt.Stderr
		}
	}
	enc := &align.Encoder{Tok: tok, Template: tmpl, MaxLen: rm.Policy.Model.Config.ContextLen}
	var seqs [][]int
	for _, p := range ps {
		a, err := answer(m, tok, tmpl, p)
		if err != nil {
			return st, err
		}
		st.Answers = append(st.Answers, a)
		msgs := []chat.Message{{Role: chat.User, Content: p}}
		if strings.TrimSpace(a) == "" {
			// the prompt and the end of the turn: what the model wrote
			st.Empty++
			rd, err := tmpl.Render(msgs, true)
			if err != nil {
				return st, err
			}
			seqs = append(seqs, append(rd.Encode(tok).IDs, tok.EOS()))
			continue
		}
		s, err := enc.Encode(&align.Example{Prompt: msgs, Chosen: a, Where: name})
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

// quantized says whether any of m's layer matrices is stored quantized.
func quantized(m *llama.Model) bool {
	for _, l := range m.Layers {
		if l.Wq.DType.IsQuantized() {
			return true
		}
	}
	return false
}
