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
	root := &cobra.Command{
		Use:           "herd",
		Short:         "herd: pretrain, fine-tune, quantize and run LLaMA models on your own machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(runCmd(), chatCmd(), benchCmd(), convertCmd(), initCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "herd:", err)
		os.Exit(1)
	}
}
