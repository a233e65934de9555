package main

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

func sftCmd() *cobra.Command {
	var (
		o                             sft.Options
		base, tokPath, data, tmplName string
		out, overflow, baseType, embT string
		targets, valData              string
		ctx, threads, maxRow          int
		skipBad, quiet, pack          bool
		config                        string
		valSplit                      float64
	)
	cmd := &cobra.Command{
		Use:   "sft --method full|lora|qlora|adapter|embed --base MODEL --data FILE[,FILE…] [--template NAME] -o OUTDIR",
		Short: "supervised fine-tuning on instruction or conversation data (full, LoRA, QLoRA, LLaMA-Adapter, embeddings)",
		Long: `Fine-tunes a model on Alpaca/BELLE JSON or JSONL (instruction, input,
output), Dolly (instruction, context, response), ShareGPT/Vicuna
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
--embed-tensors).

Every flag can live in a YAML recipe (--config; keys as the flag names with
_ for -, lists for comma-separated values); flags on the command line
override it. Recipes: sft/recipes/.

OUTDIR receives model.gguf (full, embed) or the adapter in PEFT's layout
(adapter_config.json, adapter_model.safetensors) and llama.cpp's
(adapter.gguf) (lora, qlora), or adapter.safetensors (adapter), and
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
		RunE: func(cmd *cobra.Command, args []string) error {
			errw := cmd.ErrOrStderr()
			if config != "" {
				if err := applyRecipe(cmd.Flags(), config); err != nil {
					return err
				}
			}
			if err := sft.ParseMethod(o.Method); err != nil {
				return err
			}
			if data == "" || out == "" {
				return fmt.Errorf("sft: --data and -o are required")
			}
			kernels.SetThreads(threads)
			m, tok, err := checkpoint.Load(base, tokPath)
			if err != nil {
				return err
			}
			defer m.Close()
			baseID := lora.Identify(m, cmp.Or(base, "stories260K (embedded)")) // recorded in the adapter files
			tmpl, err := chat.Lookup(tmplName)
			if err != nil {
				return err
			}
			if ctx <= 0 {
				ctx = m.Config.ContextLen
			}
			enc := &sft.Encoder{Tok: tok, Template: tmpl, Ctx: ctx, MaxRow: maxRow}
			switch overflow {
			case "drop":
			case "split":
				enc.Overflow = sft.Split
			default:
				return fmt.Errorf("sft: --overflow %q: want drop or split", overflow)
			}
			sources, err := sft.ParseSources(data)
			if err != nil {
				return err
			}
			venc := *enc // validation data is counted apart
			samples, held, bad, err := enc.MixSplit(sources, skipBad, o.Seed, valSplit)
			if err != nil {
				return err
			}
			fmt.Fprintf(errw, "data: %s; %d malformed rows skipped\n", enc.Stats, bad)
			o.Val = held
			if valData != "" {
				vsrc, err := sft.ParseSources(valData)
				if err != nil {
					return err
				}
				val, bad, err := venc.Mix(vsrc, skipBad, o.Seed)
				if err != nil {
					return err
				}
				fmt.Fprintf(errw, "val data: %s; %d malformed rows skipped\n", venc.Stats, bad)
				o.Val = append(o.Val, val...)
			}
			if targets != "" {
				o.LoRA.Targets = strings.Split(targets, ",")
			}
			if embT != "" {
				o.EmbedTensors = strings.Split(embT, ",")
			}
			if o.Method == sft.QLoRA {
				if o.BaseType, err = tensor.ParseDType(baseType); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			o.Log = errw
			o.Dir = out
			o.LimitMemory = os.Getenv("GOMEMLIMIT") == ""
			if pack {
				o.Pack = ctx
			}
			bar := newTrainBar(errw, true)
			if !quiet {
				o.OnStart, o.OnStep = bar.start, bar.step
			}
			res, err := sft.Tune(m, samples, o)
			bar.finish()
			if err != nil {
				return err
			}
			val := ""
			if !math.IsNaN(res.ValLoss) {
				val = fmt.Sprintf("; val loss %.4f (%.4f at the start)", res.ValLoss, res.StartValLoss)
			}
			fmt.Fprintf(errw, "trained %d steps, %d tokens in %s (%.0f tok/s)%s\n", len(res.Losses), res.Tokens,
				res.Elapsed.Round(1e6), float64(res.Tokens)/res.Elapsed.Seconds(), val)
			if o.Method == sft.Adapter {
				p := filepath.Join(out, "adapter.safetensors")
				if err := sft.SavePrefixes(p, res.Model); err != nil {
					return err
				}
				fmt.Fprintf(errw, "wrote %s\n", p)
				return nil
			}
			if res.Adapters != nil {
				res.Adapters.Base = baseID
				if err := lora.SavePEFT(out, res.Adapters, m.Config, base); err != nil {
					return err
				}
				if err := lora.SaveGGUF(filepath.Join(out, "adapter.gguf"), res.Adapters); err != nil {
					return err
				}
				fmt.Fprintf(errw, "wrote %s (PEFT adapter_model.safetensors, adapter.gguf)\n", out)
				if o.Method != sft.Embed {
					return nil
				}
				res.Adapters.Detach(res.Model) // model.gguf holds the weights alone
			}
			p := filepath.Join(out, "model.gguf")
			if err := checkpoint.SaveGGUF(p, res.Model, tok, checkpoint.SaveOptions{Name: "herd sft " + o.Method}); err != nil {
				return err
			}
			fmt.Fprintf(errw, "wrote %s\n", p)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&config, "config", "", "YAML recipe: keys are flag names (_ for -); flags given override it")
	f.StringVar(&o.Method, "method", sft.LoRA, "full, lora, qlora, adapter or embed")
	f.StringVar(&base, "base", "", "base model (GGUF or llama2.c; none: the embedded stories260K)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.StringVar(&data, "data", "", "data files, comma-separated, each FILE[:COUNT] (a TÜLU-style mixture: COUNT samples of it, sub- or upsampled)")
	f.StringVar(&tmplName, "template", "vicuna", "chat template: "+strings.Join(chat.Names(), ", "))
	f.StringVarP(&out, "output", "o", "", "output directory")
	f.IntVar(&ctx, "ctx", 0, "longest sample in tokens (0: the model's context)")
	f.StringVar(&overflow, "overflow", "drop", "an example longer than --ctx: drop or split")
	f.BoolVar(&skipBad, "skip-bad", false, "skip and count malformed rows instead of stopping")
	f.IntVar(&maxRow, "max-row-bytes", sft.DefaultMaxRow, "skip (and count) dataset rows longer than this many bytes before parsing them (-1: no limit)")
	f.IntVar(&o.Steps, "steps", 0, "optimizer steps (0: one epoch)")
	f.IntVar(&o.Batch, "batch", 8, "examples per step (with --pack: rows of --ctx tokens)")
	f.BoolVar(&pack, "pack", false, "fill each row of a batch with examples up to --ctx tokens (each still attends only to itself)")
	f.BoolVar(&o.Recompute, "recompute", false, "recompute each block's activations in the backward pass (less memory)")
	f.Float64Var(&o.LR, "lr", 2e-4, "peak learning rate (cosine to a tenth)")
	f.IntVar(&o.Warmup, "warmup", 0, "linear warm-up steps")
	f.Float64Var(&o.WeightDecay, "weight-decay", 0, "AdamW decoupled weight decay")
	f.Float64Var(&o.GradClip, "grad-clip", 1, "clip the global gradient norm (0: off)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the adapters' initialisation, dropout and data order")
	f.IntVar(&o.LoRA.Rank, "rank", 8, "LoRA rank")
	f.Float64Var(&o.LoRA.Alpha, "alpha", 16, "LoRA alpha (scale alpha/rank)")
	f.Float64Var(&o.LoRA.Dropout, "dropout", 0.05, "LoRA dropout")
	f.BoolVar(&o.LoRA.RSLoRA, "rslora", false, "scale by alpha/sqrt(rank) (rsLoRA)")
	f.StringVar(&targets, "targets", "q,k,v,o,gate,up,down", "LoRA target modules")
	f.StringVar(&baseType, "base-type", "nf4", "qlora: dtype of the frozen base (nf4; nf4_dq, double-quantized scales, for rows of 256; q4_0, q8_0, …)")
	f.StringVar(&embT, "embed-tensors", "embed,output", "embed: tensors to train (embed, output)")
	f.BoolVar(&o.EmbedLoRA, "embed-lora", false, "embed: train LoRA adapters (--rank, --targets, …) as well; the adapter is written beside model.gguf")
	f.IntVar(&o.SaveEvery, "save-every", 0, "checkpoint (OUTDIR/step-N/state.safetensors) every N steps; always after the last")
	f.BoolVar(&o.Resume, "resume", false, "continue the run in OUTDIR from its newest checkpoint, exactly")
	f.StringVar(&valData, "val-data", "", "validation data files, comma-separated, each FILE[:COUNT], read as --data")
	f.Float64Var(&valSplit, "val-split", 0, "hold out this fraction of each --data file's examples (by --seed) for validation")
	f.IntVar(&o.EvalEvery, "eval-every", train.Defaults().EvalEvery, "validation loss every N steps (0: at the end only)")
	f.IntVar(&o.EvalBatches, "eval-batches", train.Defaults().EvalBatches, "validation batches per evaluation (0: all; the last one covers the whole set)")
	f.IntVar(&o.PrefixLen, "prefix-len", 10, "adapter: prompt tokens per layer")
	f.IntVar(&o.PrefixLayers, "prefix-layers", 30, "adapter: top layers with a prompt (all when more)")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	f.BoolVar(&quiet, "quiet", false, "no progress bar")
	return cmd
}

// applyRecipe sets, from a YAML file of flag names (with _ for -), every
// flag not given on the command line.
func applyRecipe(fs *pflag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var kv map[string]any
	if err := yaml.Unmarshal(b, &kv); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			return fmt.Errorf("recipe %s: unknown key %q", path, k)
		}
		if fl.Changed {
			continue
		}
		v := fmt.Sprint(kv[k])
		if list, ok := kv[k].([]any); ok {
			parts := make([]string, len(list))
			for i, x := range list {
				parts[i] = fmt.Sprint(x)
			}
			v = strings.Join(parts, ",")
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("recipe %s: %s: %w", path, k, err)
		}
	}
	return nil
}
