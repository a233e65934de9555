package rl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/herd-llm/herd/train"
)

// Job is one herd rl run from files to files.
type Job struct {
	Config
	// Tune is what every fine-tuning run shares (method, LoRA's shape,
	// the base dtype, optimizer, schedule, clipping, seed, recompute,
	// checkpoints, resume, progress). Its Steps are rollout batches here;
	// Batch, Accum and the validation fields are unused.
	Tune            sft.Options
	Base, Tokenizer string // the policy's base ("": the embedded stories260K) and tokenizer
	Prompts, Val    string // prompt files (Val "": no held-out prompts)
	Template        string // chat template ("" or "none": the raw prompt after BOS)
	Reward          Reward
	Out             string
	// ValueLoRA gives PPO's value head a trunk of its own: a second LoRA
	// set on the same base (lora and qlora), instead of the policy's.
	ValueLoRA bool
}

// Result sums up a run.
type Result struct {
	Model     *llama.Model
	Adapters  *lora.Set
	Trainer   *Trainer
	Summary   *train.Summary
	Trainable int64
	Start     Eval // the held-out reward and KL before this invocation (N 0: no held-out prompts)
	End       Eval
	Stats     PromptStats
	Memory    sft.Memory // the predicted peak
}

// ValueHeadFile holds PPO's value head beside the policy's outputs.
const ValueHeadFile = "value_head.safetensors"

// Run trains the policy of j: loads the base, reads the prompts, sets the
// method up (sft.NewTrained), runs the trainer on train.Fit and writes
// the policy as herd sft does (model.gguf, or the PEFT adapter and
// adapter.gguf) and PPO's value head.
func Run(j Job, log io.Writer) (*Result, error) {
	if err := os.MkdirAll(j.Out, 0o755); err != nil {
		return nil, err
	}
	m, tok, err := checkpoint.Load(j.Base, j.Tokenizer)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if r, ok := j.Reward.(Model); ok && r.RM.Policy.Model.Config.VocabSize != m.Config.VocabSize {
		return nil, fmt.Errorf("reward model %s has a vocabulary of %d, the policy %d: they must share the tokenizer", r.Path, r.RM.Policy.Model.Config.VocabSize, m.Config.VocabSize)
	}
	var tmpl *chat.Template
	if j.Template != "" && j.Template != "none" {
		if tmpl, err = chat.Lookup(j.Template); err != nil {
			return nil, err
		}
	}
	res := &Result{}
	prompts, st, err := ReadPrompts(j.Prompts, tok, tmpl, m.Config.ContextLen, j.Sampling.MaxNew)
	if err != nil {
		return nil, err
	}
	res.Stats = st
	fmt.Fprintf(log, "prompts: %d read, %d kept, %d longer than the context of %d less %d response tokens (dropped)\n", st.Read, st.Kept, st.TooLong, m.Config.ContextLen, j.Sampling.MaxNew)
	var val []Prompt
	if j.Val != "" {
		var vs PromptStats
		if val, vs, err = ReadPrompts(j.Val, tok, tmpl, m.Config.ContextLen, j.Sampling.MaxNew); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "held-out prompts: %d read, %d kept, %d too long\n", vs.Read, vs.Kept, vs.TooLong)
	}
	var stop []int
	if tmpl != nil {
		stop = tmpl.StopIDs(tok)
		j.Sampling.Stop = append(j.Sampling.Stop, tmpl.Stop...)
	} else if tok.EOS() >= 0 {
		stop = []int{tok.EOS()}
	}
	tr, ts, err := Setup(m, j, prompts, val, tok, stop, log)
	if err != nil {
		return nil, err
	}
	res.Model, res.Adapters, res.Trainer, res.Trainable = ts.Model, ts.Adapters, tr, train.Count(ts)
	if err := fit(tr, ts, j, log, res); err != nil {
		return nil, err
	}
	return res, save(j, res, tok, log)
}

// Setup makes the trainable set of j's method on m and the trainer.
func Setup(m *llama.Model, j Job, prompts, val []Prompt, tok tokenizer.Tokenizer, stop []int, log io.Writer) (*Trainer, *sft.Trained, error) {
	if j.Tune.Method == sft.Adapter || j.Tune.Method == sft.Embed {
		return nil, nil, fmt.Errorf("method %s: herd rl takes full, lora or qlora", j.Tune.Method)
	}
	if j.Reward == nil {
		return nil, nil, fmt.Errorf("rl: no reward: give --reward (rules, a reward model or an HTTP scorer)")
	}
	ts, err := sft.NewTrained(m, j.Tune, log)
	if err != nil {
		return nil, nil, err
	}
	pol := &Policy{Model: ts.Model, Grads: ts.Grads, Adapters: ts.Adapters, Tape: llama.TapeOptions{Recompute: j.Tune.Recompute}}
	if ts.Adapters == nil {
		pol.Ref = m
	}
	if j.Algo == PPO {
		pol.Head, pol.Bias = NewHead(m.Config.Dim, j.Tune.Seed)
		ts.AddParams(pol.HeadParams()...)
		if j.ValueLoRA {
			if ts.Adapters == nil {
				return nil, nil, fmt.Errorf("ppo: --value-lora needs the lora or qlora method")
			}
			if pol.Value, err = lora.New(ts.Model, ts.Adapters.Config, j.Tune.Seed+1); err != nil {
				return nil, nil, err
			}
			ts.AddParams(pol.ValueParams()...)
		}
	}
	j.Config.Seed = j.Tune.Seed
	tr := &Trainer{Cfg: j.Config, Policy: pol, Prompts: prompts, Val: val, Tok: tok, StopIDs: stop, Reward: j.Reward, Log: log}
	if err := tr.Init(); err != nil {
		return nil, nil, err
	}
	return tr, ts, nil
}

// fit runs the loop over j.Tune.Steps rollout batches.
func fit(tr *Trainer, ts *sft.Trained, j Job, log io.Writer, res *Result) error {
	per := tr.Cfg.StepsPerBatch()
	o := j.Tune
	batches := max(1, o.Steps)
	o.Steps, o.Accum, o.Val, o.Dir = batches*per, 1, nil, j.Out
	if o.SaveEvery > 0 {
		o.SaveEvery *= per // rollout batches: a checkpoint is always at a batch boundary
	}
	if o.Warmup > 0 {
		o.Warmup *= per
	}
	cfg := o.TrainConfig("herd rl "+tr.Cfg.Algo+" "+o.Method, log)
	cfg.Checkpoints = &stateDir{StateDir: train.StateDir{Dir: j.Out, Log: log, Keep: o.Keep}, tr: tr}
	cfg.Panels = tr.Cfg.Panels()
	cfg.FLOPsPerToken = train.TrainingFLOPs(ts.Model.Config, train.Count(ts), tr.Cfg.Sampling.MaxNew)
	res.Memory = tr.memory(ts.Memory)
	fmt.Fprintf(log, "memory: %s\n", res.Memory)
	if o.LimitMemory {
		cfg.MemoryLimit = train.MemoryLimit(res.Memory.Bound(), ts.Model, res.Memory.Weights, log)
	}
	fmt.Fprintf(log, "rl %s %s: %d trainable weights of %d, %d prompts, %d rollout batches of %d prompts × %d samples, %d epochs of mini-batches of %d (%d steps)\n",
		tr.Cfg.Algo, o.Method, train.Count(ts), ts.Model.Params(), len(tr.Prompts), batches, tr.Cfg.Prompts, tr.Cfg.Group, tr.Cfg.Epochs, tr.Cfg.MiniBatch, o.Steps)
	var err error
	if !o.Resume { // a resumed run's weights are restored inside Fit
		if res.Start, err = tr.Evaluate(); err != nil {
			return err
		}
	}
	if res.Summary, err = train.Fit(tr, ts, cfg); err != nil {
		return fmt.Errorf("rl: %w", err)
	}
	res.End, err = tr.Evaluate()
	return err
}

// save writes the policy (and PPO's value head) to j.Out.
func save(j Job, res *Result, tok tokenizer.Tokenizer, log io.Writer) error {
	if h := res.Trainer.Policy.Head; h != nil {
		p := filepath.Join(j.Out, ValueHeadFile)
		w, err := safetensors.FromFloat32("v_head.summary.weight", safetensors.F32, []int64{1, int64(len(h))}, h)
		if err != nil {
			return err
		}
		b, _ := safetensors.FromFloat32("v_head.summary.bias", safetensors.F32, []int64{1}, res.Trainer.Policy.Bias)
		if err := safetensors.WriteFile(p, nil, []safetensors.Tensor{w, b}); err != nil {
			return err
		}
	}
	if v := res.Trainer.Policy.Value; v != nil {
		if err := lora.SavePEFT(filepath.Join(j.Out, "value"), v, res.Model.Config, j.Base); err != nil {
			return err
		}
	}
	r := &sft.Result{Model: res.Model, Adapters: res.Adapters}
	tmpl := j.Template
	if tmpl == "none" {
		tmpl = ""
	}
	wrote, err := r.Save(j.Out, j.Tune.Method, sft.SaveOptions{Base: j.Base, Tokenizer: tok, Template: tmpl, Recipe: j.Tune.Recipe})
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "wrote %s\n", strings.Join(wrote, ", "))
	return nil
}

// stateDir is train.StateDir with the trainer's own state (the KL
// controller's coefficient) in step-N/rl_state.json, written before the
// state file that makes the checkpoint count.
type stateDir struct {
	train.StateDir
	tr *Trainer
}

const rlStateName = "rl_state.json"

type rlState struct {
	KLCoef string `json:"kl_coef"` // exact: strconv's shortest round trip
	Batch  int    `json:"rollout_batches"`
	// the last held-out measurement, which the metrics carry until the next
	EvalReward, EvalKL float64
	EvalN              int
}

func (d *stateDir) Save(s train.Snapshot) (string, error) {
	dir := filepath.Join(d.Dir, fmt.Sprintf("step-%d", s.Step))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	e := d.tr.LastEval
	st := rlState{KLCoef: strconv.FormatFloat(d.tr.Ctl.Coef, 'g', -1, 64), Batch: d.tr.batch + 1, EvalReward: e.Reward, EvalKL: e.KL, EvalN: e.N}
	err := fileio.WriteAtomic(filepath.Join(dir, rlStateName), func(w io.Writer) error { return json.NewEncoder(w).Encode(st) })
	if err != nil {
		return "", err
	}
	return d.StateDir.Save(s)
}

func (d *stateDir) Restore(params []autograd.Param, opt *train.AdamW) (int, error) {
	step, err := d.StateDir.Restore(params, opt)
	if err != nil || step == 0 {
		return step, err
	}
	p := filepath.Join(d.Dir, fmt.Sprintf("step-%d", step), rlStateName)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("rl checkpoint: %w", err)
	}
	var st rlState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	if d.tr.Ctl.Coef, err = strconv.ParseFloat(st.KLCoef, 64); err != nil {
		return 0, fmt.Errorf("%s: kl_coef: %w", p, err)
	}
	d.tr.LastEval = Eval{Reward: st.EvalReward, KL: st.EvalKL, N: st.EvalN}
	if per := d.tr.Cfg.StepsPerBatch(); step%per != 0 {
		return 0, fmt.Errorf("%s: step %d is not at a rollout batch boundary (%d steps each): a checkpoint of another configuration", p, step, per)
	}
	return step, nil
}

// memory is the run's predicted peak: the method's weights and state, the
// taped pass of the largest mini-batch (the longest prompt and a full
// response per rollout), and beside it the untaped passes' States (the
// policy's and the reference's, each at most a recomputing pass's size),
// PPO's logits buffer and the rollouts' KV caches (F16).
func (t *Trainer) memory(mem sft.Memory) sft.Memory {
	c := t.Policy.Model.Config
	long := 0
	for _, p := range t.Prompts {
		long = max(long, len(p.Tokens))
	}
	seq := long + t.Cfg.Sampling.MaxNew
	rows := t.Cfg.MiniBatch * seq
	mem.Tokens = rows
	mem.Activations = llama.ActivationBytes(c, rows, t.Policy.Tape.Recompute)
	if set := t.Policy.Adapters; set != nil {
		for _, a := range set.Adapters {
			mem.Activations += 4 * int64(rows) * int64(a.Rank)
		}
	}
	if t.Policy.Value != nil { // the value trunk's taped pass, beside the policy's
		mem.Activations *= 2
	}
	mem.Eval = 2 * llama.ActivationBytes(c, rows, true)
	if t.Policy.Value != nil {
		mem.Eval += llama.ActivationBytes(c, rows, true)
	}
	if t.Policy.Head != nil {
		mem.Eval += 4 * int64(rows) * int64(c.VocabSize)
	}
	mem.Eval += int64(t.Cfg.Rollouts()) * c.KVCacheBytes(seq, tensor.F16)
	return mem
}
