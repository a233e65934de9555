package main

import (
	"fmt"
	"os"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/spf13/cobra"
)

func mergeCmd() *cobra.Command {
	var (
		loras                   []string
		out, tokPath, txt, base string
		ties, forceBase         bool
		density                 float64
		threads                 int
	)
	cmd := &cobra.Command{
		Use:   "merge [BASE] --lora ADAPTER[:WEIGHT] [--lora …] -o OUT.gguf",
		Short: "merge LoRA adapters into a model (linear or TIES), into quantized bases by requantizing",
		Long: `Adds each adapter's change, weight·scale·B·A, to the weights of BASE
(a GGUF or llama2.c model, as the argument or --base; when neither is
given, the embedded stories260K) and writes OUT.gguf with BASE's tokenizer. Several adapters sum (30B-Lazarus's
linear recipe) or, with --ties, combine by TIES-merging (trim to --density,
elect signs, average those that agree).

A quantized weight is dequantized, changed and requantized to its own
dtype. That rounding costs accuracy: herd prints the KL divergence of the
merged model from the base carrying the adapters unmerged, over --eval
(a text file) or, without it, 256 tokens the unmerged model writes itself.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			errw := cmd.ErrOrStderr()
			if len(args) == 1 {
				if base != "" && args[0] != base {
					return fmt.Errorf("merge: the base is given twice (%q and --base %q)", args[0], base)
				}
				base = args[0]
			}
			args = []string{base} // "" is the embedded model
			if len(loras) == 0 || out == "" {
				return fmt.Errorf("merge: give at least one --lora and -o")
			}
			kernels.SetThreads(threads)
			m, tok, err := checkpoint.Load(args[0], tokPath)
			if err != nil {
				return err
			}
			defer m.Close()
			var sets []lora.Weighted
			for _, s := range loras {
				path, w, err := parseLoRASpec(s)
				if err != nil {
					return err
				}
				set, err := loadLoRA(m, path, forceBase)
				if err != nil {
					return err
				}
				sets = append(sets, lora.Weighted{Set: set, Weight: w})
			}
			if _, err := lora.Merge(m, sets, lora.Options{TIES: ties, Density: density}); err != nil {
				return err
			}
			if quantized(m) {
				// the reference: the base again, carrying the adapters
				ref, _, err := checkpoint.Load(args[0], tokPath)
				if err != nil {
					return err
				}
				defer ref.Close()
				for _, s := range sets {
					if err := s.Set.Attach(ref, s.Weight); err != nil {
						return err
					}
				}
				var toks []int
				if txt != "" {
					b, err := os.ReadFile(txt)
					if err != nil {
						return err
					}
					toks = tok.Encode(string(b), true, false)
				} else if toks, err = greedy(ref, tok.BOS(), 256); err != nil {
					return err
				}
				ctx := min(len(toks)/2, ref.Config.ContextLen, 512)
				res, err := eval.KLDivergence(ref, m, toks, tok.BOS(), eval.Options{Ctx: ctx}, nil)
				if err != nil {
					return err
				}
				mean, e := res.MeanKLD()
				fmt.Fprintf(errw, "requantizing cost: mean KL divergence %.6f ± %.6f over %d tokens (same top token %.2f%%)\n",
					mean, e, res.Count, 100*float64(res.SameTop)/float64(max(1, res.Count)))
			}
			if err := checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: "herd merge"}); err != nil {
				return err
			}
			fmt.Fprintf(errw, "wrote %s (%d adapters merged)\n", out, len(sets))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&loras, "lora", nil, "adapter (PEFT directory or GGUF) and optional :WEIGHT, repeatable")
	f.StringVarP(&out, "output", "o", "", "output GGUF file")
	f.StringVar(&base, "base", "", "the model the adapters merge into (default: the embedded stories260K)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.BoolVar(&ties, "ties", false, "TIES-merging instead of a weighted sum")
	f.BoolVar(&forceBase, "lora-any-base", false, "merge adapters even into a model other than the one they were trained on")
	f.Float64Var(&density, "density", 0.5, "TIES: share of each change kept (largest magnitudes)")
	f.StringVar(&txt, "eval", "", "text for the KL divergence of a requantized merge")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}

// quantized reports whether any block matrix of m is stored quantized.
func quantized(m *llama.Model) bool {
	for _, l := range m.Layers {
		if l.Wq.DType.IsQuantized() || l.Down.DType.IsQuantized() {
			return true
		}
	}
	return false
}

// greedy returns the first token and n more that m writes greedily.
func greedy(m *llama.Model, first, n int) ([]int, error) {
	return generate.Tokens(m, []int{first}, n, generate.NewSampler(generate.SamplerConfig{}))
}
