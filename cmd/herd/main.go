// Command herd walks the LLaMA road on one machine: run, chat with, benchmark,
// convert and create LLaMA-architecture models (and, as herd grows, pretrain,
// fine-tune, align, quantize and serve them).
package main

import (
	"fmt"
	"github.com/herd-llm/herd/dist"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	err := newRoot().Execute()
	if c, ok := dist.Running(); ok && err != nil {
		// one of several MPI ranks: end the whole job, so that no rank
		// waits for this one in a collective
		fmt.Fprintf(os.Stderr, "herd (rank %d of %d): %v\n", c.Rank(), c.Size(), err)
		c.Abort(1)
	}
	if ferr := dist.Finalize(); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "herd:", err)
		os.Exit(1)
	}
}

// rankZero says whether this process is the one that reports: the only
// one, or rank 0 of an MPI job.
func rankZero() bool {
	c, ok := dist.Running()
	return !ok || c.Rank() == 0
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "herd",
		Short:         "herd: pretrain, fine-tune, quantize and run LLaMA models on your own machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), chatCmd(), benchCmd(), convertCmd(), initCmd(), quantizeCmd(), serveCmd(), loadtestCmd(), pretrainCmd(), dataCmd(), exportCmd(), perplexityCmd(), kldCmd(), tokenizeCmd(), tokenizerCmd(), resizeVocabCmd(), sftCmd(), dpoCmd(), rmCmd(), mergeCmd(), deltaCmd(), synthCmd(), judgeCmd())
	return root
}
