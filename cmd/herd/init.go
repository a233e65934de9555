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
	var preset, dtype, out, tokPath string
	var random, list bool
	var seed uint64
	var threads int
	cmd := &cobra.Command{
		Use:   "init --preset NAME --random -o OUT.gguf",
		Short: "write a randomly initialised model of a published shape (for benchmarks and as a pretraining start)",
		Long: `Writes a model of a preset's shape with weights drawn from N(0, 0.02²) and
norm gains of one, as GGUF. The tokenizer (--tokenizer: tokenizer.bin, .model
or GGUF) goes into the file; a preset with a 512-token vocabulary gets the
embedded tok512 by default. --list prints the presets with their sources.`,
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
			var tok tokenizer.Tokenizer
			switch {
			case tokPath != "":
				if tok, err = checkpoint.OpenTokenizer(tokPath, p.Config.VocabSize); err != nil {
					return err
				}
			case p.Config.VocabSize == 512:
				if _, tok, err = checkpoint.Default(); err != nil {
					return err
				}
			default:
				return fmt.Errorf("preset %s has a %d-token vocabulary: give its tokenizer with --tokenizer (e.g. a LLaMA tokenizer.model or tokenizer.bin)", p.Name, p.Config.VocabSize)
			}
			if tok.VocabSize() != p.Config.VocabSize {
				return fmt.Errorf("the tokenizer has %d tokens, preset %s wants %d", tok.VocabSize(), p.Name, p.Config.VocabSize)
			}
			kernels.SetThreads(threads)
			m, err := llama.Random(p.Config, dt, seed)
			if err != nil {
				return err
			}
			if err := checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: p.Name + " (random)"}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, %s, %.1fM parameters\n", out, p.Name, dt, float64(p.Config.Params())/1e6)
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
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}
