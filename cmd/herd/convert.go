package main

import (
	"fmt"
	"os"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	conv "github.com/herd-llm/herd/convert"
	"github.com/herd-llm/herd/tensor"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

func convertCmd() *cobra.Command {
	var tokPath, out, dtype, name string
	cmd := &cobra.Command{
		Use:   "convert IN --tokenizer FILE -o OUT.gguf",
		Short: "convert a Hugging Face or Meta checkpoint directory, a llama2.c checkpoint or a GGUF to a GGUF file with its tokenizer",
		Long: `Reads a Hugging Face model directory (config.json of LlamaForCausalLM,
MistralForCausalLM, BaiChuanForCausalLM or BaichuanForCausalLM;
model.safetensors, sharded safetensors or pytorch_model*.bin; tokenizer.model
or tokenizer.json; the chat template of tokenizer_config.json and the EOS id
of generation_config.json are carried over), Meta's layout (params.json,
consolidated.NN.pth, tokenizer.model), a llama2.c checkpoint (legacy, v1 or
v2) or a GGUF file, and writes a GGUF v3 file with llama.* hyperparameters,
the tokenizer (--tokenizer: a llama2.c tokenizer.bin, a SentencePiece .model
or a GGUF; a GGUF or a directory keeps its own) and the weights, as they are
or converted with --dtype f32|f16|bf16 (a directory also q8_0, q4_0, … any
type tensor.Quantize writes). A directory is converted one tensor at a
time, with a progress bar in bytes; .bin and .pth pickles are read by a
restricted unpickler that never executes code from the file.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("give the output file with -o")
			}
			if _, ok := conv.Detect(args[0]); ok {
				return convertDir(cmd, args[0], out, tokPath, dtype, name)
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

// convertDir converts a Hugging Face or Meta checkpoint directory.
func convertDir(cmd *cobra.Command, dir, out, tokPath, dtype, name string) error {
	src, err := conv.Open(dir)
	if err != nil {
		return err
	}
	defer src.Close()
	opt := checkpoint.ConvertOptions{Name: name}
	if dtype != "" {
		if opt.DType, err = tensor.ParseDType(dtype); err != nil {
			return err
		}
		opt.Convert = true
	}
	if tokPath != "" {
		if opt.Tokenizer, err = checkpoint.OpenTokenizer(tokPath, src.Config.VocabSize); err != nil {
			return err
		}
	}
	bar := progressbar.NewOptions64(src.TotalBytes(), progressbar.OptionSetWriter(cmd.ErrOrStderr()), progressbar.OptionSetDescription("convert"),
		progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetWidth(25),
		progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetPredictTime(true))
	opt.Progress = func(done, total int64) {
		bar.ChangeMax64(total)
		_ = bar.Set64(done)
	}
	if err := checkpoint.ConvertGGUF(out, src, opt); err != nil {
		return err
	}
	_ = bar.Finish()
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	c := src.Config
	fmt.Fprintf(cmd.ErrOrStderr(), "\nwrote %s: %s (%s), %d layers, dim %d, vocab %d, %.2f MiB\n", out, src.Arch, src.Layout,
		c.NLayers, c.Dim, c.VocabSize, float64(st.Size())/(1<<20))
	return nil
}
