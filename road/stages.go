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
	"github.com/herd-llm/herd/quant/gptq"
	"github.com/herd-llm/herd/rl"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/train"
)

// Step lengths at DefaultMinutes, measured on the 2-core machine of
// BENCHMARKS.md (issue 20).
const (
	pretrainSteps = 240
	sftSteps      = 200
	rmSteps       = 120
	dpoSteps      = 60
	rlBatches     = 16 // GRPO rollout batches of rlPrompts × rlGroup
	rlPrompts     = 8
	rlGroup       = 4
	rlMaxNew      = 48
	gptqWindows   = 64 // calibration windows of gptqCtx tokens
	gptqCtx       = 256
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
	// β 0.1 over 60 steps (about two epochs of the pairs): with 120 the
	// training loss was near 0 well before the end and the rest only
	// drifted away from the SFT model (BENCHMARKS.md, issue 20)
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

// runRL is a short GRPO run (herd rl's rl.Run) on the DPO model with a
// LoRA policy, the reward model as the reward: the road's last training
// stage, merged into rl/model.gguf.
func runRL(r *Road, in *Info) error {
	kernels.SetThreads(r.Threads)
	rm, _, err := align.LoadReward(r.Path("rm", align.RewardFile), "", "")
	if err != nil {
		return err
	}
	defer rm.Policy.Model.Close()
	base := r.Path("dpo", "model.gguf")
	j := rl.Job{Base: base, Prompts: r.Path("data", "rl-prompts.jsonl"), Val: r.Path("data", "rl-val-prompts.jsonl"),
		Template: Template, Reward: rl.Model{RM: rm, Path: r.Path("rm", align.RewardFile)}, Out: r.Path("rl")}
	j.Config = rl.Config{Algo: rl.GRPO, Prompts: rlPrompts, Group: rlGroup, Epochs: 1, KL: rl.K1, KLCoef: 0.04,
		ClipEps: 0.2, ScaleRewards: true, Horizon: 10000, SampleEvery: 0, EvalEvery: 0}
	j.Config.Sampling.MaxNew, j.Config.Sampling.Temperature, j.Config.Sampling.TopP = rlMaxNew, 1, 1
	steps := max(2, r.steps(rlBatches))
	j.Tune = sft.Options{Method: sft.LoRA, Steps: steps, LR: 1e-3, Schedule: "constant", GradClip: 1, Seed: 1,
		LoRA: lora.Config{Rank: 8, Alpha: 16, Targets: append([]string(nil), lora.Modules...)}, Keep: 1}
	// the curve: the rollout batch's mean reward (one optimizer step each)
	j.Tune.OnStart = func(first, n int) { in.Steps = n }
	j.Tune.OnStep = func(p train.Progress) {
		rew := p.Extra[rl.MRewMean]
		in.Loss, in.ValLoss = append(in.Loss, p.Loss), append(in.ValLoss, nil)
		in.Reward = append(in.Reward, rew)
		if p.Step == 1 || p.Step == p.Steps || p.Step%max(1, p.Steps/8) == 0 {
			bar := strings.Repeat("█", 20*p.Step/p.Steps) + strings.Repeat("·", 20-20*p.Step/p.Steps)
			fmt.Fprintf(r.log, "   %s %4d/%d reward %.3f kl %.2f %s\n", bar, p.Step, p.Steps, rew, p.Extra[rl.MKL], p.Elapsed.Round(1e8))
		}
	}
	res, err := rl.Run(j, r.log)
	if err != nil {
		return err
	}
	in.figure("val_reward_start", res.Start.Reward)
	in.figure("val_reward", res.End.Reward)
	in.figure("val_kl", res.End.KL)
	in.figure("trainable", float64(res.Trainable))
	fmt.Fprintf(r.log, "   held-out reward %.3f → %.3f, KL to the DPO model %.2f\n", res.Start.Reward, res.End.Reward, res.End.KL)
	in.Outputs = append(in.Outputs, "rl/adapter.gguf", "rl/model.gguf")
	return mergeAdapter(base, r.Path("rl"), r.Path("rl", "model.gguf"), "road rl")
}

// final is the road's last trained model, the one quantized.
func (r *Road) final() string { return r.Path("rl", "model.gguf") }

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
	f, err := gguf.Open(r.final())
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

// The gptq step's outputs: GPTQ onto Q4_0's grid (4 bits, symmetric,
// groups of 32) and, beside it, Q4_0 rounded to nearest, the baseline
// GPTQ's error correction is measured against.
const (
	gptqName = "model-GPTQ-Q4_0.gguf"
	rtnName  = "model-RTN-Q4_0.gguf"
)

// runGPTQ quantizes the final model with GPTQ (herd gptq's
// gptq.QuantizeModel), calibrated on windows of the training stories.
func runGPTQ(r *Road, in *Info) error {
	kernels.SetThreads(r.Threads)
	m, tok, err := checkpoint.Load(r.final(), "")
	if err != nil {
		return err
	}
	defer m.Close()
	f, err := gguf.Open(r.final())
	if err != nil {
		return err
	}
	defer f.Close()
	toks, err := gptq.CalibrationTokens(r.Path("data", "stories-train.jsonl.gz"), tok)
	if err != nil {
		return err
	}
	windows, err := gptq.Windows(toks, gptqWindows, min(gptqCtx, m.Config.ContextLen), 1)
	if err != nil {
		return err
	}
	warn := func(msg string) { fmt.Fprintf(r.log, "   %s\n", msg) }
	res, err := gptq.QuantizeModel(f, m, windows, r.Path("gptq", gptqName), gptq.ModelOptions{Type: quant.MostlyQ4_0, Damp: 0.01,
		Progress: func(layer, layers int, stage string) {
			if strings.HasPrefix(stage, "collecting") {
				bar := strings.Repeat("█", 20*layer/layers) + strings.Repeat("·", 20-20*layer/layers)
				fmt.Fprintf(r.log, "   %s layer %d/%d\n", bar, layer+1, layers)
			}
		}, Warn: warn})
	if err != nil {
		return err
	}
	n := 0
	for _, mr := range res.Matrices {
		if mr.GPTQ {
			n++
		}
	}
	rtn, err := quant.File(f, r.Path("gptq", rtnName), quant.Options{Type: quant.MostlyQ4_0, Threads: r.Threads, Warn: warn})
	if err != nil {
		return err
	}
	in.figure("gptq_matrices", float64(n))
	in.figure("windows", float64(len(windows)))
	in.figure("in_bytes", float64(res.File.InBytes))
	in.figure("out_bytes", float64(res.File.OutBytes))
	in.figure("rtn_out_bytes", float64(rtn.OutBytes))
	fmt.Fprintf(r.log, "   %d of %d layer matrices by GPTQ from %d windows of %d tokens; %d → %d bytes of tensors\n",
		n, len(res.Matrices), len(windows), len(windows[0]), res.File.InBytes, res.File.OutBytes)
	in.Outputs = append(in.Outputs, "gptq/"+gptqName, "gptq/"+rtnName)
	return nil
}
