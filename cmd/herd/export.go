package main

import (
	"fmt"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/spf13/cobra"
)

func exportCmd() *cobra.Command {
	var format, out, tokPath, tokOut string
	var version int
	cmd := &cobra.Command{
		Use:   "export IN --format llama2c -o OUT.bin [--tokenizer-out tokenizer.bin]",
		Short: "write a model in another format (llama2.c)",
		Long: `Writes a model herd loads (a GGUF such as herd pretrain's model.gguf, or a
llama2.c checkpoint) in llama2.c's checkpoint format: --version 0 (the legacy
header run.c reads, the default), 1 (float32 with the "ak42" header) or 2
(Q8_0 groups, for runq.c). --tokenizer-out also writes the model's tokenizer
as a llama2.c tokenizer.bin.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "llama2c" {
				return fmt.Errorf("--format %q: herd exports llama2c", format)
			}
			if out == "" {
				return fmt.Errorf("give the output file with -o")
			}
			m, tok, err := checkpoint.Load(args[0], tokPath)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := checkpoint.SaveLlama2c(out, m, version, tokOut, tok); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: llama2.c version %d, %d layers, dim %d, vocab %d\n", out, version,
				m.Config.NLayers, m.Config.Dim, m.Config.VocabSize)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "llama2c", "output format: llama2c")
	f.StringVarP(&out, "output", "o", "", "output file")
	f.IntVar(&version, "version", 0, "llama2.c file version: 0 (legacy, run.c), 1 (ak42 float32) or 2 (Q8_0)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer for a llama2.c input (a GGUF carries its own)")
	f.StringVar(&tokOut, "tokenizer-out", "", "also write the tokenizer as a llama2.c tokenizer.bin")
	return cmd
}
