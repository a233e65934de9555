package main

import (
	"fmt"
	"os"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/tensor"
	"github.com/spf13/cobra"
)

func convertCmd() *cobra.Command {
	var tokPath, out, dtype, name string
	cmd := &cobra.Command{
		Use:   "convert IN --tokenizer FILE -o OUT.gguf",
		Short: "convert a llama2.c checkpoint (or a GGUF) to a GGUF file with its tokenizer",
		Long: `Reads a llama2.c checkpoint (legacy, v1 or v2) or a GGUF file and writes a
GGUF v3 file with llama.* hyperparameters, the tokenizer (--tokenizer: a
llama2.c tokenizer.bin, a SentencePiece .model or a GGUF; a GGUF input keeps
its own) and the weights, as they are or converted with --dtype f32|f16|bf16.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("give the output file with -o")
			}
			m, tok, err := checkpoint.Load(args[0], tokPath)
			if err != nil {
				return err
			}
			defer m.Close()
			opt := checkpoint.SaveOptions{Name: name}
			if dtype != "" {
				dt, err := tensor.ParseDType(dtype)
				if err != nil {
					return err
				}
				if dt != tensor.F32 && dt != tensor.F16 && dt != tensor.BF16 {
					return fmt.Errorf("--dtype %s: convert writes f32, f16 or bf16 (quantization is `herd quantize`)", dtype)
				}
				opt.DType, opt.Convert = dt, true
			}
			spm, ok := tokSPM(tok)
			if !ok {
				return fmt.Errorf("the tokenizer cannot be stored in GGUF yet")
			}
			if err := checkpoint.SaveGGUF(out, m, spm, opt); err != nil {
				return err
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, %d layers, dim %d, vocab %d, %.2f MiB\n", out, weightType(m),
				m.Config.NLayers, m.Config.Dim, m.Config.VocabSize, float64(st.Size())/(1<<20))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer file (llama2.c tokenizer.bin, .model or GGUF)")
	f.StringVarP(&out, "output", "o", "", "output GGUF file")
	f.StringVar(&dtype, "dtype", "", "convert the matrices to f32, f16 or bf16 (default: keep)")
	f.StringVar(&name, "name", "", "general.name of the model")
	return cmd
}
