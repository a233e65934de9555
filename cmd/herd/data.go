package main

import (
	"fmt"
	"io"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/dist"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func dataCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "data",
		Short: "prepare training data (herd data prepare)",
	}
	cmd.AddCommand(dataPrepareCmd())
	return cmd
}

func dataPrepareCmd() *cobra.Command {
	var recipePath, out, tokPath string
	var val []string
	var f data.Recipe
	var src data.Source
	cmd := &cobra.Command{
		Use:   "prepare [INPUT...] -o DIR [--recipe MIXTURE.yaml] [--config FLAGS.yaml] [--tokenizer FILE]",
		Short: "clean, deduplicate, tokenize and pack text corpora into token shards",
		Long: `Reads text corpora (plain text, JSONL with a text field as RedPajama and
SlimPajama store it, gzip or zstd compressed, directories and globs), cleans
them (Unicode NFC or NFKC, control characters stripped, minimum length,
letter-share, repeated-line and script filters), removes exact duplicates
and near-duplicates (MinHash LSH), tokenizes in parallel and packs the
documents into shards (BOS opens each; --eos closes each with EOS) with a
train/validation split and a manifest.json, for herd pretrain.

Across processes or machines (herd built with -tags mpi): mpirun -np 4
herd data prepare … gives each rank a contiguous part of every source's
files (by bytes), deduplicates across the ranks (each document hash owned
by one rank; MinHash decisions on rank 0 from the ranks' signatures) and
rank 0 writes the output, the same bytes as one process writes.

The inputs are one source; a YAML recipe (--recipe) mixes several with
weights, e.g. the LLaMA paper's (data/recipes/llama.yaml). Flags override
the recipe. Every flag can also live in a --config recipe (keys are the
flag names), as in every herd command. Counts of documents kept and
dropped, per reason, are printed and saved in the manifest; so are
documents dropped as binary or as longer than --max-doc-bytes (before they
are cleaned or tokenized), and those that held NUL bytes or invalid UTF-8
(repaired). The tokenizer (--tokenizer: anything herd tokenize reads — a
SentencePiece .model, a tokenizer.json, a directory with encoder.json +
vocab.bpe, a GGUF, a llama2.c tokenizer.bin) defaults to the embedded
512-piece tok512.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var r data.Recipe
			if recipePath != "" {
				var err error
				if r, err = data.LoadRecipe(recipePath); err != nil {
					return err
				}
				if len(args) > 0 {
					return fmt.Errorf("give the inputs in the recipe or on the command line, not both")
				}
			}
			if len(args) > 0 {
				s := src
				s.Name, s.Paths, s.Weight = "input", args, 0
				r.Sources = append(r.Sources, s)
			}
			for i, v := range val {
				r.Sources = append(r.Sources, data.Source{Name: fmt.Sprintf("val%d", i), Paths: []string{v}, Val: true,
					Format: src.Format, TextField: src.TextField, Split: src.Split})
			}
			if len(r.Sources) == 0 {
				return fmt.Errorf("give input files (or a --recipe with sources)")
			}
			if out == "" {
				return fmt.Errorf("give the output directory with -o")
			}
			if err := overlayFlags(cmd.Flags(), dataRecipeKeys, &r); err != nil {
				return err
			}
			comm, err := dist.World() // under mpirun, the ranks share the inputs (see data/ranks.go)
			if err != nil {
				return err
			}
			root := comm.Rank() == 0
			log := cmd.ErrOrStderr()
			if !root {
				log = io.Discard
			}
			printRecipe(log, cmd)
			if tokPath != "" {
				r.Tokenizer = tokPath
			}
			tok, err := loadDataTokenizer(r.Tokenizer)
			if err != nil {
				return err
			}
			if _, err = data.Prepare(r, tok, out, data.PrepareOptions{Log: log, Comm: comm}); err != nil {
				return err
			}
			if !root {
				return nil
			}
			return writeRecipe(out, recipeYAML(cmd.Flags())) // beside the manifest, as a --config reads it
		},
	}
	dataPrepareFlags(cmd.Flags(), &recipePath, &out, &tokPath, &val, &f, &src)
	return withRecipe(cmd)
}

// dataPrepareFlags defines herd data prepare's flags: the files, and the
// settings that override the mixture recipe (dataRecipeKeys).
func dataPrepareFlags(fl *pflag.FlagSet, recipePath, out, tokPath *string, val *[]string, f *data.Recipe, src *data.Source) {
	fl.StringVar(recipePath, "recipe", "", "YAML data recipe (sources with weights, cleaning, split)")
	fl.StringVarP(out, "output", "o", "", "output directory")
	fl.StringVar(tokPath, "tokenizer", "", "tokenizer: SentencePiece .model, tokenizer.json, a directory (encoder.json + vocab.bpe), GGUF or llama2.c tokenizer.bin (default: embedded tok512)")
	fl.StringArrayVar(val, "val", nil, "a file (or glob) whose documents all go to the validation split (repeatable)")
	fl.StringVar(&src.Format, "format", "", "input format: text or jsonl (default: by extension)")
	fl.StringVar(&src.TextField, "text-field", "", "JSONL field holding the text (default text)")
	fl.StringVar(&src.Split, "split", "", "documents of a text file: file, line, paragraph or sep:STRING (default file)")
	fl.Float64Var(&f.ValFraction, "val-fraction", 0, "share of the documents sent to the validation split")
	fl.Float64Var(&f.MaxEpochs, "max-epochs", 0, "most times a source repeats to reach its weight (default 1)")
	fl.Int64Var(&f.ShardTokens, "shard-tokens", 0, "tokens per shard (default 100M)")
	fl.BoolVar(&f.EOS, "eos", false, "close every document with EOS")
	fl.BoolVar(&f.NoBOS, "no-bos", false, "do not open documents with BOS")
	fl.Uint64Var(&f.Seed, "seed", 0, "seed of the split, the subsampling and the document order")
	fl.IntVarP(&f.Workers, "threads", "t", 0, "workers (0: all cores)")
	fl.StringVar(&f.Clean.Normalize, "normalize", "", "Unicode normalisation: nfc (default), nfkc or none")
	fl.IntVar(&f.Clean.MinChars, "min-chars", 0, "drop documents shorter than this")
	fl.Float64Var(&f.Clean.MinAlphaFraction, "min-alpha", 0, "drop documents with a smaller share of letters")
	fl.Float64Var(&f.Clean.MaxDupLineFraction, "max-dup-lines", 0, "drop documents with a larger share of repeated lines")
	fl.StringSliceVar(&f.Clean.Scripts, "scripts", nil, "keep documents written in these Unicode scripts (comma-separated: Latin,Han)")
	fl.Float64Var(&f.Clean.MinScriptFraction, "min-script", 0, "share of letters that must be in --scripts")
	fl.BoolVar(&f.Clean.NoDedup, "no-dedup", false, "keep exact duplicates")
	fl.Float64Var(&f.Clean.NearDedup, "near-dedup", 0, "drop near-duplicates above this Jaccard similarity (MinHash LSH; 0: off)")
	fl.IntVar(&f.Clean.MaxDocBytes, "max-doc-bytes", data.DefaultMaxDoc, "drop (and count) documents and JSONL rows longer than this many bytes, before cleaning or tokenizing")
	fl.Float64Var(&f.Clean.MaxBinaryFraction, "max-binary", 0, "drop documents with a larger share of NUL, control or invalid UTF-8 bytes (0: 0.1; 1: off)")
}

// dataRecipeKeys are the data recipe's (data.Recipe's YAML) keys of the
// flags that override it.
var dataRecipeKeys = map[string]string{
	"val-fraction": "val_fraction", "max-epochs": "max_epochs", "shard-tokens": "shard_tokens", "eos": "eos",
	"no-bos": "no_bos", "seed": "seed", "threads": "workers", "normalize": "clean.normalize", "min-chars": "clean.min_chars",
	"min-alpha": "clean.min_alpha_fraction", "max-dup-lines": "clean.max_dup_line_fraction", "scripts": "clean.scripts",
	"min-script": "clean.min_script_fraction", "no-dedup": "clean.no_dedup", "near-dedup": "clean.near_dedup",
	"max-doc-bytes": "clean.max_doc_bytes", "max-binary": "clean.max_binary_fraction",
}

// loadDataTokenizer reads a tokenizer of any kind herd knows, with the
// loader every command uses (checkpoint.OpenTokenizer: a llama2.c
// tokenizer.bin gets its vocabulary size from its own length). An empty
// path is the embedded tok512.
func loadDataTokenizer(path string) (tokenizer.Tokenizer, error) {
	if path == "" {
		_, tok, err := checkpoint.Default()
		return tok, err
	}
	return checkpoint.OpenTokenizer(path, 0)
}
