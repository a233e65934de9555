package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/herd-llm/herd/align"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/rl"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// rlFlags are herd rl's flags.
type rlFlags struct {
	j                            rl.Job
	rules                        []string
	rm, rmBase, scorer, baseType string
	stop                         string
	scorerTimeout                time.Duration
	scorerSkip, quiet            bool
	threads, scorerConc          int
	bar                          *trainBar
}

func (a *rlFlags) register(f *pflag.FlagSet) {
	j, o, c := &a.j, &a.j.Tune, &a.j.Config
	f.StringVar(&c.Algo, "algo", rl.GRPO, "ppo, grpo or rloo")
	f.StringVar(&o.Method, "method", sft.LoRA, "full, lora or qlora")
	f.StringVar(&j.Base, "base", "", "the policy's base model (GGUF or llama2.c; none: the embedded stories260K)")
	f.StringVar(&j.Tokenizer, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.StringVar(&j.Prompts, "prompts", "", "prompt file: one prompt a line (.txt), or JSONL rows with prompt / messages / conversations and an optional answer")
	f.StringVar(&j.Val, "val-prompts", "", "held-out prompts (the same layouts): their mean reward and KL before, during and after")
	f.StringVar(&j.Template, "template", "none", "chat template for the prompts ("+strings.Join(chat.Names(), ", ")+"), or none: the raw text after BOS")
	f.StringVarP(&j.Out, "output", "o", "", "output directory")
	f.StringArrayVar(&a.rules, "reward", nil, "a built-in rule, repeatable (summed): "+rl.RuleHelp)
	f.StringVar(&a.rm, "reward-model", "", "a reward model from herd rm train (reward.gguf or its directory)")
	f.StringVar(&a.rmBase, "reward-base", "", "the base of a LoRA reward model (default: its adapter_config.json's)")
	f.StringVar(&a.scorer, "scorer", "", "external scorer URL: POST {prompt, completion, answer} JSON, read a number or {\"reward\": x}")
	f.DurationVar(&a.scorerTimeout, "scorer-timeout", 30*time.Second, "per-request timeout of --scorer")
	f.IntVar(&a.scorerConc, "scorer-concurrency", 4, "requests to --scorer in flight at once")
	f.BoolVar(&a.scorerSkip, "scorer-skip", false, "count and leave out rollouts the scorer fails on instead of stopping")
	f.IntVar(&o.Steps, "steps", 10, "rollout batches")
	f.IntVar(&c.Prompts, "prompts-per-batch", 8, "prompts per rollout batch")
	f.IntVar(&c.Group, "group", 4, "samples per prompt (grpo, rloo: at least 2; ppo: 1 or more)")
	f.IntVar(&c.MiniBatch, "mini-batch", 0, "rollouts per optimizer step (0: the whole batch)")
	f.IntVar(&c.Epochs, "epochs", 1, "passes over each rollout batch (PPO epochs; GRPO's μ)")
	f.IntVar(&c.Sampling.MaxNew, "max-new", 64, "longest response in tokens")
	f.StringVar(&a.stop, "stop", "", "strings that end a response, comma-separated (the template's are added)")
	f.Float32Var(&c.Sampling.Temperature, "temp", 1, "sampling temperature")
	f.IntVar(&c.Sampling.TopK, "top-k", 0, "top-k (0: off)")
	f.Float32Var(&c.Sampling.TopP, "top-p", 1, "top-p (1: off)")
	f.Float32Var(&c.Sampling.MinP, "min-p", 0, "min-p (0: off)")
	f.Float64Var(&c.Gamma, "gamma", 1, "ppo: GAE discount γ")
	f.Float64Var(&c.Lambda, "lam", 0.95, "ppo: GAE λ")
	f.Float64Var(&c.ClipEps, "cliprange", 0.2, "clip range ε of the policy ratio")
	f.Float64Var(&c.ClipValue, "cliprange-value", 0.2, "ppo: clip range of the value")
	f.Float64Var(&c.VFCoef, "vf-coef", 0.1, "ppo: value-loss coefficient")
	f.BoolVar(&j.ValueLoRA, "value-lora", false, "ppo (lora, qlora): the value head on a LoRA of its own on the same base (OUTDIR/value/), not on the policy's trunk")
	f.StringVar(&c.KL, "kl-estimator", rl.K1, "ppo, rloo: the KL penalty's estimator in the reward (k1, k2, k3); grpo's loss uses k3")
	f.Float64Var(&c.KLCoef, "kl-coef", 0.05, "β: the KL coefficient (the initial one with --target-kl)")
	f.Float64Var(&c.TargetKL, "target-kl", 0, "ppo, rloo: adaptive KL controller's target (Ziegler et al.; 0: fixed β)")
	f.Float64Var(&c.Horizon, "horizon", 10000, "adaptive KL controller's horizon")
	f.BoolVar(&c.Whiten, "whiten", true, "ppo: whiten the advantages")
	f.BoolVar(&c.NormRewards, "norm-rewards", false, "ppo, rloo: whiten each batch's scores")
	f.Float64Var(&c.MissingEOS, "missing-eos-penalty", 0, "subtracted from the reward of a response that does not end with EOS")
	f.Float64Var(&c.ClipReward, "clip-reward", 0, "ppo, rloo: clip scores to ±this (0: off)")
	f.BoolVar(&c.ScaleRewards, "scale-rewards", true, "grpo: divide advantages by the group's standard deviation")
	f.Float64Var(&c.StopKL, "stop-kl", 0, "stop a batch's updates once the approximate KL exceeds this (0: never)")
	f.IntVar(&c.SampleEvery, "sample-every", 5, "log completions with rewards every N rollout batches (0: never)")
	f.IntVar(&c.EvalEvery, "eval-every", 5, "held-out reward every N rollout batches (0: before and after only)")
	f.BoolVar(&o.Recompute, "recompute", false, "recompute each block's activations in the backward pass (less memory)")
	scheduleFlags(f, &o.LR, &o.MinLR, &o.Warmup, &o.Schedule, 1e-4, 0, 0, "final learning rate of the decay (0: a tenth of --lr)")
	f.Lookup("schedule").DefValue, o.Schedule = "constant", "constant" // RL's usual
	f.Lookup("warmup").Usage = "linear warm-up, in rollout batches"
	optimFlags(f, &o.Beta1, &o.Beta2, &o.Eps, &o.WeightDecay, &o.DecayNorms, train.Optim{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	f.Float64Var(&o.GradClip, "grad-clip", 1, "clip the global gradient norm (0: off)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the initialisation, sampling and data order")
	f.IntVar(&o.LoRA.Rank, "rank", 8, "LoRA rank")
	f.Float64Var(&o.LoRA.Alpha, "alpha", 16, "LoRA alpha (scale alpha/rank)")
	f.BoolVar(&o.LoRA.RSLoRA, "rslora", false, "scale by alpha/sqrt(rank) (rsLoRA)")
	f.StringSliceVar(&o.LoRA.Targets, "targets", append([]string(nil), lora.Modules...), "LoRA target modules")
	f.StringVar(&a.baseType, "base-type", "nf4", "qlora: dtype of the frozen base (nf4, q4_0, q8_0, …)")
	f.IntVar(&o.SaveEvery, "save-every", 0, "checkpoint every N rollout batches (OUTDIR/step-N/); always after the last")
	f.BoolVar(&o.Resume, "resume", false, "continue the run in OUTDIR from its newest checkpoint, exactly")
	f.IntVar(&o.Keep, "keep", train.Defaults().Keep, "checkpoints kept, the newest (0: all)")
	f.IntVarP(&a.threads, "threads", "t", 0, "threads (0: all cores)")
	quietFlags(f, &a.quiet)
}

// parse applies the recipe and turns the string flags into the job.
func (a *rlFlags) parse(cmd *cobra.Command) error {
	j := &a.j
	if j.Prompts == "" || j.Out == "" {
		return fmt.Errorf("rl: --prompts and -o are required")
	}
	if a.stop != "" {
		j.Sampling.Stop = strings.Split(a.stop, ",")
	}
	if j.Tune.Method == sft.QLoRA {
		var err error
		if j.Tune.BaseType, err = tensor.ParseDType(a.baseType); err != nil {
			return err
		}
	}
	if err := a.reward(); err != nil {
		return err
	}
	kernels.SetThreads(a.threads)
	j.Tune.LimitMemory = os.Getenv("GOMEMLIMIT") == ""
	j.Tune.Recipe = recipeYAML(cmd.Flags())
	printRecipe(cmd.ErrOrStderr(), cmd)
	a.bar = newTrainBar(cmd.ErrOrStderr(), false)
	a.bar.extra = func(p train.Progress) string {
		x := p.Extra
		return fmt.Sprintf("loss %.4f reward %.3f kl %.2f β %.3g | rollout %.0f tok/s, update %.0f tok/s", p.Loss, x[rl.MRewMean], x[rl.MKL], x[rl.MKLCoef],
			x[rl.MRolloutTPS], x[rl.MUpdateTPS])
	}
	if !a.quiet {
		j.Tune.OnStart, j.Tune.OnStep = a.bar.start, a.bar.step
	}
	return nil
}

// reward makes the one reward the flags name.
func (a *rlFlags) reward() error {
	n := 0
	for _, s := range []string{a.rm, a.scorer} {
		if s != "" {
			n++
		}
	}
	if len(a.rules) > 0 {
		n++
	}
	if n != 1 {
		return fmt.Errorf("rl: give exactly one reward: --reward RULE (repeatable), --reward-model RM or --scorer URL")
	}
	switch {
	case a.rm != "":
		rm, _, err := align.LoadReward(a.rm, a.rmBase, "")
		if err != nil {
			return err
		}
		a.j.Reward = rl.Model{RM: rm, Path: a.rm}
	case a.scorer != "":
		a.j.Reward = &rl.HTTP{URL: a.scorer, Timeout: a.scorerTimeout, Skip: a.scorerSkip, Concurrency: a.scorerConc}
	default:
		var rs rl.Rules
		for _, s := range a.rules {
			r, err := rl.ParseRule(s)
			if err != nil {
				return err
			}
			rs = append(rs, r)
		}
		a.j.Reward = rs
	}
	return nil
}

func rlCmd() *cobra.Command {
	var a rlFlags
	cmd := &cobra.Command{
		Use:   "rl --algo ppo|grpo|rloo --prompts FILE --reward RULE|--reward-model RM|--scorer URL -o OUTDIR",
		Short: "reinforcement learning from a reward: PPO (value head, GAE, adaptive KL), GRPO, RLOO",
		Long: `Trains a policy (full, lora, or qlora on a quantized base) to earn a
reward on its own samples. Each rollout batch takes --prompts-per-batch
prompts, samples --group responses to each with the batched forward pass
(--temp, --top-k, --top-p, --min-p, --max-new, stop at EOS and --stop
strings), scores them, and computes the log-probabilities of the sampled
tokens under the policy and the reference (lora/qlora: the base with the
adapters off, one copy in memory; full: the base as loaded, frozen), in
passes of their own after sampling; they are the models' distributions at
temperature 1 (the sampling flags choose the tokens, the ratio and the KL
are of the model itself).

  ppo:  KL penalty per token in the reward (--kl-estimator k1|k2|k3, β
        --kl-coef, adaptive with --target-kl and --horizon), the score at
        the last token, a value head on the policy's trunk (or on a LoRA
        of its own: --value-lora), GAE (--gamma, --lam), whitened
        advantages, clipped policy and value losses.
  grpo: advantages (r − mean)/std within each prompt's group, the clipped
        objective and β·k3 KL to the reference in the loss.
  rloo: leave-one-out baseline, the KL penalty in the reward.

--epochs passes over each batch in mini-batches of --mini-batch rollouts,
one optimizer step each; --stop-kl ends a batch's updates when the
approximate KL runs away. Rewards: built-in rules (--reward, summed),
a reward model from herd rm train (--reward-model), or an external scorer
(--scorer URL: a timeout or a reply that is not a number stops the run,
or with --scorer-skip is counted and left out — never a zero). Prompts
longer than the context less --max-new are dropped and counted.

Metrics (metrics.jsonl, TRL's names): objective/kl, objective/entropy,
objective/rlhf_reward, objective/non_score_reward, objective/kl_coef,
policy/clipfrac, policy/approxkl, val/vpred, val/clipfrac,
env/reward_mean, env/reward_std, eval/reward_mean, eval/kl; completions
with rewards in the log every --sample-every batches; loss.png;
checkpoints every --save-every batches and exact --resume (the KL
coefficient included; sampling is seeded per batch). OUTDIR receives what
herd sft writes (model.gguf, or the PEFT adapter and adapter.gguf) and,
for ppo, value_head.safetensors (with --value-lora the value trunk's
adapter in OUTDIR/value/).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.parse(cmd); err != nil {
				return err
			}
			if m, ok := a.j.Reward.(rl.Model); ok {
				defer m.RM.Policy.Model.Close()
			}
			res, err := rl.Run(a.j, cmd.ErrOrStderr())
			a.bar.finish()
			if err != nil {
				return err
			}
			rlReport(cmd, res)
			return nil
		},
	}
	a.register(cmd.Flags())
	return withRecipe(cmd)
}

// rlReport prints the run's throughput and held-out reward.
func rlReport(cmd *cobra.Command, res *rl.Result) {
	w := cmd.ErrOrStderr()
	tm := res.Trainer.Timings
	fmt.Fprintf(w, "\nrollouts: %d positions in %s (%.0f tok/s); updates: %d positions in %s (%.0f tok/s); %d rollouts skipped (reward failed)\n",
		tm.RolloutTokens, tm.Rollout.Round(time.Millisecond), float64(tm.RolloutTokens)/tm.Rollout.Seconds(),
		tm.UpdateTokens, tm.Update.Round(time.Millisecond), float64(tm.UpdateTokens)/tm.Update.Seconds(), tm.Skipped)
	if res.End.N > 0 {
		fmt.Fprintf(w, "held-out (%d prompts): reward %.4f → %.4f, KL to the reference %.4f → %.4f\n", res.End.N, res.Start.Reward, res.End.Reward, res.Start.KL, res.End.KL)
	}
}
