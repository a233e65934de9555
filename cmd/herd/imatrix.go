package main

import (
	"fmt"
	"os"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/quant/imatrix"
	"github.com/spf13/cobra"
)

func imatrixCmd() *cobra.Command {
	var file, out, tokPath string
	var ctx, chunks, threads int
	cmd := &cobra.Command{
		Use:   "imatrix MODEL -f FILE -o imatrix.dat",
		Short: "compute an importance matrix from a text, as llama-imatrix does",
		Long: `Runs MODEL over FILE in chunks of -c tokens (each opened by BOS, as
llama-imatrix) and records, for every weight matrix of the blocks, the mean
of the squared activation of each input column, in llama-imatrix's file
format: herd quantize --imatrix and llama-quantize --imatrix read it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" || out == "" {
				return fmt.Errorf("give the text with -f FILE and the output with -o imatrix.dat")
			}
			kernels.SetThreads(threads)
			m, tok, err := checkpoint.Load(args[0], tokPath)
			if err != nil {
				return err
			}
			defer m.Close()
			text, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			toks := tok.Encode(string(text), tok.BOS() >= 0, false)
			stderr := cmd.ErrOrStderr()
			bar := newBar(stderr, "imatrix", false)
			t0 := time.Now()
			mat, err := imatrix.Compute(m, toks, tok.BOS(), file, imatrix.Options{Ctx: ctx, Chunks: max(0, chunks),
				OnChunk: func(k, n int) { bar.set(int64(k), int64(n)) }})
			bar.finish()
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if err := mat.Write(out); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "wrote %s: %d entries from %d chunks of %d tokens in %.1f s\n", out, len(mat.Entries), mat.LastCall, ctx, time.Since(t0).Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "calibration text")
	f.StringVarP(&out, "output", "o", "imatrix.dat", "output file")
	f.IntVarP(&ctx, "ctx-size", "c", 512, "tokens per chunk")
	f.IntVar(&chunks, "chunks", -1, "at most this many chunks (-1: all)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer file; the GGUF model's own by default")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}
