// Command herd walks the LLaMA road on one machine: run, chat with, benchmark,
// convert and create LLaMA-architecture models (and, as herd grows, pretrain,
// fine-tune, align, quantize and serve them).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "herd:", err)
		os.Exit(1)
	}
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "herd",
		Short:         "herd: pretrain, fine-tune, quantize and run LLaMA models on your own machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), chatCmd(), benchCmd(), convertCmd(), initCmd(), quantizeCmd(), serveCmd(), loadtestCmd(), pretrainCmd(), dataCmd(), exportCmd(), perplexityCmd(), kldCmd(), tokenizeCmd(), tokenizerCmd(), resizeVocabCmd(), sftCmd(), dpoCmd(), rmCmd(), mergeCmd(), deltaCmd(), synthCmd(), judgeCmd(), quickstartCmd(), recipeCmd())
	return root
}
