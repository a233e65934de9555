package main

import (
	"fmt"
	"strings"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

func exportCmd() *cobra.Command {
	var format, out, tokPath, tokOut string
	var version int
	var hf hfExportFlags
	cmd := &cobra.Command{
		Use:   "export IN --format llama2c -o OUT.bin [--tokenizer-out tokenizer.bin]",
		Short: "write a model in another format (llama2.c)",
		Long: `Writes a model herd loads (a GGUF such as herd pretrain's model.gguf, or a
llama2.c checkpoint) in llama2.c's checkpoint format: --version 0 (the legacy
header run.c reads, the default), 1 (float32 with the "ak42" header) or 2
(Q8_0 groups, for runq.c). --tokenizer-out also writes the model's tokenizer
as a llama2.c tokenizer.bin.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "hf" {
				return exportHF(cmd, args[0], out, tokPath, hf)
			}
			if format != "llama2c" {
				return fmt.Errorf("--format %q: herd exports llama2c or hf", format)
			}
			if out == "" {
				return fmt.Errorf("give the output file with -o")
			}
			m, tok, err := checkpoint.Load(args[0], tokPath)
			if err != nil {
				return err
			}
			defer m.Close()
			ck, err := toLlama2c(m, version)
			if err != nil {
				return err
			}
			if err := ck.WriteFile(out); err != nil {
				return err
			}
			if tokOut != "" {
				spm, ok := tokSPM(tok)
				if !ok {
					return fmt.Errorf("the model's tokenizer cannot be written as a llama2.c tokenizer.bin")
				}
				if err := llama2c.WriteTokenizer(tokOut, llama2cTokenizer(spm)); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: llama2.c version %d, %d layers, dim %d, vocab %d\n", out, version,
				m.Config.NLayers, m.Config.Dim, m.Config.VocabSize)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "llama2c", "output format: llama2c, or hf (a Hugging Face directory, -o DIR)")
	hf.register(f)
	f.StringVarP(&out, "output", "o", "", "output file")
	f.IntVar(&version, "version", 0, "llama2.c file version: 0 (legacy, run.c), 1 (ak42 float32) or 2 (Q8_0)")
	f.StringVar(&tokPath, "tokenizer", "", "tokenizer for a llama2.c input (a GGUF carries its own)")
	f.StringVar(&tokOut, "tokenizer-out", "", "also write the tokenizer as a llama2.c tokenizer.bin")
	return cmd
}

// toLlama2c describes m as a llama2.c checkpoint of the given version.
func toLlama2c(m *llama.Model, version int) (*llama2c.Checkpoint, error) {
	c := m.Config
	if c.Norm != llama.NormRMS || c.FFN != llama.FFNSwiGLU || c.Parallel || c.ALiBi {
		return nil, fmt.Errorf("llama2.c holds LLaMA blocks; this model's block (Falcon, ALiBi) is not one")
	}
	if c.Rope != llama.RopeInterleaved {
		return nil, fmt.Errorf("llama2.c rotates interleaved pairs; this model uses rotate-half RoPE")
	}
	if c.NormEps != 1e-5 || c.RopeTheta != 10000 {
		return nil, fmt.Errorf("llama2.c fixes RMSNorm epsilon 1e-5 and RoPE theta 10000; this model has %g and %g", c.NormEps, c.RopeTheta)
	}
	ck := &llama2c.Checkpoint{Config: llama2c.Config{Dim: c.Dim, HiddenDim: c.FFNDim, NLayers: c.NLayers, NHeads: c.NHeads,
		NKVHeads: c.NKVHeads, VocabSize: c.VocabSize, SeqLen: c.ContextLen, SharedClassifier: c.TiedEmbeddings, Version: version}}
	if version == 2 {
		ck.Config.GroupSize = 32
	}
	mat := func(l *nn.Linear) {
		ck.Tensors = append(ck.Tensors, llama2c.Tensor{Name: l.Name, DType: l.DType, Dims: []uint64{uint64(l.In), uint64(l.Out)}, Data: l.Data})
	}
	vec := func(name string, v []float32) {
		ck.Tensors = append(ck.Tensors, llama2c.Tensor{Name: name, DType: tensor.F32, Dims: []uint64{uint64(len(v))}, Data: tensor.BytesOfF32(v)})
	}
	mat(m.Embed)
	for i, l := range m.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		vec(p+"attn_norm.weight", l.AttnNorm)
		vec(p+"ffn_norm.weight", l.FFNNorm)
		for _, w := range []*nn.Linear{l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down} {
			mat(w)
		}
	}
	vec("output_norm.weight", m.OutNorm)
	if !c.TiedEmbeddings {
		mat(m.Output)
	}
	return ck, nil
}

// llama2cTokenizer writes an SPM vocabulary as llama2.c stores it: '▁' as a
// space, and ids 0, 1, 2 as "<unk>", "\n<s>\n", "\n</s>\n".
func llama2cTokenizer(t *tokenizer.SPM) *llama2c.Tokenizer {
	n := t.VocabSize()
	out := &llama2c.Tokenizer{Pieces: make([]string, n), Scores: make([]float32, n)}
	for i := range n {
		p := t.Piece(i)
		switch {
		case i == 1 && p == "<s>":
			p = "\n<s>\n"
		case i == 2 && p == "</s>":
			p = "\n</s>\n"
		default:
			p = strings.ReplaceAll(p, "▁", " ")
		}
		out.Pieces[i], out.Scores[i] = p, t.Score(i)
	}
	return out
}
