package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

func initCmd() *cobra.Command {
	var preset, dtype, out, tokPath, arch string
	var random, list, vocabFromTok bool
	var seed uint64
	var threads int
	cmd := &cobra.Command{
		Use:   "init --preset NAME --random -o OUT.gguf",
		Short: "write a randomly initialised model of a published shape (for benchmarks and as a pretraining start)",
		Long: `Writes a model of a preset's shape with weights drawn from N(0, 0.02²) and
norm gains of one, as GGUF. The tokenizer (--tokenizer: tokenizer.bin, .model
or GGUF) goes into the file; a preset with a 512-token vocabulary gets the
embedded tok512 by default. --list prints the presets with their sources.

--vocab-from-tokenizer sizes the vocabulary to --tokenizer's instead of the
preset's (a LLaMA shape with a vocabulary of its own, as Baichuan-7B put a
64K Chinese-English vocabulary on LLaMA-7B's shape). --arch falcon keeps the
preset's width, depth, query heads and vocabulary with Falcon-7B's block:
LayerNorm with biases (zero at the start), attention and a GELU
feed-forward of 4·dim in parallel from one norm, multi-query attention (one
KV head), rotate-half RoPE; the file is llama.cpp's "falcon" architecture.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "preset\tdim\tlayers\theads\tkv\tffn\tvocab\tctx\tparams\tsource")
				for _, p := range llama.Presets {
					c := p.Config
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1fM\t%s\n", p.Name, c.Dim, c.NLayers, c.NHeads, c.NKVHeads,
						c.FFNDim, c.VocabSize, c.ContextLen, float64(c.Params())/1e6, p.Source)
				}
				return tw.Flush()
			}
			if !random {
				return fmt.Errorf("herd init only makes random models for now: pass --random")
			}
			if preset == "" || out == "" {
				return fmt.Errorf("give --preset NAME and -o OUT.gguf (herd init --list shows the presets)")
			}
			p, err := llama.LookupPreset(preset)
			if err != nil {
				return err
			}
			dt, err := tensor.ParseDType(dtype)
			if err != nil {
				return err
			}
			if dt != tensor.F32 && dt != tensor.F16 {
				return fmt.Errorf("--dtype %s: init writes f32 or f16", dtype)
			}
			c := p.Config
			switch arch {
			case "llama":
			case "falcon":
				c = llama.Falcon(c)
				c.NKVHeads, c.FFNDim = 1, 4*c.Dim
			default:
				return fmt.Errorf("--arch %q: want llama or falcon", arch)
			}
			if vocabFromTok && tokPath == "" {
				return fmt.Errorf("--vocab-from-tokenizer needs --tokenizer")
			}
			var tok tokenizer.Tokenizer
			switch {
			case tokPath != "":
				want := p.Config.VocabSize
				if vocabFromTok {
					want = 0
				}
				if tok, err = checkpoint.OpenTokenizer(tokPath, want); err != nil {
					return err
				}
				if vocabFromTok {
					c.VocabSize = tok.VocabSize()
				}
			case p.Config.VocabSize == 512:
				if _, tok, err = checkpoint.Default(); err != nil {
					return err
				}
			default:
				return fmt.Errorf("preset %s has a %d-token vocabulary: give its tokenizer with --tokenizer (e.g. a LLaMA tokenizer.model or tokenizer.bin)", p.Name, p.Config.VocabSize)
			}
			if tok.VocabSize() != c.VocabSize {
				return fmt.Errorf("the tokenizer has %d tokens, preset %s wants %d (--vocab-from-tokenizer takes the tokenizer's)", tok.VocabSize(), p.Name, c.VocabSize)
			}
			kernels.SetThreads(threads)
			m, err := llama.Random(c, dt, seed)
			if err != nil {
				return err
			}
			name := p.Name
			if arch != "llama" {
				name += " " + arch
			}
			if err := checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: name + " (random)"}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, %s, vocabulary %d, %.1fM parameters\n", out, name, dt, c.VocabSize, float64(c.Params())/1e6)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&preset, "preset", "", "published configuration (see --list)")
	f.BoolVar(&random, "random", false, "random weights, normal(0, 0.02)")
	f.StringVar(&dtype, "dtype", "f32", "weight type: f32 or f16")
	f.Uint64Var(&seed, "seed", 0, "random seed")
	f.StringVarP(&out, "output", "o", "", "output GGUF file")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer to store in the file")
	f.BoolVar(&list, "list", false, "list the presets")
	f.StringVar(&arch, "arch", "llama", "block: llama, or falcon (the preset's sizes with Falcon-7B's block)")
	f.BoolVar(&vocabFromTok, "vocab-from-tokenizer", false, "size the vocabulary to --tokenizer's instead of the preset's")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}
