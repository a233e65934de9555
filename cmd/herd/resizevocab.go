package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/spf13/cobra"
)

func resizeVocabCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "resize-vocab MODEL.gguf MERGED.model -o OUT.gguf",
		Short: "give a model rows for the new tokens of an extended vocabulary",
		Long: `Write MODEL with the vocabulary of MERGED (for example a LLaMA vocabulary
extended with herd tokenizer extend): the token embedding and the output head
get a row for each new id, initialised to the mean of the old rows, and the
old rows are kept byte for byte, so the old tokens' logits are unchanged. The
weights keep their types; OUT carries MERGED as its tokenizer.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("give the output with -o")
			}
			m, err := llama.Open(args[0])
			if err != nil {
				return err
			}
			defer m.Close()
			tok, err := checkpoint.OpenTokenizer(args[1], 0)
			if err != nil {
				return err
			}
			old := m.Config.VocabSize
			if err := m.ResizeVocab(tok.VocabSize()); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0])) + " (vocabulary " + filepath.Base(args[1]) + ")"
			if err := checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: name}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: vocabulary %d → %d\n", out, old, tok.VocabSize())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the GGUF file to write")
	return cmd
}
