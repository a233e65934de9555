package align

import (
	"fmt"
	"github.com/herd-llm/herd/dist"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tokenizer"
)

// Job is one run from files to files (herd dpo, herd rm train): the base
// model, the data read and rendered, the training, and the outputs in
// herd sft's layouts.
type Job struct {
	Options
	Base, Tokenizer string   // the base model and its tokenizer ("": the embedded stories260K; the GGUF's own)
	Data, ValData   []string // preference files (any layout Open reads)
	SkipBad         bool     // count and skip malformed rows instead of stopping
	Template        string   // chat template name
	// MaxLen and MaxPrompt bound an example (prompt + the longer
	// response; the prompt when truncating), in tokens (MaxLen 0: the
	// model's context); Overflow says whether a longer one is truncated
	// or dropped.
	MaxLen, MaxPrompt int
	Overflow          Overflow
	Out               string // output directory
}

// load opens the base, reads and encodes the data; the model is closed
// by the caller.
func (j *Job) load(log io.Writer) (*llama.Model, tokenizer.Tokenizer, []Sample, error) {
	m, tok, err := checkpoint.Load(j.Base, j.Tokenizer)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl, err := chat.Lookup(j.Template)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	maxLen := j.MaxLen
	if maxLen <= 0 {
		maxLen = m.Config.ContextLen
	}
	read := func(what string, paths []string) ([]Sample, error) {
		exs, bad, err := ReadAll(paths, j.SkipBad)
		if err != nil {
			return nil, err
		}
		enc := &Encoder{Tok: tok, Template: tmpl, MaxLen: maxLen, MaxPrompt: j.MaxPrompt, Overflow: j.Overflow}
		ss, err := enc.EncodeAll(exs)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "%s: %s; %d malformed rows skipped\n", what, enc.Stats, bad)
		for _, n := range enc.Stats.Notes {
			fmt.Fprintf(log, "  %s\n", n)
		}
		return ss, nil
	}
	samples, err := read("data", j.Data)
	if err == nil && len(j.ValData) > 0 {
		j.Val, err = read("val data", j.ValData)
	}
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	return m, tok, samples, nil
}

// RunDPO runs herd dpo: the policy's outputs go to j.Out as herd sft
// writes them (model.gguf for full; adapter_config.json,
// adapter_model.safetensors and adapter.gguf for lora and qlora).
func RunDPO(j Job, log io.Writer) (*Result, error) {
	root, log, err := j.world(log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(j.Out, 0o755); err != nil {
		return nil, err
	}
	m, tok, samples, err := j.load(log)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	j.Tune.Log, j.Tune.Dir = log, j.Out
	res, err := DPOTune(m, samples, j.Options)
	if err != nil || !root { // only rank 0 writes the outputs
		return res, err
	}
	return res, j.saveTuned(res, tok, log)
}

// world joins the job's data-parallel ranks (j.Tune.Comm, else
// dist.World()) and says whether this is rank 0, the one that writes and
// logs (the others log nowhere).
func (j *Job) world(log io.Writer) (bool, io.Writer, error) {
	if j.Tune.Comm == nil {
		c, err := dist.World()
		if err != nil {
			return false, nil, err
		}
		j.Tune.Comm = c
	}
	if j.Tune.Comm.Rank() != 0 {
		return false, io.Discard, nil
	}
	return true, log, nil
}

// saveTuned writes a tuned model or its adapters as herd sft does, with
// the template's name and the recipe in a model.gguf.
func (j *Job) saveTuned(res *Result, tok tokenizer.Tokenizer, log io.Writer) error {
	r := &sft.Result{Model: res.Model, Adapters: res.Adapters}
	wrote, err := r.Save(j.Out, j.Tune.Method, sft.SaveOptions{Base: j.Base, Tokenizer: tok, Template: j.Template, Recipe: j.Tune.Recipe})
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "wrote %s\n", strings.Join(wrote, ", "))
	return nil
}

// RunRM runs herd rm train: for full, j.Out/reward.gguf (the model and its
// score.weight head); for lora and qlora the adapter as herd sft writes it
// and the head in j.Out/score.safetensors.
func RunRM(j Job, log io.Writer) (*Result, error) {
	root, log, err := j.world(log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(j.Out, 0o755); err != nil {
		return nil, err
	}
	m, tok, samples, err := j.load(log)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	j.Tune.Log, j.Tune.Dir = log, j.Out
	res, err := RewardTune(m, samples, j.Options)
	if err != nil || !root { // only rank 0 writes the outputs
		return res, err
	}
	if res.Adapters != nil {
		if err := j.saveTuned(res, tok, log); err != nil {
			return nil, err
		}
		p := filepath.Join(j.Out, HeadFile)
		if err := SaveHead(p, res.Head); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "wrote %s\n", p)
		return res, nil
	}
	p := filepath.Join(j.Out, RewardFile)
	extra := map[string]any{chat.HerdTemplateKey: j.Template}
	if j.Tune.Recipe != "" {
		extra["herd.recipe"] = j.Tune.Recipe
	}
	if err := SaveReward(p, res.Model, tok, res.Head, extra); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "wrote %s\n", p)
	return res, nil
}
