package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/judge"
	"github.com/spf13/cobra"
)

func judgeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "judge single|pairwise|answer",
		Short: "LLM-as-a-judge (MT-bench): grade answers 1–10, compare two models in both orders, write answers with a local model",
		Long: `MT-bench style evaluation with a judge model at any OpenAI-compatible
endpoint (--judge-endpoint, --judge-model).

  herd judge answer MODEL --questions Q.jsonl -o mine.jsonl
  herd judge single --questions Q.jsonl --answers mine.jsonl --judge-endpoint URL --judge-model NAME -o single.jsonl
  herd judge pairwise --questions Q.jsonl --answers mine.jsonl --baseline ref.jsonl --judge-endpoint URL --judge-model NAME -o pairs.jsonl

Questions: JSON Lines with question_id, category, turns (one or two user
turns) and, for maths, reasoning and coding, reference (the answers to
grade against; or --references, an answer file). Answers: FastChat's model
answer layout (question_id, model_id, choices[0].turns). A second turn is
answered with the model's own first answer in the conversation, and judged
with the whole conversation shown. Pairwise comparisons run in both orders;
a win needs both orders to agree, anything else is a tie. Every judgment is
written to the output with the judge's raw text; a score or verdict that
cannot be read is counted as malformed. Runs resume with --resume.`,
	}
	cmd.AddCommand(judgeSingleCmd(), judgePairwiseCmd(), judgeAnswerCmd())
	return cmd
}

// judgeFlags are the flags of the judging commands.
type judgeFlags struct {
	ep         endpointFlags
	o          judge.Options
	questions  string
	answers    string
	references string
}

func (f *judgeFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	f.ep.add(fs, "judge-")
	fs.StringVar(&f.questions, "questions", "", "question file (MT-bench layout)")
	fs.StringVar(&f.answers, "answers", "", "the model's answers (FastChat model answer layout)")
	fs.StringVar(&f.references, "references", "", "reference answers for maths, reasoning and coding (default: the questions' reference field)")
	fs.StringVarP(&f.o.Out, "output", "o", "", "judgment log (JSON Lines; journal beside it)")
	fs.BoolVar(&f.o.Resume, "resume", false, "continue a stopped run")
	fs.Int64Var(&f.o.Seed, "seed", 1, "seed sent with each judge request")
	fs.IntVar(&f.o.MaxTokens, "max-tokens", 1024, "max_tokens of a judgment")
	for _, n := range []string{"judge-endpoint", "judge-model", "questions", "answers", "output"} {
		cmd.MarkFlagRequired(n)
	}
}

// start makes the judge client; the context stops on Ctrl-C.
func (f *judgeFlags) start(cmd *cobra.Command) (context.Context, context.CancelFunc, error) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	c, err := f.ep.client(ctx)
	if err != nil {
		stop()
		return nil, nil, err
	}
	f.o.Client = c
	f.o.Concurrency = c.Concurrency()
	bar := &synthBar{w: cmd.ErrOrStderr()}
	f.o.OnProgress = bar.update
	return ctx, func() { bar.finish(); stop() }, nil
}

func judgeSingleCmd() *cobra.Command {
	var f judgeFlags
	cmd := &cobra.Command{
		Use:   "single --questions Q --answers A --judge-endpoint URL --judge-model NAME -o OUT",
		Short: "grade every answer turn from 1 to 10 (MT-bench single-answer grading)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, done, err := f.start(cmd)
			if err != nil {
				return err
			}
			rep, err := (&judge.Single{Options: f.o, Questions: f.questions, Answers: f.answers, References: f.references}).Run(ctx)
			done()
			if err != nil {
				return fmt.Errorf("%w (what is written stays; --resume continues)", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func judgePairwiseCmd() *cobra.Command {
	var (
		f        judgeFlags
		baseline string
	)
	cmd := &cobra.Command{
		Use:   "pairwise --questions Q --answers A --baseline B --judge-endpoint URL --judge-model NAME -o OUT",
		Short: "compare two models' answers in both orders: win rate against the baseline, answer lengths",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, done, err := f.start(cmd)
			if err != nil {
				return err
			}
			rep, err := (&judge.Pairwise{Options: f.o, Questions: f.questions, Answers: f.answers, Baseline: baseline, References: f.references}).Run(ctx)
			done()
			if err != nil {
				return fmt.Errorf("%w (what is written stays; --resume continues)", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&baseline, "baseline", "", "the reference model's answers")
	cmd.MarkFlagRequired("baseline")
	return cmd
}

func judgeAnswerCmd() *cobra.Command {
	var (
		o                                 judge.Options
		questions, tok, template, modelID string
		loras                             []string
		parallel, ctx, maxTokens          int
		temp                              float32
	)
	cmd := &cobra.Command{
		Use:   "answer [MODEL] --questions Q -o ANSWERS.jsonl",
		Short: "answer a question file with a local model (FastChat model answer layout)",
		Long: `Answers each question's turns in order with MODEL (a GGUF file or a
llama2.c checkpoint; none: the embedded stories260K) through its chat
template, --parallel questions at a time in one batch. A conversation
longer than the context is counted as too_long and left out, never cut.
Greedy unless --temperature is given.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := ""
			if len(args) == 1 {
				arg = args[0]
			}
			m, err := loadServed(arg, tok, template, loras, generate.SchedulerConfig{Parallel: parallel, Context: ctx})
			if err != nil {
				return err
			}
			defer m.Sched.Close()
			if modelID == "" {
				modelID = m.Name
			}
			sctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			bar := &synthBar{w: cmd.ErrOrStderr()}
			o.OnProgress, o.Concurrency = bar.update, parallel
			st, err := (&judge.Answers{Options: o, Questions: questions, Model: modelID,
				Answerer: &judge.Local{Sched: m.Sched, Tok: m.Tok, Template: m.Template, MaxTokens: maxTokens, Temperature: temp},
				Settings: fmt.Sprintf("%s %s %s %d %d %g", arg, template, loras, ctx, maxTokens, temp)}).Run(sctx)
			bar.finish()
			if st != nil {
				fmt.Fprint(cmd.ErrOrStderr(), st.Report())
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&questions, "questions", "", "question file (MT-bench layout)")
	fs.StringVarP(&o.Out, "output", "o", "", "answer file to write")
	fs.BoolVar(&o.Resume, "resume", false, "continue a stopped run")
	fs.Int64Var(&o.Seed, "seed", 1, "sampling seed (per question and turn)")
	fs.StringVar(&modelID, "model-id", "", "model_id written with the answers (default: the file's name)")
	fs.StringVar(&tok, "tokenizer", "", "tokenizer for a llama2.c checkpoint")
	fs.StringVar(&template, "template", "", "chat template: a name or a tokenizer_config.json (default: the model's own, else raw)")
	fs.StringSliceVar(&loras, "lora", nil, "LoRA adapters to apply, FILE[:SCALE]")
	fs.IntVar(&parallel, "parallel", 4, "questions answered together")
	fs.IntVarP(&ctx, "ctx", "c", 0, "context length (default: the model's)")
	fs.IntVar(&maxTokens, "max-tokens", 1024, "tokens per answer at most")
	fs.Float32Var(&temp, "temperature", 0, "sampling temperature (0: greedy)")
	cmd.MarkFlagRequired("questions")
	cmd.MarkFlagRequired("output")
	return cmd
}
