package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/road"
	"github.com/spf13/cobra"
)

func quickstartCmd() *cobra.Command {
	var o road.Options
	var serveAfter bool
	var addr string
	cmd := &cobra.Command{
		Use:   "quickstart [-o DIR] [--minutes N] [--serve] [--from STEP] [--to STEP]",
		Short: "the whole road in one run: data → pretrain → SFT (LoRA) → reward model → DPO → GRPO → k-quant, GPTQ → evaluate → report",
		Long: `Walks the LLaMA road on data shipped inside herd (a TinyStories sample and
identity instructions; licences in road/data/README.md): cleans, dedups,
tokenizes and packs the corpus; continues pretraining the embedded
stories260K (or --base); fine-tunes it with LoRA on instructions made from
the stories; trains a reward model and runs DPO on preference pairs (a
story's real continuation over the same words shuffled, the answer
stopped after a few words, or a bare full stop); runs a short GRPO (herd
rl) with a LoRA policy against the reward model; quantizes the result to
a k-quant mix (--quant) and with GPTQ onto Q4_0's grid (beside Q4_0
rounded to nearest); and evaluates every stage: perplexity on held-out
stories (and the quantized models' KL divergence from the float one), a
multiple-choice task made from held-out stories (story_cloze, herd
eval's machinery: acc, acc_norm), the reward model's accuracy on
held-out pairs, the reward of each stage's answers and its win rate over
the previous stage.

Steps: ` + strings.Join(road.StepNames(), ", ") + `. Each writes under DIR/STEP/ and
DIR/STEP/step.json when it is done; --from STEP re-runs from STEP, keeping
the earlier steps' outputs (a failing step says which one to resume; a
killed run resumes from the step it was in, the last "== road N/M: STEP"
line); --to STEP stops after STEP.
DIR/report.html (one page, no external assets) and DIR/report.json sum
the run up. --minutes scales every training step (about 10 minutes on 2
cores by default). --serve then serves the result (herd serve) with the
web chat page.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Log = cmd.ErrOrStderr()
			if serveAfter && o.To != "" && o.To != "report" {
				return fmt.Errorf("--serve serves the road's result: it needs the whole road (no --to)")
			}
			rep, err := road.Run(o)
			if err != nil || rep == nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "\nroad done in %.0f s: %s, report %s\n", rep.Seconds,
				filepath.Join(o.Dir, rep.Model), filepath.Join(o.Dir, "report.html"))
			if !serveAfter {
				return nil
			}
			s := serveCmd()
			s.SetArgs([]string{filepath.Join(o.Dir, rep.Model) + "=quickstart", "--template", road.Template, "--addr", addr})
			s.SetOut(cmd.OutOrStdout())
			s.SetErr(cmd.ErrOrStderr())
			return s.ExecuteContext(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Dir, "output", "o", "quickstart", "output directory")
	f.Float64Var(&o.Minutes, "minutes", road.DefaultMinutes, "about how many minutes of training on 2 cores (scales every step)")
	f.StringVar(&o.From, "from", "", "re-run from this step, keeping the earlier ones' outputs: "+strings.Join(road.StepNames(), ", "))
	f.StringVar(&o.To, "to", "", "stop after this step")
	f.StringVar(&o.Base, "base", "", "model to continue pretraining (GGUF or llama2.c; none: the embedded stories260K)")
	f.StringVar(&o.Quant, "quant", "Q4_K_M", "llama.cpp file type of the quantize step")
	f.BoolVar(&serveAfter, "serve", false, "serve the result when the road is done (herd serve, web chat page)")
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "--serve: address to listen on")
	f.IntVarP(&o.Threads, "threads", "t", 0, "threads (0: all cores)")
	return cmd
}
