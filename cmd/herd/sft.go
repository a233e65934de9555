package main

import (
	"cmp"
	"fmt"
	"github.com/herd-llm/herd/dist"
	"io"
	"math"
	"os"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// sftArgs are herd sft's flags.
type sftArgs struct {
	o                             sft.Options
	base, tokPath, data, tmplName string
	out, overflow, baseType       string
	valData                       string
	ctx, threads, maxRow          int
	skipBad, quiet, pack          bool
	valSplit                      float64
}

func sftCmd() *cobra.Command {
	var a sftArgs
	cmd := &cobra.Command{
		Use:   "sft --method full|lora|qlora|adapter|embed --base MODEL --data FILE[,FILE…] [--template NAME] -o OUTDIR",
		Short: "supervised fine-tuning on instruction or conversation data (full, LoRA, QLoRA, LLaMA-Adapter, embeddings)",
		Long: `Fine-tunes a model on Alpaca/BELLE JSON or JSONL (instruction, input,
output), Dolly (instruction, context, response; GPTeacher's input as the context), ShareGPT/Vicuna
(conversations) or OpenAI messages JSONL, told apart row by row. Every
example is rendered through the chat template (--template) and the loss
covers the assistant's tokens only, every assistant turn of a conversation.
An example longer than --ctx is dropped or split (--overflow), and counted.
Several files mix (TÜLU): FILE:COUNT takes COUNT samples of a file, a
random subset or repeats.
A malformed row (invalid UTF-8, a preference label) stops the run with
its file:line and field unless --skip-bad is given; a row longer than
--max-row-bytes is skipped unparsed and counted.

Methods: full (every weight trains), lora (low-rank adapters on a frozen
base of any dtype herd reads), qlora (the base's block matrices stored as
NF4, or --base-type, plus LoRA), adapter (LLaMA-Adapter: --prefix-len
learnable prompt tokens in the top --prefix-layers layers, zero-initialised
gates), embed (only the token embedding and/or the output head:
--embed-tensors; by default the embedding, and the output head unless it is
tied to it).

Every flag can live in a YAML recipe (--config; keys as the flag names with
_ for -, lists for comma-separated values); flags on the command line
override it. Recipes: sft/recipes/.

OUTDIR receives model.gguf (full, embed) or the adapter in PEFT's layout
(adapter_config.json, adapter_model.safetensors) and llama.cpp's
(adapter.gguf) (lora, qlora), or adapter.safetensors (adapter), and
recipe.yaml (the effective recipe, which --config reads back), and
metrics.jsonl (one line a step: loss, learning rate, gradient norm,
tokens/s, MFU, val_loss where it validated), loss.png, and
step-N/state.safetensors checkpoints (trained
weights and optimizer moments, written atomically; --save-every) from which
--resume continues exactly. Adapters apply at inference with
herd run/chat/serve --lora, or merge with herd merge (LoRA).

Validation: --val-data (files read as --data) and/or --val-split F (a
fraction of each --data file's examples held out, chosen by --seed, never
trained on). The validation loss, the mean over the assistant's tokens as
in training without dropout, is measured before the first step, every
--eval-every steps on --eval-batches batches, and after the last step on
all of it; it goes to the log, the progress bar, metrics.jsonl (val_loss)
and loss.png, and leaves the training itself unchanged.

herd never pads a batch: each example is its own sequence, attending only
to itself. --batch counts examples, or with --pack rows of --ctx tokens
filled with as many examples as fit. The log predicts the run's peak memory
(base weights + activations + trainable state + 10%); the Go runtime is held
to it unless GOMEMLIMIT is set.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSFT(cmd, &a) },
	}
	sftFlags(cmd.Flags(), &a)
	return withRecipe(cmd)
}

// runSFT loads the base and the data, tunes and writes the output.
func runSFT(cmd *cobra.Command, a *sftArgs) error {
	errw := cmd.ErrOrStderr()
	o := &a.o
	if err := sft.ParseMethod(o.Method); err != nil {
		return err
	}
	if a.data == "" || a.out == "" {
		return fmt.Errorf("sft: --data and -o are required")
	}
	comm, err := dist.World() // the data-parallel ranks under mpirun
	if err != nil {
		return err
	}
	o.Comm = comm
	root := comm.Rank() == 0 // only rank 0 holds OUTDIR, reports and writes
	var lock *train.DirLock
	if root {
		if lock, err = train.LockDir(a.out); err != nil { // held until the outputs are written
			return err
		}
		defer lock.Release()
	} else {
		errw = io.Discard
	}
	kernels.SetThreads(a.threads)
	m, tok, err := checkpoint.Load(a.base, a.tokPath)
	if err != nil {
		return err
	}
	defer m.Close()
	baseID := lora.Identify(m, cmp.Or(a.base, "stories260K (embedded)")) // recorded in the adapter files
	if a.ctx <= 0 {
		a.ctx = m.Config.ContextLen
	}
	samples, err := loadSFTData(errw, a, tok)
	if err != nil {
		return err
	}
	if o.Method == sft.QLoRA {
		if o.BaseType, err = tensor.ParseDType(a.baseType); err != nil {
			return err
		}
	}
	recipe := recipeYAML(cmd.Flags())
	printRecipe(errw, cmd)
	o.Log, o.Dir, o.Recipe, o.Lock = errw, a.out, recipe, lock
	o.LimitMemory = os.Getenv("GOMEMLIMIT") == ""
	if a.pack {
		o.Pack = a.ctx
	}
	bar := newTrainBar(errw, true)
	if !a.quiet {
		o.OnStart, o.OnStep = bar.start, bar.step
	}
	res, err := sft.Tune(m, samples, *o)
	bar.finish()
	if err != nil || !root {
		return err
	}
	if res.Adapters != nil {
		res.Adapters.Base = baseID
	}
	val := ""
	if !math.IsNaN(res.ValLoss) {
		val = fmt.Sprintf("; val loss %.4f (%.4f at the start)", res.ValLoss, res.StartValLoss)
	}
	fmt.Fprintf(errw, "trained %d steps, %d tokens in %s (%.0f tok/s)%s\n", len(res.Losses), res.Tokens,
		res.Elapsed.Round(1e6), float64(res.Tokens)/res.Elapsed.Seconds(), val)
	wrote, err := res.Save(a.out, o.Method, sft.SaveOptions{Base: a.base, Tokenizer: tok, Template: a.tmplName, Recipe: recipe})
	if err != nil {
		return err
	}
	fmt.Fprintf(errw, "wrote %s\n", strings.Join(wrote, ", "))
	return nil
}

// loadSFTData reads the training samples and sets the validation ones in
// a.o.Val.
func loadSFTData(errw io.Writer, a *sftArgs, tok tokenizer.Tokenizer) ([]sft.Sample, error) {
	tmpl, err := chat.Lookup(a.tmplName)
	if err != nil {
		return nil, err
	}
	enc := &sft.Encoder{Tok: tok, Template: tmpl, Ctx: a.ctx, MaxRow: a.maxRow}
	switch a.overflow {
	case "drop":
	case "split":
		enc.Overflow = sft.Split
	default:
		return nil, fmt.Errorf("sft: --overflow %q: want drop or split", a.overflow)
	}
	sources, err := sft.ParseSources(a.data)
	if err != nil {
		return nil, err
	}
	venc := *enc // validation data is counted apart
	samples, held, bad, err := enc.MixSplit(sources, a.skipBad, a.o.Seed, a.valSplit)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(errw, "data: %s; %d malformed rows skipped\n", enc.Stats, bad)
	a.o.Val = held
	if a.valData != "" {
		vsrc, err := sft.ParseSources(a.valData)
		if err != nil {
			return nil, err
		}
		val, bad, err := venc.Mix(vsrc, a.skipBad, a.o.Seed)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(errw, "val data: %s; %d malformed rows skipped\n", venc.Stats, bad)
		a.o.Val = append(a.o.Val, val...)
	}
	return samples, nil
}

// sftFlags defines herd sft's flags on f.
func sftFlags(f *pflag.FlagSet, a *sftArgs) {
	o := &a.o
	f.StringVar(&o.Method, "method", sft.LoRA, "full, lora, qlora, adapter or embed")
	f.StringVar(&a.base, "base", "", "base model (GGUF or llama2.c; none: the embedded stories260K)")
	f.StringVar(&a.tokPath, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.StringVar(&a.data, "data", "", "data files, comma-separated, each FILE[:COUNT] (a TÜLU-style mixture: COUNT samples of it, sub- or upsampled)")
	f.StringVar(&a.tmplName, "template", "vicuna", "chat template: "+strings.Join(chat.Names(), ", "))
	f.StringVarP(&a.out, "output", "o", "", "output directory")
	ctxFlags(f, &a.ctx, 0, "longest sample in tokens (0: the model's context)")
	f.StringVar(&a.overflow, "overflow", "drop", "an example longer than --ctx: drop or split")
	f.BoolVar(&a.skipBad, "skip-bad", false, "skip and count malformed rows instead of stopping")
	f.IntVar(&a.maxRow, "max-row-bytes", sft.DefaultMaxRow, "skip (and count) dataset rows longer than this many bytes before parsing them (-1: no limit)")
	f.IntVar(&o.Steps, "steps", 0, "optimizer steps (0: one epoch)")
	f.IntVar(&o.Batch, "batch", 8, "examples per micro-batch (with --pack: rows of --ctx tokens)")
	f.IntVar(&o.Accum, "accum", 1, "micro-batches per step (gradient accumulation)")
	f.BoolVar(&o.ZeRO, "zero", false, "under mpirun: shard AdamW's moments over the ranks (ZeRO stage 1)")
	f.BoolVar(&a.pack, "pack", false, "fill each row of a batch with examples up to --ctx tokens (each still attends only to itself)")
	f.BoolVar(&o.Recompute, "recompute", false, "recompute each block's activations in the backward pass (less memory)")
	scheduleFlags(f, &o.LR, &o.MinLR, &o.Warmup, &o.Schedule, 2e-4, 0, 0, "final learning rate of the decay (0: a tenth of --lr)")
	optimFlags(f, &o.Beta1, &o.Beta2, &o.Eps, &o.WeightDecay, &o.DecayNorms, train.Optim{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8})
	f.Float64Var(&o.GradClip, "grad-clip", 1, "clip the global gradient norm (0: off)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the adapters' initialisation, dropout and data order")
	f.IntVar(&o.LoRA.Rank, "rank", 8, "LoRA rank")
	f.Float64Var(&o.LoRA.Alpha, "alpha", 16, "LoRA alpha (scale alpha/rank)")
	f.Float64Var(&o.LoRA.Dropout, "dropout", 0.05, "LoRA dropout")
	f.BoolVar(&o.LoRA.RSLoRA, "rslora", false, "scale by alpha/sqrt(rank) (rsLoRA)")
	f.StringSliceVar(&o.LoRA.Targets, "targets", append([]string(nil), lora.Modules...), "LoRA target modules")
	f.StringVar(&a.baseType, "base-type", "nf4", "qlora: dtype of the frozen base (nf4; nf4_dq, double-quantized scales, for rows of 256; q4_0, q8_0, …)")
	f.StringSliceVar(&o.EmbedTensors, "embed-tensors", nil, "embed: tensors to train, embed and/or output (default: embed, and output unless tied to it)")
	f.BoolVar(&o.EmbedLoRA, "embed-lora", false, "embed: train LoRA adapters (--rank, --targets, …) as well; the adapter is written beside model.gguf")
	f.IntVar(&o.SaveEvery, "save-every", 0, "checkpoint (OUTDIR/step-N/state.safetensors) every N steps; always after the last")
	f.BoolVar(&o.Resume, "resume", false, "continue the run in OUTDIR from its newest checkpoint, exactly")
	f.IntVar(&o.Keep, "keep", train.Defaults().Keep, "checkpoints kept, the newest (0: all)")
	f.StringVar(&a.valData, "val-data", "", "validation data files, comma-separated, each FILE[:COUNT], read as --data")
	f.Float64Var(&a.valSplit, "val-split", 0, "hold out this fraction of each --data file's examples (by --seed) for validation")
	f.IntVar(&o.EvalEvery, "eval-every", train.Defaults().EvalEvery, "validation loss every N steps (0: at the end only)")
	f.IntVar(&o.EvalBatches, "eval-batches", train.Defaults().EvalBatches, "validation batches per evaluation (0: all; the last one covers the whole set)")
	f.IntVar(&o.PrefixLen, "prefix-len", 10, "adapter: prompt tokens per layer")
	f.IntVar(&o.PrefixLayers, "prefix-layers", 30, "adapter: top layers with a prompt (all when more)")
	f.IntVarP(&a.threads, "threads", "t", 0, "threads (0: all cores)")
	quietFlags(f, &a.quiet)
}
