package main

import (
	"bufio"
	"fmt"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

// genFlags are the sampling and context flags shared by run and chat.
type genFlags struct {
	tokenizer string
	n         int
	ctx       int
	threads   int
	sampler   generate.SamplerConfig
	loras     []string
	kvType    string
}

func (g *genFlags) add(cmd *cobra.Command, defaultTemp float32) {
	f := cmd.Flags()
	f.StringVar(&g.tokenizer, "tokenizer", "", "tokenizer file (llama2.c tokenizer.bin or GGUF); a GGUF model's own is used by default")
	f.IntVarP(&g.n, "n", "n", 256, "new tokens to generate")
	f.IntVarP(&g.ctx, "ctx", "c", 0, "context (KV cache positions); 0: the model's context length")
	f.IntVarP(&g.threads, "threads", "t", 0, "threads (0: all cores)")
	f.Float32Var(&g.sampler.Temperature, "temp", defaultTemp, "temperature; 0 is greedy")
	f.IntVar(&g.sampler.TopK, "top-k", 0, "keep the K most likely tokens (0: all)")
	f.Float32Var(&g.sampler.TopP, "top-p", 0.9, "nucleus sampling threshold (1: off)")
	f.Float32Var(&g.sampler.MinP, "min-p", 0, "drop tokens less likely than P × the most likely (0: off)")
	f.Float32Var(&g.sampler.RepeatPenalty, "repeat-penalty", 1, "penalty on recently seen tokens (1: off)")
	f.IntVar(&g.sampler.RepeatLastN, "repeat-last-n", 64, "window of the repetition penalty")
	f.Uint64Var(&g.sampler.Seed, "seed", 0, "random seed (the same seed gives the same text)")
	addLoRAFlag(f, &g.loras)
	addKVFlag(f, &g.kvType)
}

func runCmd() *cobra.Command {
	var g genFlags
	var prompt string
	cmd := &cobra.Command{
		Use:   "run [MODEL]",
		Short: "generate text from a prompt (MODEL: GGUF or llama2.c checkpoint; none: the embedded stories260K)",
		Long: `Generate text from a prompt, printing the prompt followed by the continuation
to stdout exactly as llama2.c prints it, and timings to stderr.

MODEL is a GGUF file or a llama2.c checkpoint (legacy, version 1 or 2). With no
MODEL, herd runs stories260K (Andrej Karpathy's tinyllamas, MIT), embedded in
the binary with its 512-piece tokenizer.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(g.threads)
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			m, tok, err := checkpoint.Load(path, g.tokenizer)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := applyKVType(g.kvType, m); err != nil {
				return err
			}
			if err := applyLoRAs(m, g.loras); err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			gen := generate.Generator{Model: m, Tok: tok}
			st, err := gen.Generate(prompt, generate.Options{MaxTokens: g.n, Context: g.ctx}, generate.NewSampler(g.sampler), func(p []byte) error {
				_, err := out.Write(p)
				if err == nil {
					err = out.Flush()
				}
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(out)
			if err := out.Flush(); err != nil {
				return err
			}
			if st.ContextFull {
				fmt.Fprintf(cmd.ErrOrStderr(), "herd: stopped at the context of %d positions (raise it with -c)\n", st.PromptTokens+st.GenTokens)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "prompt: %d tokens, %.1f tokens/s; generation: %d tokens, %.1f tokens/s; %d threads\n",
				st.PromptTokens, st.PromptRate(), st.GenTokens, st.GenRate(), kernels.Threads())
			return nil
		},
	}
	g.add(cmd, 1.0)
	cmd.Flags().StringVarP(&prompt, "prompt", "p", "", "prompt text")
	return cmd
}

// tokSPM returns the SentencePiece tokenizer behind tok, if it is one.
func tokSPM(tok tokenizer.Tokenizer) (*tokenizer.SPM, bool) {
	s, ok := tok.(*tokenizer.SPM)
	return s, ok
}
