package main

import (
	"fmt"
	"math"
	"time"

	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
)

func pretrainCmd() *cobra.Command {
	var quiet bool
	r := train.Defaults()
	cmd := &cobra.Command{
		Use:   "pretrain [--config RECIPE.yaml] (--preset NAME | --init CHECKPOINT) --data DIR -o OUTDIR",
		Short: "pretrain a LLaMA model on token shards (random start or continued pretraining)",
		Long: `Trains a causal language model on the shards of a directory made by
herd data prepare: from a random model of a preset's shape (normal 0.02,
residual projections scaled by 1/sqrt(2·layers)) or continuing from any
checkpoint herd loads (GGUF, llama2.c). AdamW with decoupled weight decay
(norm gains excluded), gradient clipping by global norm, constant, cosine
or linear schedule with linear warm-up, gradient accumulation.

Every flag can live in a YAML recipe (--config; keys as the flag names with
_ for -); flags given on the command line override it. The effective recipe
is printed at start and stored in every checkpoint.

OUTDIR receives step-N/ checkpoints (model.gguf with the tokenizer and herd.*
metadata, optimizer.gguf beside it, written atomically), model.gguf (the
newest, for herd run and herd bench), metrics.jsonl and loss.png. --resume
continues exactly where the last checkpoint left off. A NaN or Inf loss or
gradient stops the run, keeping the last good checkpoint.

Data parallel on several processes or machines: build herd with MPI
(apt-get install libopenmpi-dev; go build -tags mpi ./cmd/herd) and start it
with mpirun, e.g.

  mpirun -np 4 --hostfile hosts herd pretrain --preset stories15M --data DIR -o OUT

Each rank trains --batch sequences × --accum micro-batches of every step
(the global batch is ranks × batch × accum), the gradients are summed
over the ranks, and rank 0 alone writes OUTDIR (which --resume must then
find on rank 0's machine). --resume on another number of ranks needs the
same ranks × accum. A herd built without MPI refuses to run under mpirun.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			errw := cmd.ErrOrStderr()
			opt := train.Options{Log: errw}
			bar := newTrainBar(errw, false)
			if !quiet {
				opt.OnStart, opt.OnStep = bar.start, bar.step
			}
			res, err := train.Pretrain(r, opt)
			bar.finish()
			if err != nil {
				return err
			}
			if !rankZero() {
				return nil
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
	f.StringVar(&r.Preset, "preset", "", "start from a random model of this preset's shape (herd init --list)")
	f.StringVar(&r.Init, "init", "", "continue pretraining this checkpoint (GGUF or llama2.c)")
	f.StringVar(&r.Data, "data", "", "data directory made by herd data prepare")
	f.StringVarP(&r.Out, "output", "o", "", "output directory")
	f.IntVar(&r.Steps, "steps", r.Steps, "optimizer steps")
	f.IntVar(&r.Batch, "batch", r.Batch, "sequences per micro-batch")
	ctxFlags(f, &r.Seq, r.Seq, "tokens per sequence")
	f.IntVar(&r.Accum, "accum", r.Accum, "micro-batches per step (gradient accumulation)")
	scheduleFlags(f, &r.LR, &r.MinLR, &r.Warmup, &r.Schedule, r.LR, r.MinLR, r.Warmup, "final learning rate of the decay")
	optimFlags(f, &r.Beta1, &r.Beta2, &r.Eps, &r.WeightDecay, &r.DecayNorms, train.DefaultOptim())
	f.Float64Var(&r.GradClip, "grad-clip", r.GradClip, "clip the global gradient norm (0: off)")
	f.Uint64Var(&r.Seed, "seed", r.Seed, "seed of the initialisation and the data order")
	f.BoolVar(&r.NoShuffle, "no-shuffle", false, "batches in stream order (batch k = the k-th run of batch·seq tokens)")
	f.IntVar(&r.EvalEvery, "eval-every", r.EvalEvery, "validation loss every N steps (0: at the end only)")
	f.IntVar(&r.EvalBatches, "eval-batches", r.EvalBatches, "validation batches per evaluation (the last one covers the whole split)")
	f.IntVar(&r.SaveEvery, "save-every", r.SaveEvery, "checkpoint every N steps (0: at the end only)")
	f.IntVar(&r.Keep, "keep", r.Keep, "checkpoints kept")
	f.BoolVar(&r.Resume, "resume", false, "continue the run in the output directory from its last checkpoint")
	f.BoolVar(&r.Recompute, "recompute", false, "recompute each block's activations in the backward pass (less memory)")
	f.Float64Var(&r.PeakGFLOPS, "peak-gflops", 0, "the machine's F32 peak for the MFU estimate (0: 85.5 per thread)")
	f.IntVarP(&r.Threads, "threads", "t", 0, "threads (0: all cores)")
	f.BoolVar(&r.ZeRO, "zero", false, "under mpirun: shard AdamW's moments over the ranks (ZeRO stage 1)")
	f.BoolVar(&r.Overlap, "overlap", false, "under mpirun: start the gradients' all-reduce during the backward pass (same result; see BENCHMARKS.md for when it pays)")
	quietFlags(f, &quiet)
	return withRecipe(cmd)
}
