package main

import (
	"fmt"

	"github.com/herd-llm/herd/format/delta"
	"github.com/spf13/cobra"
)

func deltaCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delta",
		Short: "ship a fine-tuned model as a delta against its base (as Alpaca and Vicuna shipped their weights)",
		Long: `herd delta make BASE TARGET -o DELTA writes a GGUF file holding TARGET's
metadata and, for every tensor that BASE has in the same dtype and shape,
the bytes of TARGET XOR those of BASE (useless without BASE, exact with it);
other tensors (a resized vocabulary, say) are stored whole. It records
SHA-256 checksums of BASE's and TARGET's tensors.

herd delta apply BASE DELTA -o TARGET rebuilds TARGET and verifies both
checksums: a wrong base, or a damaged delta, is an error and nothing is
written. Both go tensor by tensor: rebuilt tensors pass through a scratch
file beside the output, so memory holds one tensor at a time.`,
	}
	var out string
	mk := &cobra.Command{
		Use:   "make BASE TARGET -o DELTA",
		Short: "write the delta from BASE to TARGET (GGUF files)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("delta make: -o is required")
			}
			n, whole, err := delta.Make(args[0], args[1], out)
			if err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %d tensors against the base, %d whole\n", out, n, whole)
			}
			return err
		},
	}
	mk.Flags().StringVarP(&out, "output", "o", "", "delta file (GGUF)")
	var out2 string
	ap := &cobra.Command{
		Use:   "apply BASE DELTA -o TARGET",
		Short: "rebuild TARGET from BASE and a delta, verifying its checksum",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out2 == "" {
				return fmt.Errorf("delta apply: -o is required")
			}
			n, err := delta.Apply(args[0], args[1], out2)
			if err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: checksum verified (%d tensors rebuilt)\n", out2, n)
			}
			return err
		},
	}
	ap.Flags().StringVarP(&out2, "output", "o", "", "rebuilt model (GGUF)")
	cmd.AddCommand(mk, ap)
	return cmd
}
