package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/spf13/cobra"
)

// evalFlags are the flags perplexity and kld share.
type evalFlags struct {
	file, tokenizer    string
	ctx, chunks, batch int
	threads            int
	asJSON             bool
	kvType             string
}

func (e *evalFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&e.file, "file", "f", "", "text file to evaluate on (required)")
	f.IntVarP(&e.ctx, "ctx-size", "c", 512, "tokens per chunk")
	f.IntVar(&e.chunks, "chunks", -1, "evaluate at most this many chunks (-1: all)")
	f.IntVarP(&e.batch, "batch-size", "b", 2048, "tokens per forward pass (batch/ctx chunks evaluated together)")
	f.IntVarP(&e.threads, "threads", "t", 0, "threads (0: all cores)")
	f.StringVar(&e.tokenizer, "tokenizer", "", "tokenizer file; a GGUF model's own is used by default")
	f.BoolVar(&e.asJSON, "json", false, "print the result as one JSON object")
	addKVFlag(f, &e.kvType)
}

func (e *evalFlags) options() eval.Options {
	return eval.Options{Ctx: e.ctx, Chunks: max(0, e.chunks), Batch: e.batch}
}

// tokenizeFile reads the evaluation text and tokenizes it once, with a
// leading BOS when the vocabulary has one (llama-perplexity's add_bos).
func tokenizeFile(cmd *cobra.Command, path string, tok tokenizer.Tokenizer) ([]int, error) {
	if path == "" {
		return nil, fmt.Errorf("give the text to evaluate with -f FILE")
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	toks := tok.Encode(string(text), tok.BOS() >= 0, false)
	fmt.Fprintf(cmd.ErrOrStderr(), "perplexity: tokenization took %.1f ms, %d tokens\n", float64(time.Since(t0).Microseconds())/1e3, len(toks))
	return toks, nil
}

func perplexityCmd() *cobra.Command {
	var e evalFlags
	cmd := &cobra.Command{
		Use:   "perplexity MODEL -f FILE",
		Short: "measure perplexity on a text, as llama-perplexity does",
		Long: `Tokenizes FILE once (with a leading BOS), cuts it into chunks of -c tokens,
evaluates each chunk from an empty cache with its first token replaced by
BOS, and scores the second half of each chunk, exactly as llama.cpp's
llama-perplexity: the running estimate is printed after each chunk as
[1]12.3456,[2]..., then "Final estimate: PPL = X +/- Y".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(e.threads)
			m, tok, err := checkpoint.Load(args[0], e.tokenizer)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := applyKVType(e.kvType, m); err != nil {
				return err
			}
			packWeights(m)
			toks, err := tokenizeFile(cmd, e.file, tok)
			if err != nil {
				return err
			}
			stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
			warnContext(cmd, m, e.ctx)
			opt := e.options()
			nChunks := len(toks) / max(1, e.ctx)
			if e.chunks > 0 {
				nChunks = min(nChunks, e.chunks)
			}
			fmt.Fprintf(stderr, "perplexity: calculating perplexity over %d chunks, n_ctx=%d, batch_size=%d, n_seq=%d\n",
				nChunks, e.ctx, e.batch, max(1, e.batch/max(1, e.ctx)))
			opt.OnFirstPass = func(d time.Duration, passes int) {
				fmt.Fprintf(stderr, "perplexity: %.2f seconds per pass - ETA %.2f minutes\n", d.Seconds(), d.Seconds()*float64(passes)/60)
			}
			if !e.asJSON {
				opt.OnChunk = func(i int, ppl float64) { fmt.Fprintf(stdout, "[%d]%.4f,", i, ppl) }
			}
			res, err := eval.Perplexity(m, toks, tok.BOS(), opt)
			if err != nil {
				return err
			}
			if e.asJSON {
				return json.NewEncoder(stdout).Encode(struct {
					Model   string    `json:"model"`
					File    string    `json:"file"`
					Tokens  int       `json:"tokens"`
					Ctx     int       `json:"n_ctx"`
					Chunks  int       `json:"chunks"`
					Count   int       `json:"scored_tokens"`
					PPL     float64   `json:"ppl"`
					PPLErr  float64   `json:"ppl_error"`
					Running []float64 `json:"running"`
				}{args[0], e.file, res.Tokens, res.Ctx, res.Chunks, res.Count, res.PPL, res.PPLErr, res.Running})
			}
			fmt.Fprintf(stdout, "\nFinal estimate: PPL = %.4f +/- %.5f\n", res.PPL, res.PPLErr)
			return nil
		},
	}
	e.register(cmd)
	return cmd
}

// warnContext says when the chunks are longer than the model was trained on.
func warnContext(cmd *cobra.Command, m *llama.Model, ctx int) {
	if ctx > m.Config.ContextLen {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: model was trained on only %d context tokens (%d specified)\n", m.Config.ContextLen, ctx)
	}
}
