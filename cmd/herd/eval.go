package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval/tasks"
	"github.com/herd-llm/herd/kernels"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// evalArgs are herd eval's flags.
type evalArgs struct {
	specs, loras       []string
	tokPath, out       string
	kvType             string
	shots, limit, ctx  int
	batch, par, thread int
	one, samples       bool
}

func evalCmd() *cobra.Command {
	var a evalArgs
	cmd := &cobra.Command{
		Use:   "eval [MODEL] --task NAME=FILE[,FEWSHOT]|TASK.yaml ... [-o results.json]",
		Short: "benchmark tasks as lm-evaluation-harness scores them (multiple choice, generation with extraction)",
		Long: `Evaluates MODEL on each --task with lm-evaluation-harness's prompts and
metrics, on data files you supply (herd downloads nothing):

  --task NAME=FILE[,FEWSHOT]  a built-in layout over a JSONL file, with an
                              optional JSONL file of few-shot examples
                              (training or dev split); FILE may be a glob,
                              and MMLU's original CSV files are read as
                              they ship; NAME is a layout below
  --task TASK.yaml            a task file: the harness's keys (doc_to_text,
                              doc_to_choice, doc_to_target, description,
                              metric_list, generation_kwargs, filter_list,
                              include; templates take {{ field }}, [i],
                              .strip() and .index(field)) plus data: and
                              fewshot_data:, so the harness's arc, gsm8k
                              and MMLU files load once those are added; or
                              reader: NAME for a built-in layout

Multiple choice reports acc, acc_norm (TruthfulQA MC2 as truthfulqa_mc2's
acc); generation (GSM8K) decodes greedily and reports exact_match after the
strict ("#### N") and flexible (last number) extractions. Few-shot examples
are drawn with the harness's seed (1234); MMLU takes its subject's first K
dev questions and reports each subject and the averages. Documents that do
not fit in the context are skipped and counted, never truncated. The table
goes to stdout; -o writes results.json. Without MODEL, the embedded
stories260K is evaluated.

Built-in layouts: ` + strings.Join(tasks.Builtins(), ", ") + `.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			model := ""
			if len(args) == 1 {
				model = args[0]
			}
			return runEval(cmd, model, a)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&a.specs, "task", nil, "a task: NAME=FILE[,FEWSHOT] or a task YAML file (repeatable)")
	f.IntVar(&a.shots, "shots", -1, "few-shot examples (-1: each task's default)")
	f.IntVar(&a.limit, "limit", 0, "evaluate at most this many documents per task (0: all)")
	f.IntVarP(&a.ctx, "ctx-size", "c", 0, "positions a document may use (0: the model's context length)")
	f.IntVarP(&a.batch, "batch-size", "b", 512, "tokens per forward pass when scoring choices")
	f.IntVar(&a.par, "parallel", 8, "generations decoded together")
	f.BoolVar(&a.one, "one-at-a-time", false, "score each choice alone and generate one document at a time (the unbatched reference path)")
	f.BoolVar(&a.samples, "log-samples", false, "keep every document's prompt, scores and output in results.json")
	f.StringVarP(&a.out, "output", "o", "", "write results.json here")
	f.StringVar(&a.tokPath, "tokenizer", "", "tokenizer file; a GGUF model's own is used by default")
	f.IntVarP(&a.thread, "threads", "t", 0, "threads (0: all cores)")
	addKVFlag(f, &a.kvType)
	addLoRAFlag(f, &a.loras)
	return cmd
}

// runEval loads the tasks and the model, evaluates, prints the table and
// writes results.json.
func runEval(cmd *cobra.Command, model string, a evalArgs) error {
	kernels.SetThreads(a.thread)
	if len(a.specs) == 0 {
		return fmt.Errorf("give at least one --task")
	}
	var ts []*tasks.Task
	for _, s := range a.specs {
		t, err := tasks.Load(s)
		if err != nil {
			return err
		}
		ts = append(ts, t)
	}
	m, tok, err := checkpoint.Load(model, a.tokPath)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := applyKVType(a.kvType, m); err != nil {
		return err
	}
	if err := applyLoRAs(m, a.loras); err != nil {
		return err
	}
	packWeights(m)
	opt := tasks.Options{Shots: a.shots, Limit: a.limit, Ctx: a.ctx, BatchTokens: a.batch, OneAtATime: a.one, Parallel: a.par,
		Progress: evalProgress(cmd)}
	rs, err := tasks.Run(m, tok, ts, opt)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	for _, r := range rs {
		fmt.Fprintf(stderr, "%s: %d documents in %.1f s, %.2f examples/s", r.Task, r.Scored, r.Seconds, r.Rate)
		if len(r.Skipped) > 0 {
			fmt.Fprintf(stderr, "; %d skipped, longer than the context (first: %s)", len(r.Skipped), r.Skipped[0])
		}
		fmt.Fprintln(stderr)
	}
	if err := tasks.WriteTable(cmd.OutOrStdout(), rs); err != nil {
		return err
	}
	if a.out == "" {
		return nil
	}
	if model == "" {
		model = "stories260K (embedded)"
	}
	cfg := tasks.Config{Model: model, Adapters: a.loras, Shots: a.shots, Limit: a.limit, Ctx: a.ctx, BatchTokens: a.batch,
		OneAtATime: a.one, Seed: tasks.Seed, Date: time.Now().UTC().Format(time.RFC3339)}
	if cfg.Ctx <= 0 {
		cfg.Ctx = m.Config.ContextLen
	}
	return tasks.WriteJSON(a.out, rs, cfg, a.samples)
}

// evalProgress draws one progress bar per task on stderr.
func evalProgress(cmd *cobra.Command) func(string, int, int) {
	var bar *progressbar.ProgressBar
	cur := ""
	return func(task string, done, total int) {
		if task != cur || bar == nil {
			cur = task
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetWidth(25),
				progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("ex"), progressbar.OptionSetDescription(task),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }))
		}
		_ = bar.Set(done)
		if done == total {
			_ = bar.Finish()
		}
	}
}
