package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/herd-llm/herd/oai"
	"github.com/herd-llm/herd/synth"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// endpointFlags are the flags of every command that talks to a teacher or
// judge endpoint.
type endpointFlags struct {
	cfg     oai.Config
	timeout time.Duration
}

func (e *endpointFlags) add(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&e.cfg.Endpoint, prefix+"endpoint", "", "OpenAI-compatible endpoint: base URL (http://127.0.0.1:8080, …/v1) or the chat completions URL")
	fs.StringVar(&e.cfg.Model, prefix+"model", "", "model name at the endpoint")
	fs.StringVar(&e.cfg.APIKey, "api-key", "", "API key (default: $OPENAI_API_KEY)")
	fs.IntVar(&e.cfg.Concurrency, "concurrency", 4, "requests in flight at most")
	fs.Float64Var(&e.cfg.RPS, "rps", 0, "requests started per second at most (0: no limit)")
	fs.IntVar(&e.cfg.Retries, "retries", 5, "retries of a request on 429, 5xx, timeouts and dropped connections (exponential backoff)")
	fs.DurationVar(&e.timeout, "timeout", 10*time.Minute, "time limit of one attempt")
}

func (e *endpointFlags) client(ctx context.Context) (*oai.Client, error) {
	if e.cfg.APIKey == "" {
		e.cfg.APIKey = os.Getenv("OPENAI_API_KEY")
	}
	if e.cfg.Retries == 0 {
		e.cfg.Retries = -1
	}
	e.cfg.Timeout = e.timeout
	c, err := oai.New(e.cfg)
	if err != nil {
		return nil, err
	}
	return c, c.CheckModel(ctx)
}

// synthFlags are the flags every pipeline shares.
type synthFlags struct {
	ep endpointFlags
	o  synth.Options
	q  bool
}

func (s *synthFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	s.ep.add(fs, "")
	fs.StringVarP(&s.o.Out, "output", "o", "", "output JSON Lines file (its journal: OUT.journal)")
	fs.BoolVar(&s.o.Resume, "resume", false, "continue a stopped run from OUT and OUT.journal")
	fs.Int64Var(&s.o.Seed, "seed", 1, "seed of every random choice and of each request")
	fs.Float64Var(&s.o.Temperature, "temperature", 0.7, "sampling temperature of the generation requests")
	fs.IntVar(&s.o.MaxTokens, "max-tokens", 0, "max_tokens of the generation requests (0: the endpoint's default)")
	fs.StringSliceVar(&s.o.Stop, "stop", nil, "stop strings of the generation requests")
	fs.BoolVarP(&s.q, "quiet", "q", false, "no progress bar")
	cmd.MarkFlagRequired("endpoint")
	cmd.MarkFlagRequired("model")
	cmd.MarkFlagRequired("output")
}

// run starts the client, draws the progress bar, runs the pipeline and
// prints the report; Ctrl-C stops it cleanly for --resume.
func (s *synthFlags) run(cmd *cobra.Command, p interface {
	Run(context.Context) (*synth.Stats, error)
}) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := s.ep.client(ctx)
	if err != nil {
		return err
	}
	s.o.Client = c
	w := cmd.ErrOrStderr()
	bar := &synthBar{w: w, quiet: s.q}
	s.o.OnProgress = bar.update
	st, err := p.Run(ctx)
	bar.finish()
	if st != nil {
		fmt.Fprint(w, st.Report())
		if cs := c.Stats(); cs.Retries > 0 {
			fmt.Fprintf(w, "%d retries\n", cs.Retries)
		}
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("stopped; continue with --resume: %w", err)
	}
	if err != nil {
		return fmt.Errorf("%w (what is written stays; --resume continues)", err)
	}
	return nil
}

// synthBar shows units done (or items kept against a target), kept and
// dropped counts and tokens.
type synthBar struct {
	w     io.Writer
	quiet bool
	pb    *progressbar.ProgressBar
	max   int
}

func (b *synthBar) update(s synth.Stats) {
	if b.quiet {
		return
	}
	total, done := s.Total, s.Units
	if s.Target > 0 {
		total, done = s.Target, s.Kept
	}
	if b.pb == nil || total != b.max {
		if b.pb != nil {
			b.pb.Finish()
			fmt.Fprintln(b.w)
		}
		b.max = total
		b.pb = progressbar.NewOptions(total, progressbar.OptionSetWriter(b.w), progressbar.OptionSetWidth(20),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionShowCount(), progressbar.OptionFullWidth())
	}
	desc := fmt.Sprintf("kept %d dropped %d", s.Kept, s.Dropped())
	if len(s.Drops) > 0 {
		desc += " (" + s.DropSummary() + ")"
	}
	b.pb.Describe(desc + fmt.Sprintf(" %d tok", s.Usage.Total()))
	b.pb.Set(done)
}

func (b *synthBar) finish() {
	if b.pb != nil {
		b.pb.Finish()
		fmt.Fprintln(b.w)
	}
}

func synthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "synth self-instruct|evol-instruct|self-chat|distill --endpoint URL --model NAME -o OUT.jsonl",
		Short: "make instruction data with a teacher model behind an OpenAI-compatible endpoint",
		Long: `Makes instruction data with a teacher model at any OpenAI-compatible
chat endpoint (herd serve, llama-server, vLLM, a hosted API):

  self-instruct  Alpaca's self-instruct from a seed file (175-task layout)
  evol-instruct  WizardLM's Evol-Instruct over a file of prompts
  self-chat      Baize's self-chat from seed questions (ShareGPT output)
  distill        answers (or judged preference pairs) for a file of prompts

Output is JSON Lines, one item per line with a stable "id", written as it
comes; OUT.journal beside it records each unit of work, so a run stopped
at any point (Ctrl-C, a crash, an endpoint that went away) continues with
--resume to the file an uninterrupted run writes. With a deterministic
endpoint (herd serve honours the seed sent with each request), the same
--seed gives the same file. The report at the end counts items kept,
drops by reason, requests and tokens.`,
	}
	cmd.AddCommand(selfInstructCmd(), evolInstructCmd(), selfChatCmd(), distillCmd())
	return cmd
}

func selfInstructCmd() *cobra.Command {
	var (
		f          synthFlags
		p          synth.SelfInstruct
		headerFile string
	)
	cmd := &cobra.Command{
		Use:   "self-instruct --seeds SEED.jsonl --endpoint URL --model NAME -o OUT.jsonl",
		Short: "self-instruct as Alpaca's generator ran it: sampled seed and generated tasks in each prompt, Alpaca's filters",
		Long: `Each request shows --shown example tasks (--machine of them generated
ones, once there are some) and asks for --ask more, numbered as
"N. Instruction: / N. Input: / N. Output:" and separated by ###. Parsed
tasks are dropped (and counted) when their ROUGE-L against any seed or kept
instruction exceeds --max-rouge, they hold a blacklisted word (image,
graph, file, …), have fewer than --min-words or more than --max-words
words, start with "Write a program", with punctuation, or (with
--english-only) with a character outside ASCII, come without an
instruction, or were cut by the token limit. A task without an output is
answered by the teacher. Output: Alpaca's fields (instruction, input,
output) and the id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if headerFile != "" {
				b, err := os.ReadFile(headerFile)
				if err != nil {
					return err
				}
				p.Header = string(b)
			}
			return f.run(cmd, runFunc(func(ctx context.Context) (*synth.Stats, error) { p.Options = f.o; return p.Run(ctx) }))
		},
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&p.Seeds, "seeds", "", "seed tasks, JSON Lines: instruction, instances [{input, output}]")
	fs.IntVar(&p.Target, "target", 100, "instructions to keep")
	fs.IntVar(&p.Shown, "shown", 8, "example tasks in each prompt")
	fs.IntVar(&p.Machine, "machine", 2, "of them generated tasks")
	fs.IntVar(&p.Ask, "ask", 20, "tasks asked for per request")
	fs.IntVar(&p.Wave, "wave", 0, "requests sent together (default: --concurrency)")
	fs.IntVar(&p.MaxWaves, "max-waves", 1000, "stop after this many waves")
	fs.StringVar(&headerFile, "header", "", "file with the prompt text before the examples (%d: the number asked for)")
	fs.Float64Var(&p.Filter.MaxRouge, "max-rouge", 0.7, "drop instructions with ROUGE-L above this against a kept one")
	fs.IntVar(&p.Filter.MinWords, "min-words", 4, "drop instructions with fewer words")
	fs.IntVar(&p.Filter.MaxWords, "max-words", 150, "drop instructions with more words")
	fs.StringSliceVar(&p.Filter.Blacklist, "blacklist", synth.DefaultBlacklist, "drop instructions with these words")
	fs.BoolVar(&p.Filter.EnglishOnly, "english-only", false, "drop instructions that start with a character outside ASCII")
	cmd.MarkFlagRequired("seeds")
	return cmd
}

func evolInstructCmd() *cobra.Command {
	var (
		f synthFlags
		p synth.EvolInstruct
	)
	cmd := &cobra.Command{
		Use:   "evol-instruct --input PROMPTS --endpoint URL --model NAME -o OUT.jsonl",
		Short: "Evol-Instruct (WizardLM): rewrite prompts deeper and broader for --rounds rounds, with the elimination rules",
		Long: `Every round rewrites each instruction of the pool with an operation drawn
from --ops (add_constraints, deepen, concretize, increase_reasoning,
complicate_input: in depth; breadth: a new instruction in the same
domain). An evolution is eliminated (and counted) when it repeats the
rewriting prompt's wording (leak), when the teacher judges it equal to its
parent (no_gain; judge_unparsed when the verdict cannot be read), when the
teacher's response says sorry in fewer than --sorry-words words, is
shorter than --min-response-words, or holds nothing but the instruction's
own words and stop words (copies_prompt). A surviving evolution takes its
parent's place in the pool and is written with its response and ancestry
(round, operation, parent). PROMPTS: Alpaca, ShareGPT, OpenAI messages or
plain lines.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, runFunc(func(ctx context.Context) (*synth.Stats, error) { p.Options = f.o; return p.Run(ctx) }))
		},
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&p.Input, "input", "", "prompts to evolve")
	fs.IntVar(&p.Rounds, "rounds", 4, "rounds of evolution (M)")
	fs.StringSliceVar(&p.Ops, "ops", synth.EvolOps, "operations to draw from")
	fs.IntVar(&p.SorryWords, "sorry-words", 80, "drop a response that says sorry in fewer words than this")
	fs.IntVar(&p.MinResponseWords, "min-response-words", 1, "drop responses with fewer words")
	fs.BoolVar(&p.LenientJudge, "lenient-judge", false, "keep an evolution whose equality verdict cannot be read (small teachers)")
	cmd.MarkFlagRequired("input")
	return cmd
}

// runFunc makes a function a pipeline.
type runFunc func(context.Context) (*synth.Stats, error)

func (f runFunc) Run(ctx context.Context) (*synth.Stats, error) { return f(ctx) }

func selfChatCmd() *cobra.Command {
	var (
		f synthFlags
		p synth.SelfChat
	)
	cmd := &cobra.Command{
		Use:   "self-chat --input QUESTIONS --endpoint URL --model NAME -o OUT.jsonl",
		Short: "self-chat (Baize): the teacher plays user and assistant from seed questions",
		Long: `The teacher answers each seed question, then plays the user (roles swapped)
and asks a follow-up, for up to --turns answers or until the simulated user
writes [END]. Output: ShareGPT conversations (what herd sft reads). A
question without any answer is dropped (no_answer).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, runFunc(func(ctx context.Context) (*synth.Stats, error) { p.Options = f.o; return p.Run(ctx) }))
		},
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&p.Input, "input", "", "seed questions (Alpaca, ShareGPT, OpenAI messages or plain lines)")
	fs.IntVar(&p.Turns, "turns", 4, "assistant turns at most")
	fs.StringVar(&p.AssistantSystem, "system", "", "the assistant's system message")
	cmd.MarkFlagRequired("input")
	return cmd
}

func distillCmd() *cobra.Command {
	var (
		f synthFlags
		p synth.Distill
	)
	cmd := &cobra.Command{
		Use:   "distill --input PROMPTS --endpoint URL --model NAME -o OUT.jsonl",
		Short: "distillation (GPT4ALL, Koala): answer prompts with the teacher, or make judged preference pairs",
		Long: `Answers every prompt (Alpaca, ShareGPT, OpenAI messages or plain lines;
every user turn of a conversation in order, with the teacher's own earlier
answers) --samples times, written as ShareGPT conversations. With --pairs,
two answers to each prompt's first turn are judged by the teacher in both
orders and written as {prompt, chosen, rejected} when the two judgments
agree; ties and changed minds are dropped (tie), as are identical answers
and unreadable verdicts.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(p.Input) == "" {
				return fmt.Errorf("--input is required")
			}
			return f.run(cmd, runFunc(func(ctx context.Context) (*synth.Stats, error) { p.Options = f.o; return p.Run(ctx) }))
		},
	}
	f.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&p.Input, "input", "", "prompts to answer")
	fs.IntVar(&p.Samples, "samples", 1, "answers per prompt")
	fs.BoolVar(&p.Pairs, "pairs", false, "write teacher-judged preference pairs instead")
	cmd.MarkFlagRequired("input")
	return cmd
}
