package main

import (
	"fmt"
	"io"
	"os"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

// mergeOptions are herd merge's flags.
type mergeOptions struct {
	loras                   []string
	out, tokPath, txt, base string
	ties, forceBase         bool
	density                 float64
	threads                 int
}

// mergeCmd is herd merge: LoRA adapters merged into a model.
func mergeCmd() *cobra.Command {
	var o mergeOptions
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
		RunE: func(cmd *cobra.Command, args []string) error { return runMerge(cmd, args, &o) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.loras, "lora", nil, "adapter (PEFT directory or GGUF) and optional :WEIGHT, repeatable")
	f.StringVarP(&o.out, "output", "o", "", "output GGUF file")
	f.StringVar(&o.base, "base", "", "the model the adapters merge into (default: the embedded stories260K)")
	f.StringVar(&o.tokPath, "tokenizer", "", "tokenizer (a GGUF model's own by default)")
	f.BoolVar(&o.ties, "ties", false, "TIES-merging instead of a weighted sum")
	f.BoolVar(&o.forceBase, "lora-any-base", false, "merge adapters even into a model other than the one they were trained on")
	f.Float64Var(&o.density, "density", 0.5, "TIES: share of each change kept (largest magnitudes)")
	f.StringVar(&o.txt, "eval", "", "text for the KL divergence of a requantized merge")
	f.IntVarP(&o.threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}

// runMerge is herd merge's body: it loads the base, merges the adapters,
// reports the requantizing cost for a quantized base, and writes o.out.
func runMerge(cmd *cobra.Command, args []string, o *mergeOptions) error {
	errw := cmd.ErrOrStderr()
	if len(args) == 1 {
		if o.base != "" && args[0] != o.base {
			return fmt.Errorf("merge: the base is given twice (%q and --base %q)", args[0], o.base)
		}
		o.base = args[0]
	}
	args = []string{o.base} // "" is the embedded model
	if len(o.loras) == 0 || o.out == "" {
		return fmt.Errorf("merge: give at least one --lora and -o")
	}
	kernels.SetThreads(o.threads)
	m, tok, err := checkpoint.Load(args[0], o.tokPath)
	if err != nil {
		return err
	}
	defer m.Close()
	sets, err := loadMergeAdapters(m, o.loras, o.forceBase)
	if err != nil {
		return err
	}
	if _, err := lora.Merge(m, sets, lora.Options{TIES: o.ties, Density: o.density}); err != nil {
		return err
	}
	if quantized(m) {
		// the reference: the base again, carrying the adapters
		ref, err := loadMergeReference(args[0], o.tokPath, sets)
		if err != nil {
			return err
		}
		defer ref.Close()
		if err := printRequantCost(errw, ref, m, tok, o.txt); err != nil {
			return err
		}
	}
	if err := checkpoint.SaveGGUF(o.out, m, tok, checkpoint.SaveOptions{Name: "herd merge"}); err != nil {
		return err
	}
	fmt.Fprintf(errw, "wrote %s (%d adapters merged)\n", o.out, len(sets))
	return nil
}

// loadMergeAdapters loads every --lora ADAPTER[:WEIGHT] for m.
func loadMergeAdapters(m *llama.Model, loras []string, forceBase bool) ([]lora.Weighted, error) {
	var sets []lora.Weighted
	for _, s := range loras {
		path, w, err := parseLoRASpec(s)
		if err != nil {
			return nil, err
		}
		set, err := loadLoRA(m, path, forceBase)
		if err != nil {
			return nil, err
		}
		sets = append(sets, lora.Weighted{Set: set, Weight: w})
	}
	return sets, nil
}

// loadMergeReference loads the base at path again and attaches the
// adapters to it unmerged; the caller closes it.
func loadMergeReference(path, tokPath string, sets []lora.Weighted) (*llama.Model, error) {
	ref, _, err := checkpoint.Load(path, tokPath)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if err := s.Set.Attach(ref, s.Weight); err != nil {
			ref.Close()
			return nil, err
		}
	}
	return ref, nil
}

// printRequantCost prints the KL divergence of the merged model m from ref
// (the base carrying the adapters unmerged) over the text file txt or,
// when txt is "", over 256 tokens ref writes greedily.
func printRequantCost(errw io.Writer, ref, m *llama.Model, tok tokenizer.Tokenizer, txt string) error {
	var toks []int
	var err error
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
	return nil
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
