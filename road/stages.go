package road

import (
	"fmt"
	"math"
	"strings"

	"github.com/herd-llm/herd/align"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/train"
)

// Step lengths at DefaultMinutes, measured on the 2-core machine of
// BENCHMARKS.md (about 3, 2, 1 and 2 minutes of training).
const (
	pretrainSteps = 240
	sftSteps      = 200
	rmSteps       = 120
	dpoSteps      = 120
)

// progress returns the OnStart/OnStep pair that prints a line about
// every tenth of a training step's run and records its loss curve in in.
func (r *Road) progress(in *Info) (func(first, steps int), func(train.Progress)) {
	total := 1
	start := func(first, steps int) { total = steps; in.Steps = steps }
	step := func(p train.Progress) {
		in.Loss = append(in.Loss, p.Loss)
		var v *float64
		if !math.IsNaN(p.ValLoss) {
			x := p.ValLoss
			v = &x
		}
		in.ValLoss = append(in.ValLoss, v)
		if p.Step == 1 || p.Step == total || p.Step%max(1, total/10) == 0 {
			bar := strings.Repeat("█", 20*p.Step/total) + strings.Repeat("·", 20-20*p.Step/total)
			val := ""
			if v != nil {
				val = fmt.Sprintf(" val %.4f", *v)
			}
			fmt.Fprintf(r.log, "   %s %4d/%d loss %.4f%s %.0f tok/s %s\n", bar, p.Step, total, p.Loss, val, p.TokensPerSec, p.Elapsed.Round(1e8))
		}
	}
	return start, step
}

func runPretrain(r *Road, in *Info) error {
	rec := train.Defaults()
	rec.Init, rec.Data, rec.Out = r.Path("data", "base.gguf"), r.Path("data", "shards"), r.Path("pretrain")
	rec.Steps, rec.Batch, rec.Seq = r.steps(pretrainSteps), 8, 256
	rec.LR, rec.MinLR, rec.Warmup = 5e-4, 5e-5, min(10, rec.Steps/10)
	rec.EvalEvery, rec.EvalBatches, rec.SaveEvery, rec.Keep = max(1, rec.Steps/6), 4, 0, 1
	rec.Threads = r.Threads
	opt := train.Options{Log: r.log}
	opt.OnStart, opt.OnStep = r.progress(in)
	res, err := train.Pretrain(rec, opt)
	if err != nil {
		return err
	}
	in.figure("val_loss_start", res.StartValLoss)
	in.figure("val_loss", res.ValLoss)
	in.figure("train_loss", res.TrainLoss)
	in.figure("tokens", float64(res.Tokens))
	in.Outputs = append(in.Outputs, "pretrain/model.gguf")
	return nil
}

// tuneOptions are the LoRA settings sft and dpo share.
func (r *Road) tuneOptions(in *Info, method string, steps int, lr float64) sft.Options {
	o := sft.Options{Method: method, Steps: steps, Batch: 8, LR: lr, Warmup: min(10, steps/10), GradClip: 1, Seed: 1,
		LoRA:      lora.Config{Rank: 8, Alpha: 16, Targets: append([]string(nil), lora.Modules...)},
		EvalEvery: max(1, steps/5), Keep: 1, Log: r.log} // EvalBatches 0: every validation sample, so the curve compares
	o.OnStart, o.OnStep = r.progress(in)
	return o
}

func runSFT(r *Road, in *Info) error {
	kernels.SetThreads(r.Threads)
	base := r.Path("pretrain", "model.gguf")
	m, tok, err := checkpoint.Load(base, "")
	if err != nil {
		return err
	}
	defer m.Close()
	tmpl, err := chat.Lookup(Template)
	if err != nil {
		return err
	}
	enc := &sft.Encoder{Tok: tok, Template: tmpl, Ctx: m.Config.ContextLen, Overflow: sft.Split}
	samples, _, err := enc.LoadAll([]string{r.Path("data", "sft.json")}, false)
	if err != nil {
		return err
	}
	venc := *enc
	val, _, err := venc.LoadAll([]string{r.Path("data", "sft-val.json")}, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.log, "   data: %s\n", enc.Stats)
	o := r.tuneOptions(in, sft.LoRA, r.steps(sftSteps), 2e-3)
	o.Dir, o.Val = r.Path("sft"), val
	res, err := sft.Tune(m, samples, o)
	if err != nil {
		return err
	}
	if _, err := res.Save(r.Path("sft"), sft.LoRA, sft.SaveOptions{Base: base, Tokenizer: tok, Template: Template}); err != nil {
		return err
	}
	in.figure("val_loss_start", res.StartValLoss)
	in.figure("val_loss", res.ValLoss)
	in.figure("trainable", float64(res.Trainable))
	in.Outputs = append(in.Outputs, "sft/adapter.gguf", "sft/model.gguf")
	return mergeAdapter(base, r.Path("sft"), r.Path("sft", "model.gguf"), "road sft")
}

// mergeAdapter merges the PEFT adapter in dir into a fresh copy of base
// and writes the merged model to out.
func mergeAdapter(base, dir, out, name string) error {
	m, tok, err := checkpoint.Load(base, "")
	if err != nil {
		return err
	}
	defer m.Close()
	set, err := lora.LoadPEFT(dir, m.Config)
	if err != nil {
		return err
	}
	if _, err := lora.Merge(m, []lora.Weighted{{Set: set, Weight: 1}}, lora.Options{}); err != nil {
		return err
	}
	return checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: name})
}

// alignJob is the job rm and dpo share: the SFT model as the base, the
// preference pairs and their held-out part.
func (r *Road) alignJob(out string) align.Job {
	return align.Job{Base: r.Path("sft", "model.gguf"), Data: []string{r.Path("data", "prefs.jsonl")},
		ValData: []string{r.Path("data", "prefs-val.jsonl")}, Template: Template, Out: out, Overflow: align.Truncate}
}

func runRM(r *Road, in *Info) error {
	kernels.SetThreads(r.Threads)
	j := r.alignJob(r.Path("rm"))
	j.Tune = r.tuneOptions(in, sft.Full, r.steps(rmSteps), 1e-3)
	res, err := align.RunRM(j, r.log)
	if err != nil {
		return err
	}
	in.figure("val_accuracy_start", res.StartVal.Mean(align.Accuracy))
	in.figure("val_accuracy", res.EndVal.Mean(align.Accuracy))
	in.figure("val_margin", res.EndVal.Mean(align.Margin))
	in.Outputs = append(in.Outputs, "rm/"+align.RewardFile)
	return nil
}

func runDPO(r *Road, in *Info) error {
	kernels.SetThreads(r.Threads)
	j := r.alignJob(r.Path("dpo"))
	j.Tune = r.tuneOptions(in, sft.LoRA, r.steps(dpoSteps), 1e-4)
	j.Loss = align.Params{Loss: align.Sigmoid, Beta: 0.1}
	res, err := align.RunDPO(j, r.log)
	if err != nil {
		return err
	}
	in.figure("val_rewards_accuracy_start", res.StartVal.Mean(align.RewardsAccuracy))
	in.figure("val_rewards_accuracy", res.EndVal.Mean(align.RewardsAccuracy))
	in.figure("val_rewards_margin", res.EndVal.Mean(align.RewardsMargin))
	in.Outputs = append(in.Outputs, "dpo/adapter.gguf", "dpo/model.gguf")
	return mergeAdapter(j.Base, r.Path("dpo"), r.Path("dpo", "model.gguf"), "road dpo")
}

// quantName is the quantize step's output file.
func (r *Road) quantName() string { return "model-" + r.quantType() + ".gguf" }

func (r *Road) quantType() string {
	if r.Quant == "" {
		return "Q4_K_M"
	}
	return strings.ToUpper(r.Quant)
}

func runQuantize(r *Road, in *Info) error {
	ft, err := quant.ParseFileType(r.quantType())
	if err != nil {
		return err
	}
	f, err := gguf.Open(r.Path("dpo", "model.gguf"))
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := quant.File(f, r.Path("quantize", r.quantName()), quant.Options{Type: ft, Threads: r.Threads,
		Warn: func(msg string) { fmt.Fprintf(r.log, "   %s\n", msg) }})
	if err != nil {
		return err
	}
	in.figure("in_bytes", float64(res.InBytes))
	in.figure("out_bytes", float64(res.OutBytes))
	in.figure("fallbacks", float64(res.Fallbacks()))
	fmt.Fprintf(r.log, "   %s: %d → %d bytes of tensors, %d tensors fell back to another type (rows too short for the mix)\n",
		ft, res.InBytes, res.OutBytes, res.Fallbacks())
	in.Outputs = append(in.Outputs, "quantize/"+r.quantName())
	return nil
}
