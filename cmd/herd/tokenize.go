package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

func tokenizeCmd() *cobra.Command {
	var ids, count, noBOS, special bool
	var file string
	cmd := &cobra.Command{
		Use:   "tokenize TOKENIZER_OR_MODEL [-f FILE | TEXT]",
		Short: "print the tokens of a text",
		Long: `Print the tokens of a text, one "id<TAB>piece" line each (the piece as a
Go-quoted string of the bytes it adds), or with --ids the ids on one line
separated by single spaces, or with --count only their number.

TOKENIZER_OR_MODEL is a SentencePiece .model, a Hugging Face tokenizer.json, a
GGUF model or vocabulary, a llama2.c tokenizer.bin, or a directory holding
tokenizer.json or encoder.json + vocab.bpe (with tokenizer_config.json when
there is one). The text is TEXT, the contents of FILE, or standard input when
neither is given.

BOS is added when the vocabulary expects it (SentencePiece, Llama 3), unless
--no-bos. Special tokens written in the text (<s>, <|eot_id|>) are read as
text unless --parse-special.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := checkpoint.OpenTokenizer(args[0], 0)
			if err != nil {
				return err
			}
			var text []byte
			switch {
			case file != "" && len(args) == 2:
				return fmt.Errorf("give the text either as TEXT or with -f FILE, not both")
			case file != "":
				if text, err = os.ReadFile(file); err != nil {
					return err
				}
			case len(args) == 2:
				text = []byte(args[1])
			default:
				if text, err = io.ReadAll(cmd.InOrStdin()); err != nil {
					return fmt.Errorf("reading standard input: %w", err)
				}
			}
			addBOS := !noBOS
			if b, ok := tok.(*tokenizer.BPE); ok && !b.Options().AddBOS {
				addBOS = false
			}
			var out []int
			if se, ok := tok.(tokenizer.SpecialEncoder); ok && special {
				out = se.EncodeSpecial(string(text), addBOS, false)
			} else {
				out = tok.Encode(string(text), addBOS, false)
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			switch {
			case count:
				fmt.Fprintln(w, len(out))
			case ids:
				for i, id := range out {
					if i > 0 {
						w.WriteByte(' ')
					}
					w.WriteString(strconv.Itoa(id))
				}
				w.WriteByte('\n')
			default:
				prev := -1
				for _, id := range out {
					fmt.Fprintf(w, "%d\t%q\n", id, tok.DecodePiece(prev, id))
					prev = id
				}
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVar(&ids, "ids", false, "print only the ids, separated by single spaces, on one line")
	f.BoolVar(&count, "count", false, "print only the number of tokens")
	f.BoolVar(&noBOS, "no-bos", false, "do not add the BOS token")
	f.BoolVar(&special, "parse-special", false, "read special tokens written in the text (<s>, <|eot_id|>) as those tokens")
	f.StringVarP(&file, "file", "f", "", "read the text from FILE")
	return cmd
}
