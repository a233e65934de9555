package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/spf13/cobra"
)

func kldCmd() *cobra.Command {
	var e evalFlags
	cmd := &cobra.Command{
		Use:   "kld BASE QUANT -f FILE",
		Short: "KL divergence and top-token agreement of a quantized model against its original",
		Long: `Evaluates BASE (the F32/F16 original) and QUANT on the chunks herd
perplexity uses and reports what llama-perplexity --kl-divergence reports:
per chunk PPL, ln(PPL(Q)/PPL(base)), mean KL divergence, RMS Δp and "same
top p" (how often both models' most likely next token agree), then the
perplexity, KL-divergence and token-probability statistics. The base
log-probabilities are computed on the fly but kept in llama.cpp's 16-bit
encoding, so the figures match llama-perplexity's. The tokenizer is BASE's.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(e.threads)
			base, tok, err := checkpoint.Load(args[0], e.tokenizer)
			if err != nil {
				return err
			}
			defer base.Close()
			q, err := llama.Open(args[1])
			if err != nil {
				return err
			}
			defer q.Close()
			if err := applyKVType(e.kvType, base, q); err != nil {
				return err
			}
			packWeights(base, q)
			toks, err := tokenizeFile(cmd, e.file, tok)
			if err != nil {
				return err
			}
			warnContext(cmd, base, e.ctx)
			stderr, out := cmd.ErrOrStderr(), cmd.OutOrStdout()
			opt := e.options()
			opt.OnFirstPass = func(d time.Duration, passes int) {
				fmt.Fprintf(stderr, "kl_divergence: %.2f seconds per pass - ETA %.2f minutes\n", d.Seconds(), 2*d.Seconds()*float64(passes)/60)
			}
			var perChunk func(int, *eval.KLD)
			if !e.asJSON {
				fmt.Fprintf(out, "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p\n")
				perChunk = func(i int, k *eval.KLD) {
					p, pe := k.PPL()
					r, re := k.LogPPLRatio()
					kl, kle := k.MeanKLD()
					d, de := k.RMSPDiff()
					s, se := k.SameTopP()
					fmt.Fprintf(out, "%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
						i, p, pe, r, re, kl, kle, 100*d, 100*de, 100*s, 100*se)
				}
			}
			res, err := eval.KLDivergence(base, q, toks, tok.BOS(), opt, perChunk)
			if err != nil {
				return err
			}
			if e.asJSON {
				return json.NewEncoder(out).Encode(kldJSON(args, e.file, res))
			}
			printKLD(out, res)
			return nil
		},
	}
	e.register(cmd)
	return cmd
}

// valErr is a value with its uncertainty, for JSON.
type valErr struct {
	Value float64 `json:"value"`
	Error float64 `json:"error"`
}

func ve(v, e float64) valErr { return valErr{v, e} }

func kldJSON(args []string, file string, r *eval.KLDResult) any {
	k := &r.KLD
	return struct {
		Base        string  `json:"base"`
		Quant       string  `json:"quant"`
		File        string  `json:"file"`
		Ctx         int     `json:"n_ctx"`
		Chunks      int     `json:"chunks"`
		Count       int     `json:"scored_tokens"`
		PPL         valErr  `json:"ppl_q"`
		PPLBase     valErr  `json:"ppl_base"`
		LogRatio    valErr  `json:"ln_ppl_ratio"`
		KLD         valErr  `json:"kld_mean"`
		KLDMedian   float64 `json:"kld_median"`
		KLDMax      float64 `json:"kld_max"`
		KLD99       float64 `json:"kld_99"`
		RMSPDiff    valErr  `json:"delta_p_rms"`
		SameTopP    valErr  `json:"same_top_p"`
		Correlation float64 `json:"ln_ppl_correlation"`
	}{args[0], args[1], file, r.Ctx, r.Chunks, k.Count, ve(k.PPL()), ve(k.PPLBase()), ve(k.LogPPLRatio()), ve(k.MeanKLD()),
		eval.Median(k.KLDValues), eval.Percentile(k.KLDValues, 1), eval.Percentile(k.KLDValues, 0.99),
		ve(k.RMSPDiff()), ve(k.SameTopP()), k.LogPPLCorrelation()}
}

// printKLD prints llama-perplexity's closing statistics.
func printKLD(w io.Writer, r *eval.KLDResult) {
	k := &r.KLD
	if k.Count < 100 {
		return // llama-perplexity gives no statistics on so few values
	}
	p, pe := k.PPL()
	pb, pbe := k.PPLBase()
	lr, lre := k.LogPPLRatio()
	d, de := k.PPLDiff()
	fmt.Fprintf(w, "\n====== Perplexity statistics ======\n")
	fmt.Fprintf(w, "Mean PPL(Q)                   : %10.6f ± %10.6f\n", p, pe)
	fmt.Fprintf(w, "Mean PPL(base)                : %10.6f ± %10.6f\n", pb, pbe)
	fmt.Fprintf(w, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100*k.LogPPLCorrelation())
	fmt.Fprintf(w, "Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", lr, lre)
	ratio := math.Exp(lr)
	fmt.Fprintf(w, "Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", ratio, ratio*lre)
	fmt.Fprintf(w, "Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", d, de)
	kl, kle := k.MeanKLD()
	v := k.KLDValues
	fmt.Fprintf(w, "\n====== KL divergence statistics ======\n")
	fmt.Fprintf(w, "Mean    KLD: %10.6f ± %10.6f\n", kl, kle)
	fmt.Fprintf(w, "Maximum KLD: %10.6f\n", v[len(v)-1])
	for _, q := range []struct {
		label string
		f     float64
	}{{"99.9%   KLD", 0.999}, {"99.0%   KLD", 0.99}, {"95.0%   KLD", 0.95}, {"90.0%   KLD", 0.90}} {
		fmt.Fprintf(w, "%s: %10.6f\n", q.label, eval.Percentile(v, q.f))
	}
	fmt.Fprintf(w, "Median  KLD: %10.6f\n", eval.Median(v))
	for _, q := range []struct {
		label string
		f     float64
	}{{"10.0%   KLD", 0.10}, {" 5.0%   KLD", 0.05}, {" 1.0%   KLD", 0.01}, {" 0.1%   KLD", 0.001}} {
		fmt.Fprintf(w, "%s: %10.6f\n", q.label, eval.Percentile(v, q.f))
	}
	fmt.Fprintf(w, "Minimum KLD: %10.6f\n", v[0])
	pd := k.PDiffValues
	m, me := k.MeanErr(k.SumPDiff, k.SumPDiff2)
	fmt.Fprintf(w, "\n====== Token probability statistics ======\n")
	fmt.Fprintf(w, "Mean    Δp: %6.3f ± %5.3f %%\n", 100*m, 100*me)
	fmt.Fprintf(w, "Maximum Δp: %6.3f%%\n", 100*pd[len(pd)-1])
	for _, q := range []struct {
		label string
		f     float64
	}{{"99.9%   Δp", 0.999}, {"99.0%   Δp", 0.99}, {"95.0%   Δp", 0.95}, {"90.0%   Δp", 0.90}, {"75.0%   Δp", 0.75}} {
		fmt.Fprintf(w, "%s: %6.3f%%\n", q.label, 100*eval.Percentile(pd, q.f))
	}
	fmt.Fprintf(w, "Median  Δp: %6.3f%%\n", 100*eval.Median(pd))
	for _, q := range []struct {
		label string
		f     float64
	}{{"25.0%   Δp", 0.25}, {"10.0%   Δp", 0.10}, {" 5.0%   Δp", 0.05}, {" 1.0%   Δp", 0.01}, {" 0.1%   Δp", 0.001}} {
		fmt.Fprintf(w, "%s: %6.3f%%\n", q.label, 100*eval.Percentile(pd, q.f))
	}
	fmt.Fprintf(w, "Minimum Δp: %6.3f%%\n", 100*pd[0])
	rms, rmse := k.RMSPDiff()
	fmt.Fprintf(w, "RMS Δp    : %6.3f ± %5.3f %%\n", 100*rms, 100*rmse)
	s, se := k.SameTopP()
	fmt.Fprintf(w, "Same top p: %6.3f ± %5.3f %%\n", 100*s, 100*se)
}
