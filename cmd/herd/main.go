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

// parallelCommands are the commands that run across ranks under mpirun.
var parallelCommands = map[string]bool{"herd pretrain": true, "herd sft": true, "herd dpo": true, "herd rm train": true, "herd data prepare": true}

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
		// under mpirun only the training commands run, as data-parallel
		// ranks: any other would run once per rank
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if n, v := dist.LaunchedSize(); n > 1 && !parallelCommands[cmd.CommandPath()] {
				return fmt.Errorf("%s was started as one of %d MPI ranks (%s=%d): only herd pretrain, sft, dpo, rm train and data prepare run across ranks; start it without mpirun", cmd.CommandPath(), n, v, n)
			}
			return nil
		},
	}
	root.AddCommand(runCmd(), chatCmd(), benchCmd(), convertCmd(), initCmd(), quantizeCmd(), serveCmd(), loadtestCmd(), pretrainCmd(), dataCmd(), exportCmd(), perplexityCmd(), kldCmd(), tokenizeCmd(), tokenizerCmd(), resizeVocabCmd(), sftCmd(), dpoCmd(), rmCmd(), rlCmd(), mergeCmd(), deltaCmd(), synthCmd(), judgeCmd(), evalCmd(), gptqCmd(), gptqConvertCmd(), imatrixCmd(), quickstartCmd(), recipeCmd())
	return root
}
