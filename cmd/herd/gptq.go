package main

import (
	"fmt"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/quant/gptq"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

// gptqFlags are herd gptq's settings.
type gptqFlags struct {
	calib, out, typ, tokenizer string
	format                     string
	bits, group                int
	sym, actOrder, fromFloat   bool
	trueSeq                    bool
	damp                       float64
	samples, ctx, threads      int
	seed                       uint64
}

func gptqCmd() *cobra.Command {
	var g gptqFlags
	cmd := &cobra.Command{
		Use:   "gptq MODEL.gguf --calib FILE -o OUT.gguf",
		Short: "quantize with GPTQ (Hessian error correction from calibration text) into llama.cpp's formats",
		Long: `Quantizes every layer matrix of MODEL (F32/F16/BF16 GGUF) with GPTQ
(Frantar et al. 2022): layers in order, each layer's inputs collected from
--calib-samples random windows of --calib-ctx tokens of the calibration
text run through the already-quantized earlier layers (--from-float: through
the float model), H = 2·X·Xᵀ per input (q/k/v share one, gate/up another),
columns quantized one by one with the error corrected through H⁻¹'s
Cholesky factor in lazy blocks of 128 columns.

The output is a GGUF whose types hold GPTQ's grid exactly: --bits 4 --sym
--group 32 → Q4_0, 4-bit asymmetric → Q4_1, 5-bit → Q5_0/Q5_1, 8-bit →
Q8_0; or --type MIX (Q4_K_M, Q5_K_S, Q6_K, …) runs GPTQ's error feedback
over the k-quants' own block quantizers (tensors the mix gives a type
GPTQ has no grid for are rounded to nearest, with a warning). Embedding
and output head are rounded to nearest. The calibration text is any file
herd data prepare reads (text, JSONL, .gz/.zst, a directory or a glob).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runGPTQ(cmd, args[0], &g) },
	}
	f := cmd.Flags()
	f.StringVar(&g.calib, "calib", "", "calibration text (required)")
	f.StringVarP(&g.out, "output", "o", "", "output GGUF (required)")
	f.StringVar(&g.format, "format", "gguf", "output: gguf (a file) or autogptq (a directory: qweight/qzeros/scales/g_idx safetensors, quantize_config.json, config.json)")
	f.StringVar(&g.typ, "type", "", "llama.cpp mix to write (default: the legacy type of --bits/--group/--sym)")
	f.IntVar(&g.bits, "bits", 4, "bits per weight of the GPTQ grid (4, 5 or 8 for GGUF)")
	f.IntVar(&g.group, "group", 32, "columns per group (32 for GGUF's legacy types)")
	f.BoolVar(&g.sym, "sym", true, "symmetric grid (zero in the middle)")
	f.Float64Var(&g.damp, "damp", 0.01, "dampening added to H's diagonal, as a fraction of its mean")
	f.BoolVar(&g.actOrder, "act-order", false, "quantize columns by decreasing H_ii (static groups)")
	f.BoolVar(&g.trueSeq, "true-sequential", false, "within a block, collect each input after the matrices before it are quantized (GPTQ-for-LLaMA's --true-sequential)")
	f.BoolVar(&g.fromFloat, "from-float", false, "collect every layer's inputs from the float model (faster, less exact)")
	f.IntVar(&g.samples, "calib-samples", 128, "calibration windows")
	f.IntVar(&g.ctx, "calib-ctx", 512, "tokens per calibration window")
	f.Uint64Var(&g.seed, "seed", 0, "seed for choosing the windows")
	f.StringVar(&g.tokenizer, "tokenizer", "", "tokenizer file; the GGUF model's own by default")
	f.IntVarP(&g.threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}

// fileType resolves --type against --bits/--group/--sym.
func (g *gptqFlags) fileType(cmd *cobra.Command) (quant.FileType, error) {
	given := cmd.Flags().Changed("bits") || cmd.Flags().Changed("group") || cmd.Flags().Changed("sym")
	if g.typ == "" {
		return gptq.FileTypeFor(g.bits, g.group, g.sym)
	}
	ft, err := quant.ParseFileType(g.typ)
	if err != nil {
		return 0, err
	}
	return ft, gptq.CheckFileType(ft, g.bits, g.group, g.sym, given)
}

func runGPTQ(cmd *cobra.Command, model string, g *gptqFlags) error {
	if g.calib == "" || g.out == "" {
		return fmt.Errorf("give the calibration text with --calib FILE and the output with -o OUT.gguf")
	}
	var ft quant.FileType
	var uni *gptq.Uniform
	switch g.format {
	case "gguf":
		var err error
		if ft, err = g.fileType(cmd); err != nil {
			return err
		}
	case "autogptq":
		if g.typ != "" {
			return fmt.Errorf("--type is for --format gguf; the AutoGPTQ grid is --bits/--group/--sym")
		}
		uni = &gptq.Uniform{Bits: g.bits, Group: g.group, Sym: g.sym}
	default:
		return fmt.Errorf("--format %q: want gguf or autogptq", g.format)
	}
	kernels.SetThreads(g.threads)
	m, tok, err := checkpoint.Load(model, g.tokenizer)
	if err != nil {
		return err
	}
	defer m.Close()
	in, err := gguf.Open(model)
	if err != nil {
		return err
	}
	defer in.Close()
	toks, err := gptq.CalibrationTokens(g.calib, tok)
	if err != nil {
		return err
	}
	windows, err := gptq.Windows(toks, g.samples, g.ctx, g.seed)
	if err != nil {
		return fmt.Errorf("%s: %w", g.calib, err)
	}
	stderr := cmd.ErrOrStderr()
	what := ft.String()
	if uni != nil {
		what = fmt.Sprintf("AutoGPTQ %d-bit group %d sym=%v", uni.Bits, uni.Group, uni.Sym)
	}
	fmt.Fprintf(stderr, "gptq: %s → %s (%s), %d windows of %d tokens from %s (%d tokens), damp %g, act-order %v, sequential %v\n",
		model, g.out, what, len(windows), g.ctx, g.calib, len(toks), g.damp, g.actOrder, !g.fromFloat)
	bar := newBar(stderr, "gptq", false)
	start := time.Now()
	res, err := gptq.QuantizeModel(in, m, windows, g.out, gptq.ModelOptions{
		Type: ft, AutoGPTQ: uni, Damp: g.damp, ActOrder: g.actOrder, FromFloat: g.fromFloat, TrueSequential: g.trueSeq,
		Progress: func(layer, layers int, stage string) {
			bar.pb.Describe(fmt.Sprintf("layer %d/%d: %s", layer+1, layers, stage))
			bar.set(int64(layer), int64(layers))
		},
		Warn:  func(msg string) { bar.println("warning: " + msg) },
		Extra: g.metadata(len(windows)),
	})
	bar.finish()
	if err != nil {
		return err
	}
	for i, d := range res.Layers {
		fmt.Fprintf(stderr, "layer %d: %.2f s\n", i, d.Seconds())
	}
	n := 0
	for _, mr := range res.Matrices {
		if mr.GPTQ {
			n++
		}
	}
	if uni != nil {
		fmt.Fprintf(stderr, "%d layer matrices by GPTQ; wrote %s in %.1f s\n", n, g.out, time.Since(start).Seconds())
		return nil
	}
	fmt.Fprintf(stderr, "%d of %d layer matrices by GPTQ; model size %.2f MiB → %.2f MiB (%.2f bits per weight); wrote %s in %.1f s\n",
		n, len(res.Matrices), mib(res.File.InBytes), mib(res.File.OutBytes), bitsPerWeight(res.File), g.out, time.Since(start).Seconds())
	return nil
}

func gptqConvertCmd() *cobra.Command {
	var out, tokPath, name string
	cmd := &cobra.Command{
		Use:   "gptq-convert DIR --tokenizer FILE -o OUT.gguf",
		Short: "convert an AutoGPTQ / GPTQ-for-LLaMA checkpoint into a GGUF herd and llama.cpp run",
		Long: `Reads an AutoGPTQ-layout checkpoint (config.json, quantize_config.json,
one .safetensors with qweight/qzeros/scales/g_idx per linear layer, v1
"gptq" or "gptq_v2" zero points; q/k rows from Hugging Face's rotate-half
order) and writes a GGUF: 4-bit and 8-bit symmetric groups of 32 become
Q4_0 / Q8_0 exactly, any other grid F16 of the dequantized weights. The
tokenizer (a tokenizer.model, tokenizer.json, tokenizer.bin or GGUF) is
given with --tokenizer.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("give the output with -o OUT.gguf")
			}
			a, err := gptq.ReadAutoGPTQ(args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			m, err := a.Model()
			if err != nil {
				return err
			}
			var tok tokenizer.Tokenizer
			if tokPath != "" {
				if tok, err = checkpoint.OpenTokenizer(tokPath, a.Config.VocabSize); err != nil {
					return err
				}
			}
			if err := checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: name}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %d-bit group %d GPTQ, layer matrices as %s\n", out, a.QConfig.Bits, a.QConfig.GroupSize, m.Layers[0].Wq.DType)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "output GGUF")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer file")
	f.StringVar(&name, "name", "", "general.name of the model")
	return cmd
}

// metadata records the run's settings in the GGUF file.
func (g *gptqFlags) metadata(windows int) []gguf.KV {
	var kv []gguf.KV
	add := func(k string, v any) {
		if val, err := gguf.ValueOf(v); err == nil {
			kv = append(kv, gguf.KV{Key: "quantize.gptq." + k, Value: val})
		}
	}
	add("calibration_file", g.calib)
	add("calibration_windows", int32(windows))
	add("calibration_ctx", int32(g.ctx))
	add("seed", g.seed)
	add("damp", float32(g.damp))
	add("act_order", g.actOrder)
	add("sequential", !g.fromFloat)
	add("true_sequential", g.trueSeq)
	return kv
}
