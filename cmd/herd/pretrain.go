package main

import (
	"fmt"
	"math"
	"time"

	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func pretrainCmd() *cobra.Command {
	var config string
	var noBar bool
	flags := train.Defaults()
	cmd := &cobra.Command{
		Use:   "pretrain [--config RECIPE.yaml] (--preset NAME | --init CHECKPOINT) --data DIR -o OUTDIR",
		Short: "pretrain a LLaMA model on token shards (random start or continued pretraining)",
		Long: `Trains a causal language model on the shards of a directory made by
herd data prepare: from a random model of a preset's shape (normal 0.02,
residual projections scaled by 1/sqrt(2·layers)) or continuing from any
checkpoint herd loads (GGUF, llama2.c). AdamW with decoupled weight decay
(norm gains excluded), gradient clipping by global norm, constant or cosine
schedule with linear warm-up, gradient accumulation.

Every flag can live in a YAML recipe (--config; keys as the flag names with
_ for -); flags given on the command line override it. The effective recipe
is printed at start and stored in every checkpoint.

OUTDIR receives step-N/ checkpoints (model.gguf with the tokenizer and herd.*
metadata, optimizer.gguf beside it, written atomically), model.gguf (the
newest, for herd run and herd bench), metrics.jsonl and loss.png. --resume
continues exactly where the last checkpoint left off. A NaN or Inf loss or
gradient stops the run, keeping the last good checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r := train.Defaults()
			if config != "" {
				var err error
				if r, err = train.LoadRecipe(config); err != nil {
					return err
				}
			}
			overrideRecipe(cmd.Flags(), &r, &flags)
			errw := cmd.ErrOrStderr()
			opt := train.Options{Log: errw}
			bar := newTrainBar(errw, false)
			if !noBar {
				opt.OnStart, opt.OnStep = bar.start, bar.step
			}
			res, err := train.Pretrain(r, opt)
			bar.finish()
			if err != nil {
				return err
			}
			val := ""
			if !math.IsNaN(res.ValLoss) {
				val = fmt.Sprintf(", val loss %.4f (%.4f at the start)", res.ValLoss, res.StartValLoss)
			}
			fmt.Fprintf(errw, "done: %s (train loss %.4f%s, %d tokens in %s)\n", res.Checkpoint, res.TrainLoss, val,
				res.Tokens, res.Elapsed.Round(time.Second))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "YAML recipe; flags override it")
	f.StringVar(&flags.Preset, "preset", "", "start from a random model of this preset's shape (herd init --list)")
	f.StringVar(&flags.Init, "init", "", "continue pretraining this checkpoint (GGUF or llama2.c)")
	f.StringVar(&flags.Data, "data", "", "data directory made by herd data prepare")
	f.StringVarP(&flags.Out, "output", "o", "", "output directory")
	f.IntVar(&flags.Steps, "steps", flags.Steps, "optimizer steps")
	f.IntVar(&flags.Batch, "batch", flags.Batch, "sequences per micro-batch")
	f.IntVar(&flags.Seq, "seq", flags.Seq, "tokens per sequence")
	f.IntVar(&flags.Accum, "accum", flags.Accum, "micro-batches per step (gradient accumulation)")
	f.Float64Var(&flags.LR, "lr", flags.LR, "peak learning rate")
	f.Float64Var(&flags.MinLR, "min-lr", flags.MinLR, "final learning rate of the cosine schedule")
	f.IntVar(&flags.Warmup, "warmup", flags.Warmup, "linear warm-up steps")
	f.StringVar(&flags.Schedule, "schedule", flags.Schedule, "learning-rate schedule: constant or cosine")
	f.Float64Var(&flags.WeightDecay, "weight-decay", flags.WeightDecay, "AdamW decoupled weight decay (matrices only)")
	f.BoolVar(&flags.DecayNorms, "decay-norms", false, "also decay the norm gains")
	f.Float64Var(&flags.Beta1, "beta1", flags.Beta1, "AdamW β1")
	f.Float64Var(&flags.Beta2, "beta2", flags.Beta2, "AdamW β2")
	f.Float64Var(&flags.Eps, "eps", flags.Eps, "AdamW ε")
	f.Float64Var(&flags.GradClip, "grad-clip", flags.GradClip, "clip the global gradient norm (0: off)")
	f.Uint64Var(&flags.Seed, "seed", flags.Seed, "seed of the initialisation and the data order")
	f.BoolVar(&flags.NoShuffle, "no-shuffle", false, "batches in stream order (batch k = the k-th run of batch·seq tokens)")
	f.IntVar(&flags.EvalEvery, "eval-every", flags.EvalEvery, "validation loss every N steps (0: at the end only)")
	f.IntVar(&flags.EvalBatches, "eval-batches", flags.EvalBatches, "validation batches per evaluation (the last one covers the whole split)")
	f.IntVar(&flags.SaveEvery, "save-every", flags.SaveEvery, "checkpoint every N steps (0: at the end only)")
	f.IntVar(&flags.Keep, "keep", flags.Keep, "checkpoints kept")
	f.BoolVar(&flags.Resume, "resume", false, "continue the run in the output directory from its last checkpoint")
	f.BoolVar(&flags.Recompute, "recompute", false, "recompute each block's activations in the backward pass (less memory)")
	f.Float64Var(&flags.PeakGFLOPS, "peak-gflops", 0, "the machine's F32 peak for the MFU estimate (0: 85.5 per thread)")
	f.IntVarP(&flags.Threads, "threads", "t", 0, "threads (0: all cores)")
	f.BoolVar(&noBar, "no-progress", false, "no progress bar")
	return cmd
}

// overrideRecipe copies into r the fields whose flags were given.
func overrideRecipe(fs *pflag.FlagSet, r, f *train.Recipe) {
	set := map[string]func(){
		"preset": func() { r.Preset = f.Preset }, "init": func() { r.Init = f.Init }, "data": func() { r.Data = f.Data },
		"output": func() { r.Out = f.Out }, "steps": func() { r.Steps = f.Steps }, "batch": func() { r.Batch = f.Batch },
		"seq": func() { r.Seq = f.Seq }, "accum": func() { r.Accum = f.Accum }, "lr": func() { r.LR = f.LR },
		"min-lr": func() { r.MinLR = f.MinLR }, "warmup": func() { r.Warmup = f.Warmup }, "schedule": func() { r.Schedule = f.Schedule },
		"weight-decay": func() { r.WeightDecay = f.WeightDecay }, "decay-norms": func() { r.DecayNorms = f.DecayNorms },
		"beta1": func() { r.Beta1 = f.Beta1 }, "beta2": func() { r.Beta2 = f.Beta2 }, "eps": func() { r.Eps = f.Eps },
		"grad-clip": func() { r.GradClip = f.GradClip }, "seed": func() { r.Seed = f.Seed }, "no-shuffle": func() { r.NoShuffle = f.NoShuffle },
		"eval-every": func() { r.EvalEvery = f.EvalEvery }, "eval-batches": func() { r.EvalBatches = f.EvalBatches },
		"save-every": func() { r.SaveEvery = f.SaveEvery }, "keep": func() { r.Keep = f.Keep }, "resume": func() { r.Resume = f.Resume },
		"recompute": func() { r.Recompute = f.Recompute }, "peak-gflops": func() { r.PeakGFLOPS = f.PeakGFLOPS },
		"threads": func() { r.Threads = f.Threads },
	}
	fs.Visit(func(fl *pflag.Flag) {
		if s, ok := set[fl.Name]; ok {
			s()
		}
	})
}
