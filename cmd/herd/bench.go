package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"text/tabwriter"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/quant"
	"github.com/spf13/cobra"
)

func benchCmd() *cobra.Command {
	var pp, tg, reps, threads int
	var asJSON, plain, noMmap bool
	var kvType, cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench MODEL",
		Short: "measure prompt processing and generation speed (tokens/s), as llama-bench does",
		Long: `Runs a prompt-processing test (pp: -p random tokens in one batch) and a
generation test (tg: -n tokens one at a time), each -r times after a warm-up,
and prints mean ± standard deviation of tokens/s. --json prints one JSON
object per test.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(threads)
			m, err := llama.Open(args[0])
			if err != nil {
				return err
			}
			defer m.Close()
			if err := applyKVType(kvType, m); err != nil {
				return err
			}
			if plain && noMmap {
				return fmt.Errorf("--plain-layout and --no-mmap cannot be combined (--no-mmap loads through the repacking step)")
			}
			m.NoMmap = noMmap
			if !plain {
				packWeights(m)
			}
			if cpuProfile != "" {
				pf, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("--cpuprofile %s: %w", cpuProfile, err)
				}
				defer pprof.StopCPUProfile()
			}
			res, err := generate.Bench(m, pp, tg, reps, kernels.Threads())
			if err != nil {
				return err
			}
			st, _ := os.Stat(args[0])
			size := st.Size()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				for _, r := range res {
					if err := enc.Encode(struct {
						Model  string `json:"model_filename"`
						Size   int64  `json:"model_size"`
						Params int64  `json:"model_n_params"`
						Type   string `json:"model_type"`
						CPU    string `json:"kernels"` // the CPU path: purego, avx2 or avx512
						generate.BenchResult
					}{args[0], size, m.Params(), fileType(args[0], m), kernels.CPUPath(), r}); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
			fmt.Fprintf(tw, " model\t size\t params\t type\t kernels\t threads\t test\t t/s\t\n")
			for _, r := range res {
				fmt.Fprintf(tw, " %s\t %.2f MiB\t %.2f M\t %s\t %s\t %d\t %s\t %.2f ± %.2f\t\n", filepath.Base(args[0]),
					float64(size)/(1<<20), float64(m.Params())/1e6, fileType(args[0], m), kernels.CPUPath(), r.Threads, r.Test, r.Mean, r.StdDev)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVarP(&pp, "n-prompt", "p", 512, "prompt tokens of the pp test (0 skips it)")
	f.IntVarP(&tg, "n-gen", "n", 128, "generated tokens of the tg test (0 skips it)")
	f.IntVarP(&reps, "repetitions", "r", 5, "repetitions of each test")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per test")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the tests (go tool pprof) to this file")
	f.BoolVar(&plain, "plain-layout", false, "multiply Q4_0 and Q8_0 matrices as the file stores them, not repacked into eight-row groups at load")
	addKVFlag(f, &kvType)
	addNoMmapFlag(f, &noMmap)
	return cmd
}

// fileType names the model's type as llama-bench does: the GGUF file's
// general.file_type (Q4_K_M for a Q4_K_M mix, whatever its first tensor
// is), else, for files without one (llama2.c checkpoints, GGUF files that
// omit the key), the dtype of the layer matrices.
func fileType(path string, m *llama.Model) string {
	if kind, _ := llama.Format(path); kind == "gguf" {
		if f, err := gguf.Open(path); err == nil {
			ft, ok := f.GetUint("general.file_type")
			f.Close()
			if ok && ft <= math.MaxUint32 {
				return quant.FileType(ft).String()
			}
		}
	}
	return weightType(m)
}

// weightType names the dtype of the model's layer matrices.
func weightType(m *llama.Model) string {
	if len(m.Layers) > 0 {
		return m.Layers[0].Wq.DType.String()
	}
	return m.Embed.DType.String()
}
