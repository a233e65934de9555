package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/quant/imatrix"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func quantizeCmd() *cobra.Command {
	var threads int
	var verbose, quiet bool
	var imatrixPath string
	cmd := &cobra.Command{
		Use:   "quantize IN.gguf OUT.gguf TYPE",
		Short: "quantize a GGUF model to a llama.cpp block format mix (Q4_K_M, Q8_0, ...)",
		Long: `Writes OUT.gguf with every weight matrix quantized to TYPE's mix, as
llama-quantize does without an importance matrix: the same per-tensor rules
(more bits for attn_v and ffn_down in the _M mixes, Q6_K or Q8_0 for the
output head, fallbacks for rows that are not whole blocks), ggml's reference
quantizers (byte-identical output), all metadata and the tokenizer kept and
general.file_type set. The input may be F32, F16 or BF16; an already
quantized input is dequantized and quantized again, with a warning.

TYPE is one of ` + strings.Join(quant.FileTypeNames(), ", ") + `.`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			ft, err := quant.ParseFileType(args[2])
			if err != nil {
				return err
			}
			in, err := gguf.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			stderr := cmd.ErrOrStderr()
			bar := newBar(stderr, "quantizing to "+ft.String(), quiet)
			start := time.Now()
			opt := quant.Options{
				Type:     ft,
				Threads:  threads,
				Progress: bar.set,
				Warn:     func(msg string) { bar.println("warning: " + msg) },
			}
			weightErr := func() error { return nil }
			if imatrixPath != "" {
				mat, err := imatrix.Read(imatrixPath)
				if err != nil {
					return err
				}
				if weightErr, err = imatrix.Apply(&opt, in, mat, imatrixPath); err != nil {
					return err
				}
			}
			res, err := quant.File(in, args[1], opt)
			bar.finish()
			if err == nil {
				err = weightErr()
			}
			if err != nil {
				return err
			}
			if verbose {
				for i, c := range res.Plan {
					how := "copied"
					if c.Quantized() {
						how = "-> " + c.To.String()
						if c.Fallback {
							how += " (fallback)"
						}
					}
					fmt.Fprintf(stderr, "[%4d/%4d] %-36s %-22s %-6s %s\n", i+1, len(res.Plan), c.Name, fmt.Sprint(c.Dims), c.From, how)
				}
			}
			counts := map[string]int{}
			var types []string
			for _, c := range res.Plan {
				if counts[c.To.String()] == 0 {
					types = append(types, c.To.String())
				}
				counts[c.To.String()]++
			}
			var mix []string
			for _, t := range types {
				mix = append(mix, fmt.Sprintf("%s: %d", t, counts[t]))
			}
			inSt, _ := os.Stat(args[0])
			outSt, err := os.Stat(args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "tensors: %s\n", strings.Join(mix, ", "))
			if n := res.Fallbacks(); n > 0 {
				fmt.Fprintf(stderr, "%d of %d tensors needed a fallback type (rows not whole blocks)\n", n, len(res.Plan))
			}
			fmt.Fprintf(stderr, "model size = %.2f MiB, quant size = %.2f MiB (%.2f bits per weight)\n",
				mib(res.InBytes), mib(res.OutBytes), bitsPerWeight(res))
			fmt.Fprintf(stderr, "wrote %s: %.2f MiB -> %.2f MiB in %.1f s\n", args[1], mib(inSt.Size()), mib(outSt.Size()), time.Since(start).Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	f.BoolVarP(&verbose, "verbose", "v", false, "list every tensor with its type")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	f.StringVar(&imatrixPath, "imatrix", "", "importance matrix (herd imatrix or llama-imatrix) weighting the quantization searches, as llama-quantize --imatrix")
	return cmd
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// bitsPerWeight is the output's tensor bits per weight.
func bitsPerWeight(r *quant.Result) float64 {
	var n uint64
	for _, c := range r.Plan {
		e := uint64(1)
		for _, d := range c.Dims {
			e *= d
		}
		n += e
	}
	if n == 0 {
		return 0
	}
	return float64(r.OutBytes) * 8 / float64(n)
}

// bar is a progress bar safe for concurrent updates, which also prints
// whole lines (warnings) above itself.
type bar struct {
	mu  sync.Mutex
	pb  *progressbar.ProgressBar
	w   io.Writer
	max int64
}

// newBar draws on w only when w is a terminal and not quiet (a log file
// gets the summary lines, not a stream of redraws).
func newBar(w io.Writer, desc string, quiet bool) *bar {
	f, ok := w.(*os.File)
	visible := ok && term.IsTerminal(int(f.Fd())) && !quiet
	return &bar{w: w, pb: progressbar.NewOptions64(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(), progressbar.OptionSetVisibility(visible))}
}

func (b *bar) set(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max != total {
		b.max = total
		b.pb.ChangeMax64(total)
	}
	_ = b.pb.Set64(done)
}

func (b *bar) println(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.pb.Clear()
	fmt.Fprintln(b.w, s)
}

func (b *bar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.pb.Finish()
}
