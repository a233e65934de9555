package gptq

import (
	"fmt"
	"time"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/tensor"
)

// ModelOptions control QuantizeModel.
type ModelOptions struct {
	// Type is the llama.cpp mix written (Q4_0, Q4_K_M, …): it chooses each
	// tensor's type exactly as `herd quantize` does, and GPTQ rounds every
	// layer matrix onto its type's grid.
	Type     quant.FileType
	Damp     float64 // dampening, a fraction of the mean diagonal of H
	ActOrder bool    // columns by decreasing H_ii, static groups
	// FromFloat collects every layer's inputs from the float model (one
	// pass, faster) instead of from the already-quantized earlier layers
	// (the paper's sequential order, the default).
	FromFloat bool
	// TrueSequential collects each input of a block (attention in, its
	// output projection's, feed-forward in, down's) in its own pass after
	// the matrices before it in the block are quantized, as
	// GPTQ-for-LLaMA's --true-sequential; by default one pass collects
	// all four from the float block.
	TrueSequential bool
	// Batch is the number of calibration windows per forward pass (0: as
	// many as fill 2048 tokens).
	Batch int
	// Progress, when set, is called as each layer advances: its index,
	// the number of layers, and what is being done.
	Progress func(layer, layers int, stage string)
	Warn     func(msg string)
	// AutoGPTQ, when set, quantizes every layer matrix onto this uniform
	// grid and writes the AutoGPTQ layout into the directory out instead
	// of a GGUF file (Type is then unused).
	AutoGPTQ *Uniform
	// Extra metadata for the GGUF file, after general.file_type (herd gptq
	// records its settings as quantize.gptq.*).
	Extra []gguf.KV
}

// MatrixReport says how one matrix was quantized.
type MatrixReport struct {
	Name string
	Type tensor.DType
	GPTQ bool // false: rounded to nearest (no GPTQ grid for the type)
}

// ModelResult describes a GPTQ run.
type ModelResult struct {
	File     *quant.Result
	Matrices []MatrixReport
	Layers   []time.Duration // time per layer
	Tokens   int             // calibration tokens
}

// QuantizeModel quantizes model m, loaded from the GGUF file in, with GPTQ
// over the calibration windows (equal lengths) and writes the result to
// out as opt.Type's mix. The layers are processed in order: the windows'
// embeddings are run through each block with its matrices observed to
// accumulate their Hessians (q, k and v share one, as do gate and up),
// each matrix is quantized and replaced in m, and the block's outputs
// become the next block's inputs (recomputed through the quantized block
// unless FromFloat). Memory beyond the model is one layer's Hessians plus
// the calibration activations entering and leaving one layer. Tensors
// outside the blocks (embedding, output head) are rounded to nearest, as
// GPTQ-for-LLaMA leaves them.
func QuantizeModel(in *gguf.File, m *llama.Model, windows [][]int, out string, opt ModelOptions) (*ModelResult, error) {
	if len(windows) == 0 || len(windows[0]) == 0 {
		return nil, fmt.Errorf("gptq: no calibration windows")
	}
	choice := map[string]quant.Choice{}
	if opt.AutoGPTQ != nil {
		if err := opt.AutoGPTQ.check(m.Config); err != nil {
			return nil, err
		}
	} else {
		plan, err := quant.Plan(in, opt.Type)
		if err != nil {
			return nil, err
		}
		for _, c := range plan {
			choice[c.Name] = c
		}
	}
	c, ctx := m.Config, len(windows[0])
	var toks []int
	for i, w := range windows {
		if len(w) != ctx {
			return nil, fmt.Errorf("gptq: calibration window %d has %d tokens, the first %d", i, len(w), ctx)
		}
		toks = append(toks, w...)
	}
	x := make([]float32, len(toks)*c.Dim)
	if err := m.EmbedTokens(x, toks); err != nil {
		return nil, fmt.Errorf("gptq: calibration: %w", err)
	}
	y := make([]float32, len(x))
	batch := opt.Batch
	if batch <= 0 {
		batch = max(1, 2048/ctx)
	}
	r := &runner{m: m, ctx: ctx, batch: batch, opt: opt, choice: choice, done: map[string][]byte{}, lin: map[string]*QLinear{}}
	res := &ModelResult{Tokens: len(toks)}
	for li := range m.Layers {
		t0 := time.Now()
		mats, err := r.layer(li, x, y)
		if err != nil {
			return nil, err
		}
		res.Matrices = append(res.Matrices, mats...)
		if opt.FromFloat {
			x, y = y, x
		} else {
			r.progress(li, "propagating through the quantized layer")
			if err := r.forward(li, x); err != nil {
				return nil, err
			}
		}
		res.Layers = append(res.Layers, time.Since(t0))
	}
	if u := opt.AutoGPTQ; u != nil {
		qc := QConfig{Bits: u.Bits, GroupSize: u.Group, DampPercent: opt.Damp, DescAct: opt.ActOrder, StaticGroups: opt.ActOrder,
			Sym: u.Sym, TrueSequential: false}
		if u.Group <= 0 {
			qc.GroupSize = -1
		}
		return res, WriteAutoGPTQ(out, m, r.lin, qc)
	}
	fr, err := quant.File(in, out, quant.Options{Type: opt.Type, Warn: opt.Warn, Extra: opt.Extra,
		Replace: func(ch quant.Choice) []byte { return r.done[ch.Name] }})
	if err != nil {
		return nil, err
	}
	res.File = fr
	return res, nil
}

// runner holds the state of one QuantizeModel run.
type runner struct {
	m          *llama.Model
	ctx, batch int
	opt        ModelOptions
	choice     map[string]quant.Choice
	done       map[string][]byte   // quantized tensors by name
	lin        map[string]*QLinear // with AutoGPTQ: the quantized matrices by name
	scratch    []float32           // TrueSequential's later passes
	state      llama.State
}

func (r *runner) progress(li int, stage string) {
	if r.opt.Progress != nil {
		r.opt.Progress(li, len(r.m.Layers), stage)
	}
}

// forward runs layer li over the windows in x in place, batch by batch.
func (r *runner) forward(li int, x []float32) error {
	step := r.batch * r.ctx * r.m.Config.Dim
	for o := 0; o < len(x); o += step {
		if err := r.m.ForwardLayer(&r.state, li, x[o:min(len(x), o+step)], r.ctx); err != nil {
			return fmt.Errorf("gptq: layer %d: %w", li, err)
		}
	}
	return nil
}

// hgroup is one input of a block and the matrices that read it (q, k
// and v share one, as do gate and up).
type hgroup struct {
	h    *Hessian
	mats []**nn.Linear
}

// layer collects the Hessians of layer li from its inputs x, leaving the
// float layer's outputs in y, and quantizes its matrices into the model:
// all from one pass, or with TrueSequential one pass per input, each after
// the matrices before it are quantized.
func (r *runner) layer(li int, x, y []float32) ([]MatrixReport, error) {
	l := &r.m.Layers[li]
	ffnIn := []**nn.Linear{&l.Gate, &l.Up}
	if l.Gate == nil { // a GELU feed-forward: up alone
		ffnIn = ffnIn[1:]
	}
	groups := []hgroup{
		{NewHessian(l.Wq.In), []**nn.Linear{&l.Wq, &l.Wk, &l.Wv}},
		{NewHessian(l.Wo.In), []**nn.Linear{&l.Wo}},
		{NewHessian(l.Up.In), ffnIn},
		{NewHessian(l.Down.In), []**nn.Linear{&l.Down}},
	}
	passes := [][]hgroup{groups}
	if r.opt.TrueSequential {
		passes = [][]hgroup{groups[:1], groups[1:2], groups[2:3], groups[3:]}
	}
	var reps []MatrixReport
	for pi, pass := range passes {
		for _, g := range pass {
			h := g.h
			(*g.mats[0]).Observe = func(in []float32, nt int) { h.Add(in, nt) }
		}
		r.progress(li, "collecting Hessians")
		buf := y // the first pass runs the float layer: its output is y
		if pi > 0 {
			if len(r.scratch) != len(x) {
				r.scratch = make([]float32, len(x))
			}
			buf = r.scratch
		}
		copy(buf, x)
		err := r.forward(li, buf)
		for _, g := range pass {
			(*g.mats[0]).Observe = nil
		}
		if err != nil {
			return nil, err
		}
		for _, g := range pass {
			for _, wp := range g.mats {
				r.progress(li, "quantizing "+(*wp).Name)
				rep, err := r.matrix(wp, g.h)
				if err != nil {
					return nil, err
				}
				if rep != nil {
					reps = append(reps, *rep)
				}
			}
		}
	}
	return reps, nil
}

// matrix quantizes one matrix to the type the plan gives it (GPTQ where
// the type has a grid, round to nearest otherwise) and puts the result in
// the model.
func (r *runner) matrix(wp **nn.Linear, h *Hessian) (*MatrixReport, error) {
	l := *wp
	if r.opt.AutoGPTQ != nil {
		return r.uniform(wp, h)
	}
	ch, ok := r.choice[l.Name]
	if !ok {
		return nil, fmt.Errorf("gptq: tensor %s is not in the file's plan", l.Name)
	}
	if !ch.Quantized() {
		return nil, nil
	}
	w := make([]float32, l.Out*l.In)
	for i := range l.Out {
		l.Row(w[i*l.In:(i+1)*l.In], i)
	}
	rep := &MatrixReport{Name: l.Name, Type: ch.To}
	var data []byte
	if g, err := NewBlock(ch.To); err == nil {
		res, err := Quantize(w, l.Out, l.In, h.Matrix(), g, Options{Damp: r.opt.Damp, ActOrder: r.opt.ActOrder})
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
		}
		if data, err = g.Bytes(res); err != nil {
			return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
		}
		rep.GPTQ = true
	} else {
		if r.opt.Warn != nil {
			r.opt.Warn(fmt.Sprintf("tensor %s: GPTQ has no grid for %s; rounded to nearest", l.Name, ch.To))
		}
		rb, err := ch.To.RowBytes(l.In)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
		}
		data = make([]byte, rb*l.Out)
		for i := range l.Out {
			if err := tensor.Quantize(ch.To, data[i*rb:(i+1)*rb], w[i*l.In:(i+1)*l.In]); err != nil {
				return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
			}
		}
	}
	nl, err := nn.NewLinear(l.Name, ch.To, l.Out, l.In, data)
	if err != nil {
		return nil, err
	}
	*wp = nl
	r.done[l.Name] = data
	return rep, nil
}

// uniform quantizes one matrix onto the AutoGPTQ grid and puts its
// dequantized weights (F32) in the model.
func (r *runner) uniform(wp **nn.Linear, h *Hessian) (*MatrixReport, error) {
	l, u := *wp, *r.opt.AutoGPTQ
	w := make([]float32, l.Out*l.In)
	for i := range l.Out {
		l.Row(w[i*l.In:(i+1)*l.In], i)
	}
	res, err := Quantize(w, l.Out, l.In, h.Matrix(), u, Options{Damp: r.opt.Damp, ActOrder: r.opt.ActOrder})
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
	}
	q, err := FromResult(res, u.Bits)
	if err != nil {
		return nil, fmt.Errorf("tensor %s: %w", l.Name, err)
	}
	deq := make([]float32, len(res.Deq))
	for i, v := range res.Deq {
		deq[i] = float32(v)
	}
	nl, err := nn.NewLinear(l.Name, tensor.F32, l.Out, l.In, tensor.BytesOfF32(deq))
	if err != nil {
		return nil, err
	}
	*wp = nl
	r.lin[l.Name] = q
	return &MatrixReport{Name: l.Name, Type: tensor.F32, GPTQ: true}, nil
}

// check reports a uniform grid the AutoGPTQ layout cannot hold for a
// model of config c.
func (u Uniform) check(c llama.Config) error {
	if err := checkBits(u.Bits); err != nil {
		return err
	}
	switch u.Group {
	case 32, 64, 128, -1:
	default:
		return fmt.Errorf("gptq: --group %d: want 32, 64, 128 or -1 (the whole row)", u.Group)
	}
	for _, n := range []int{c.Dim, c.FFNDim} { // the matrices' row lengths
		if u.Group > 0 && n%u.Group != 0 {
			return fmt.Errorf("gptq: rows of %d columns are not whole groups of %d", n, u.Group)
		}
	}
	for _, n := range []int{c.Dim, c.KVDim(), c.FFNDim} { // packed along rows (qweight) and columns (qzeros)
		if n*u.Bits%32 != 0 {
			return fmt.Errorf("gptq: %d values of %d bits do not pack into 32-bit words", n, u.Bits)
		}
	}
	return nil
}
