package main

import (
	"fmt"
	"github.com/herd-llm/herd/dist"
	"io"
	"os"
	"strings"

	"github.com/herd-llm/herd/align"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// alignFlags are the flags herd dpo and herd rm train share.
type alignFlags struct {
	j                                 align.Job
	data, valData, baseType, overflow string
	threads                           int
	quiet                             bool
	bar                               *trainBar
}

func (a *alignFlags) register(f *pflag.FlagSet, lr float64) {
	o := &a.j.Tune
	f.StringVar(&o.Method, "method", sft.LoRA, "full, lora or qlora")
	f.StringVar(&a.j.Base, "base", "", "base model (GGUF or llama2.c; none: the embedded stories260K)")
	f.StringVar(&a.j.Tokenizer, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.StringVar(&a.data, "data", "", "preference files, comma-separated (HH-RLHF, prompt/chosen/rejected, ShareGPT pairs, StackExchange, unpaired KTO rows; JSON or JSONL, .gz)")
	f.StringVar(&a.valData, "val-data", "", "held-out preference files, comma-separated, read as --data")
	f.StringVar(&a.j.Template, "template", "vicuna", "chat template: "+strings.Join(chat.Names(), ", "))
	f.StringVarP(&a.j.Out, "output", "o", "", "output directory")
	f.IntVar(&a.j.MaxLen, "max-len", 0, "longest prompt + response in tokens (0: the model's context)")
	f.IntVar(&a.j.MaxPrompt, "max-prompt", 0, "the prompt's tokens when an example is truncated (0: half of --max-len)")
	f.StringVar(&a.overflow, "overflow", "truncate", "an example longer than --max-len: truncate (prompt from the left, responses from the right) or drop")
	f.BoolVar(&a.j.SkipBad, "skip-bad", false, "skip and count malformed rows instead of stopping")
	f.IntVar(&o.Steps, "steps", 0, "optimizer steps (0: one epoch)")
	f.IntVar(&o.Batch, "batch", 8, "pairs per micro-batch (chosen and rejected in one forward pass)")
	f.IntVar(&o.Accum, "accum", 1, "micro-batches per step (gradient accumulation)")
	f.BoolVar(&o.ZeRO, "zero", false, "under mpirun: shard AdamW's moments over the ranks (ZeRO stage 1)")
	f.BoolVar(&o.Recompute, "recompute", false, "recompute each block's activations in the backward pass (less memory)")
	scheduleFlags(f, &o.LR, &o.MinLR, &o.Warmup, &o.Schedule, lr, 0, 0, "final learning rate of the decay (0: a tenth of --lr)")
	optimFlags(f, &o.Beta1, &o.Beta2, &o.Eps, &o.WeightDecay, &o.DecayNorms, train.Optim{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	f.Float64Var(&o.GradClip, "grad-clip", 1, "clip the global gradient norm (0: off)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the initialisation, dropout and data order")
	f.IntVar(&o.LoRA.Rank, "rank", 8, "LoRA rank")
	f.Float64Var(&o.LoRA.Alpha, "alpha", 16, "LoRA alpha (scale alpha/rank)")
	f.Float64Var(&o.LoRA.Dropout, "dropout", 0, "LoRA dropout")
	f.BoolVar(&o.LoRA.RSLoRA, "rslora", false, "scale by alpha/sqrt(rank) (rsLoRA)")
	f.StringSliceVar(&o.LoRA.Targets, "targets", append([]string(nil), lora.Modules...), "LoRA target modules")
	f.StringVar(&a.baseType, "base-type", "nf4", "qlora: dtype of the frozen base (nf4, q4_0, q8_0, …)")
	f.IntVar(&o.SaveEvery, "save-every", 0, "checkpoint (OUTDIR/step-N/state.safetensors) every N steps; always after the last")
	f.BoolVar(&o.Resume, "resume", false, "continue the run in OUTDIR from its newest checkpoint, exactly")
	f.IntVar(&o.Keep, "keep", train.Defaults().Keep, "checkpoints kept, the newest (0: all)")
	f.IntVar(&o.EvalEvery, "eval-every", train.Defaults().EvalEvery, "validation every N steps (0: at the end only)")
	f.IntVar(&o.EvalBatches, "eval-batches", train.Defaults().EvalBatches, "validation batches per evaluation (0: all)")
	f.IntVarP(&a.threads, "threads", "t", 0, "threads (0: all cores)")
	quietFlags(f, &a.quiet)
}

// parse turns the string flags into the job, prints the effective recipe
// and sets the progress bar up.
func (a *alignFlags) parse(cmd *cobra.Command) error {
	if a.data == "" || a.j.Out == "" {
		return fmt.Errorf("%s: --data and -o are required", cmd.Name())
	}
	a.j.Data = strings.Split(a.data, ",")
	if a.valData != "" {
		a.j.ValData = strings.Split(a.valData, ",")
	}
	var err error
	if a.j.Overflow, err = align.ParseOverflow(a.overflow); err != nil {
		return err
	}
	if a.j.Tune.Method == sft.QLoRA {
		if a.j.Tune.BaseType, err = tensor.ParseDType(a.baseType); err != nil {
			return err
		}
	}
	kernels.SetThreads(a.threads)
	a.j.Tune.LimitMemory = os.Getenv("GOMEMLIMIT") == ""
	a.j.Tune.Recipe = recipeYAML(cmd.Flags())
	errw := cmd.ErrOrStderr()
	if c, err := dist.World(); err == nil && c.Rank() != 0 { // only rank 0 reports
		errw = io.Discard
	}
	printRecipe(errw, cmd)
	a.bar = newTrainBar(errw, true)
	if !a.quiet {
		a.j.Tune.OnStart, a.j.Tune.OnStep = a.bar.start, a.bar.step
	}
	return nil
}

// report logs a run's summary and its validation metrics.
func report(cmd *cobra.Command, res *align.Result, names ...string) {
	w := cmd.ErrOrStderr()
	s := res.Summary
	fmt.Fprintf(w, "\ntrained %d steps, %d tokens in %s (%.0f tok/s)\n", len(s.Losses), s.Tokens, s.Elapsed.Round(1e6), float64(s.Tokens)/s.Elapsed.Seconds())
	if res.EndVal.Count == 0 {
		return
	}
	for _, v := range []struct {
		what string
		m    align.Metrics
	}{{"before", res.StartVal}, {"after", res.EndVal}} {
		fmt.Fprintf(w, "validation %s (%d): loss %.4f", v.what, v.m.Count, v.m.Sum/float64(v.m.Count))
		for _, n := range names {
			fmt.Fprintf(w, ", %s %.4f", n, v.m.Mean(n))
		}
		fmt.Fprintln(w)
	}
}

func dpoCmd() *cobra.Command {
	var a alignFlags
	cmd := withRecipe(&cobra.Command{
		Use:   "dpo --loss sigmoid|robust|ipo|hinge|simpo|orpo|kto --beta B --method lora|qlora|full --data FILE[,FILE…] -o OUTDIR",
		Short: "direct preference optimisation (DPO, cDPO/robust, IPO, SLiC hinge, SimPO, ORPO, KTO)",
		Long: `Tunes a model on preference pairs without a reward model: Anthropic
HH-RLHF transcripts, prompt/chosen/rejected rows (strings or OpenAI message
lists: TRL, UltraFeedback-binarized), ShareGPT-style conversations with
chosen and rejected (LLaMA-Factory's dpo_*_demo.json), StackExchange
question/response_j/response_k, or for KTO unpaired rows (messages or
prompt + completion, with a boolean label; paired rows are split). Every
example is rendered through --template so the prompt is what the model sees
at inference; the loss covers the response tokens only. Pairs with an
empty response or identical chosen and rejected are dropped and counted
(their file:line in the log); a malformed row stops the run with its
file:line and field unless --skip-bad.

Losses: sigmoid (DPO; --label-smoothing: cDPO), robust (robust DPO),
ipo (--beta is τ), hinge (SLiC), simpo (reference-free, length-normalised,
--gamma), orpo (reference-free: NLL on chosen + --beta × the odds-ratio
loss), kto (--desirable-weight, --undesirable-weight).

The reference model: for lora and qlora the base with the adapters switched
off (one copy of the base in memory); for full the base as loaded, frozen,
beside the float32 policy; --precompute computes the reference's
log-probabilities once before training instead of at each step. Chosen
and rejected of a pair run in one batched forward pass.

Metrics (metrics.jsonl, the log): loss, rewards/chosen, rewards/rejected,
rewards/accuracies, rewards/margins, logps/chosen, logps/rejected (KTO:
kl, rewards/mean, rewards/accuracies by the label, logps/mean); loss.png;
validation on --val-data before, during and after; atomic
checkpoints (--save-every) and exact --resume. OUTDIR receives what herd
sft writes: model.gguf (full), or adapter_config.json +
adapter_model.safetensors (PEFT) and adapter.gguf (llama.cpp) for lora
and qlora, which herd run/chat/serve --lora and herd merge take.
Recipes: align/recipes/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.parse(cmd); err != nil {
				return err
			}
			res, err := align.RunDPO(a.j, cmd.ErrOrStderr())
			a.bar.finish()
			if err != nil {
				return err
			}
			if !rankZero() {
				return nil
			}
			report(cmd, res, align.RewardsAccuracy, align.RewardsMargin, align.RewardsChosen, align.RewardsRejected)
			return nil
		},
	})
	f := cmd.Flags()
	a.register(f, 5e-5)
	p := &a.j.Loss
	f.StringVar(&p.Loss, "loss", align.Sigmoid, "preference loss: "+strings.Join(align.Losses, ", "))
	f.Float64Var(&p.Beta, "beta", 0.1, "β (DPO's KL coefficient; IPO's τ; SimPO's β; ORPO's λ; KTO's β)")
	f.Float64Var(&p.LabelSmoothing, "label-smoothing", 0, "probability of flipped labels (cDPO with sigmoid, robust, simpo)")
	f.Float64Var(&p.Gamma, "gamma", 0.5, "simpo: target reward margin γ")
	f.Float64Var(&p.DesirableWeight, "desirable-weight", 1, "kto: λ_D")
	f.Float64Var(&p.UndesirableWeight, "undesirable-weight", 1, "kto: λ_U")
	f.BoolVar(&a.j.Precompute, "precompute", false, "compute the reference log-probabilities once before training")
	return cmd
}

func rmCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rm", Short: "reward models: train one on preference pairs, score responses"}
	cmd.AddCommand(rmTrainCmd(), rmScoreCmd())
	return cmd
}

func rmTrainCmd() *cobra.Command {
	var a alignFlags
	cmd := withRecipe(&cobra.Command{
		Use:   "train --method lora|qlora|full --data FILE[,FILE…] -o OUTDIR",
		Short: "train a reward model (LLaMA + a scalar head) with the Bradley–Terry loss",
		Long: `Trains a reward model on preference pairs (the layouts herd dpo reads, an
optional numeric "margin" column): the base (full, lora, or qlora on a
quantized base) with a scalar head on the final hidden state of the last
response token, Hugging Face's LlamaForSequenceClassification layout
(score.weight), and the loss −log σ(r_chosen − r_rejected − margin).
Metrics: loss, accuracy, margin, on training and --val-data pairs.

OUTDIR receives reward.gguf (full: the model with the head as tensor
score.weight and metadata herd.reward.head saying what it is), or for lora
and qlora the adapter (PEFT and adapter.gguf, as herd sft writes them) and
score.safetensors (the head). herd rm score takes either.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.parse(cmd); err != nil {
				return err
			}
			res, err := align.RunRM(a.j, cmd.ErrOrStderr())
			a.bar.finish()
			if err != nil {
				return err
			}
			if !rankZero() {
				return nil
			}
			report(cmd, res, align.Accuracy, align.Margin)
			return nil
		},
	})
	a.register(cmd.Flags(), 1e-4)
	return cmd
}

func rmScoreCmd() *cobra.Command {
	var (
		base, tokPath, data, tmplName string
		batch, threads                int
		skipBad                       bool
	)
	cmd := &cobra.Command{
		Use:   "score RM --data FILE[,FILE…]",
		Short: "print the reward of each example's responses (JSONL)",
		Long: `Scores every example of the preference files (any layout herd dpo reads)
with the reward model RM (a reward.gguf, or a directory herd rm train
wrote: reward.gguf, or a LoRA adapter with score.safetensors on --base,
by default the base its adapter_config.json names): one JSON line per
example, {"where": "file:line", "chosen": r, "rejected": r} for a pair,
{"where", "reward", "label"} for an unpaired row. Rendering as in training
(--template); --batch sequences per batched forward pass.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return fmt.Errorf("rm score: --data is required")
			}
			kernels.SetThreads(threads)
			rm, tok, err := align.LoadReward(args[0], base, tokPath)
			if err != nil {
				return err
			}
			defer rm.Policy.Model.Close()
			rm.Batch = max(1, batch)
			tmpl, err := chat.Lookup(tmplName)
			if err != nil {
				return err
			}
			st, err := rm.ScoreFile(strings.Split(data, ","), skipBad, tok, tmpl, cmd.OutOrStdout())
			fmt.Fprintf(cmd.ErrOrStderr(), "scored: %s\n", st)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&base, "base", "", "base model of a LoRA reward model (default: the one its adapter_config.json names)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.StringVar(&data, "data", "", "files to score, comma-separated")
	f.StringVar(&tmplName, "template", "vicuna", "chat template: "+strings.Join(chat.Names(), ", "))
	f.IntVar(&batch, "batch", 16, "sequences per batched forward pass")
	f.BoolVar(&skipBad, "skip-bad", false, "skip and count malformed rows instead of stopping")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}
