package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

func tokenizerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokenizer",
		Short: "train a SentencePiece vocabulary, or extend one with another",
	}
	cmd.AddCommand(tokenizerTrainCmd(), tokenizerExtendCmd())
	return cmd
}

func tokenizerTrainCmd() *cobra.Command {
	var inputs, user []string
	var out string
	var opt tokenizer.TrainOptions
	var splitDigits bool
	cmd := &cobra.Command{
		Use:   "train -i FILES… --vocab-size N [--character-coverage C] [--byte-fallback] [--user-symbols …] -o OUT.model",
		Short: "learn a SentencePiece BPE vocabulary from text files",
		Long: `Learn a SentencePiece BPE vocabulary from text files, each line one sentence,
and write it as a .model file that sentencepiece (spm_encode) and herd load and
encode identically.

The pieces are <unk>, <s>, </s>, the user symbols, the 256 byte pieces (with
--byte-fallback), the merged pieces in merge order, then the characters that
cover C of the text. Normalisation is LLaMA's: identity, a dummy prefix,
whitespace kept; digits are split into single pieces unless --split-digits=false.
Files may follow -i separated by commas or spaces (-i a.txt b.txt).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inputs = append(inputs, args...) // -i a.txt b.txt: the files after the first
			if len(inputs) == 0 || out == "" || opt.VocabSize <= 0 {
				return fmt.Errorf("give the text with -i, the size with --vocab-size and the output with -o")
			}
			readers := make([]io.Reader, 0, 2*len(inputs))
			for _, in := range inputs {
				f, err := os.Open(in)
				if err != nil {
					return err
				}
				defer f.Close()
				// a newline between files, so the last line of one does not
				// run into the first of the next
				readers = append(readers, f, strings.NewReader("\n"))
			}
			opt.UserSymbols = user
			opt.NoSplitDigits = !splitDigits
			start := time.Now()
			tk, st, err := tokenizer.Train(io.MultiReader(readers...), opt)
			if err != nil {
				return err
			}
			if err := writeFile(out, tk.MarshalModelProto()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %d pieces (%d merges, %d characters) from %d lines, %d distinct words, %d characters in %.1fs\n",
				out, tk.VocabSize(), st.Merges, st.RequiredChars, st.Lines, st.Words, st.Chars, time.Since(start).Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&inputs, "input", "i", nil, "text files, one sentence a line (repeat or separate with commas)")
	f.IntVar(&opt.VocabSize, "vocab-size", 0, "number of pieces, meta pieces included")
	f.Float64Var(&opt.CharacterCoverage, "character-coverage", 0.9995, "share of the text's characters that become pieces")
	f.BoolVar(&opt.ByteFallback, "byte-fallback", false, "add the 256 byte pieces so no text needs <unk>")
	f.StringSliceVar(&user, "user-symbols", nil, "pieces always matched whole (comma-separated)")
	f.IntVar(&opt.MaxPieceLength, "max-piece-length", 16, "longest piece in characters")
	f.BoolVar(&splitDigits, "split-digits", true, "make every digit its own piece")
	f.StringVarP(&out, "output", "o", "", "the .model file to write")
	return cmd
}

func tokenizerExtendCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "extend BASE ADD -o MERGED.model",
		Short: "append the pieces of one vocabulary that another lacks (Chinese-LLaMA's merge)",
		Long: `Append to BASE the pieces of ADD that BASE lacks, with score 0, as
Chinese-LLaMA-Alpaca merged a Chinese vocabulary into LLaMA's. BASE's ids are
unchanged, so a model trained on BASE keeps its meaning for them; give the
model rows for the new ids with herd resize-vocab. BASE and ADD are
SentencePiece vocabularies as herd reads them: a .model file, a GGUF model's
own vocabulary or a llama2.c tokenizer.bin.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("give the output with -o")
			}
			var vocab [2]*tokenizer.SPM
			for i, p := range args {
				tok, err := checkpoint.OpenTokenizer(p, 0)
				if err != nil {
					return err
				}
				spm, ok := tokSPM(tok)
				if !ok {
					return fmt.Errorf("%s: not a SentencePiece vocabulary", p)
				}
				vocab[i] = spm
			}
			merged, added, err := tokenizer.Extend(vocab[0], vocab[1])
			if err != nil {
				return err
			}
			if err := writeFile(out, merged.MarshalModelProto()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %d pieces: %d → %d\n", added, vocab[0].VocabSize(), merged.VocabSize())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the merged .model file to write")
	return cmd
}

// writeFile writes data to path atomically (a temporary file renamed).
func writeFile(path string, data []byte) error {
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
