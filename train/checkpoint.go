package train

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// The output directory of a run:
//
//	step-00000500/model.gguf       the model: F32 weights, tokenizer, herd.* metadata
//	step-00000500/optimizer.gguf   AdamW's step and moments, one F32 tensor pair per parameter
//	latest                         the name of the newest complete checkpoint
//	model.gguf                     a hard link to the newest model (herd run loads it)
//	metrics.jsonl                  one JSON object per step
//	loss.png                       training and validation loss curves
//
// A checkpoint is written into a temporary directory, its files synced,
// then renamed into place; only then does latest move to it. A run killed
// at any moment leaves latest naming a complete checkpoint.
const (
	ModelName     = "model.gguf"
	OptimizerName = "optimizer.gguf"
	LatestName    = "latest"
	MetricsName   = "metrics.jsonl"
	PlotName      = "loss.png"
	stepPrefix    = "step-"
)

// latestCheckpoint returns the name of the newest checkpoint in dir, or ""
// when there is none.
func latestCheckpoint(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, LatestName))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(b))
	if !strings.HasPrefix(name, stepPrefix) || filepath.Base(name) != name {
		return "", fmt.Errorf("%s: %q does not name a checkpoint", filepath.Join(dir, LatestName), name)
	}
	return name, nil
}

// modelDir is pretraining's Checkpointer: whole models with their
// optimizer state in step directories (the layout above).
type modelDir struct{ ru *run }

// Latest is the newest checkpoint named by latest.
func (d *modelDir) Latest() (int, string, error) {
	name, err := latestCheckpoint(d.ru.r.Out)
	if err != nil || name == "" {
		return 0, "", err
	}
	step, err := strconv.Atoi(strings.TrimPrefix(name, stepPrefix))
	if err != nil || step < 0 {
		return 0, "", fmt.Errorf("%s: %q does not name a checkpoint", filepath.Join(d.ru.r.Out, LatestName), name)
	}
	return step, filepath.Join(d.ru.r.Out, name), nil
}

// Restore reads the optimizer of the checkpoint the run's model was loaded
// from (the weights are the model's already).
func (d *modelDir) Restore(params []autograd.Param, opt *AdamW) (int, error) {
	ru := d.ru
	if ru.resumed == "" {
		return 0, fmt.Errorf("%s: a checkpoint appeared after the run started", ru.r.Out)
	}
	dir := filepath.Join(ru.r.Out, ru.resumed)
	adam, err := loadOptimizer(filepath.Join(dir, OptimizerName), params)
	if err != nil {
		return 0, err
	}
	step, err := strconv.Atoi(strings.TrimPrefix(ru.resumed, stepPrefix))
	if err != nil {
		return 0, err
	}
	if adam.Step != int64(step) {
		return 0, fmt.Errorf("%s: the optimizer has taken %d steps, the model %d", dir, adam.Step, step)
	}
	*opt = *adam
	fmt.Fprintf(ru.log, "resuming from %s (step %d)\n", dir, step)
	return step, nil
}

// SaveInitial writes the model the run started from, rebuilt, as the
// checkpoint of step 0 (zero moments: resuming from it is starting over).
func (d *modelDir) SaveInitial() (string, error) {
	m, err := d.ru.initial()
	if err != nil {
		return "", err
	}
	params := m.TrainParams(m.NewGrads())
	return d.save(Snapshot{Params: params, Opt: d.ru.r.optim().New(params), Loss: math.NaN(), ValLoss: math.NaN()}, m)
}

// Save writes the checkpoint of s.Step (steps done) and returns its directory.
func (d *modelDir) Save(s Snapshot) (string, error) { return d.save(s, d.ru.m) }

// save writes the checkpoint of model m.
func (d *modelDir) save(s Snapshot, m *llama.Model) (string, error) {
	ru, step, loss, valLoss := d.ru, s.Step, s.Loss, s.ValLoss
	out := ru.r.Out
	name := fmt.Sprintf("%s%08d", stepPrefix, step)
	final := filepath.Join(out, name)
	tmp := filepath.Join(out, ".tmp-"+name)
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	rec := ru.r
	rec.Resume = false // how this invocation started, not part of the training
	extra := map[string]any{
		"herd.step":                  uint64(step),
		"herd.recipe":                rec.YAML(),
		"herd.tokens_trained":        uint64(step) * uint64(ru.r.Batch*ru.r.Seq*ru.r.Accum),
		"herd.data.tokenizer_sha256": ru.man.Tokenizer.SHA256,
	}
	if !math.IsNaN(loss) {
		extra["herd.train_loss"] = loss
	}
	if !math.IsNaN(valLoss) {
		extra["herd.val_loss"] = valLoss
	}
	if err := checkpoint.SaveGGUF(filepath.Join(tmp, ModelName), m, ru.tok, checkpoint.SaveOptions{Name: "herd pretrain: " + ru.describe(), Extra: extra}); err != nil {
		return "", err
	}
	if err := saveOptimizer(filepath.Join(tmp, OptimizerName), s.Opt, s.Params); err != nil {
		return "", err
	}
	if err := syncDir(tmp); err != nil {
		return "", err
	}
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	if err := syncDir(out); err != nil {
		return "", err
	}
	if err := fileio.WriteAtomic(filepath.Join(out, LatestName), func(w io.Writer) error {
		_, err := io.WriteString(w, name+"\n")
		return err
	}); err != nil {
		return "", err
	}
	// model.gguf beside the run (repairLink mends it at the next start
	// if a kill comes before this)
	if err := linkModel(out, filepath.Join(final, ModelName)); err != nil {
		return "", err
	}
	if err := prune(out, ru.r.Keep); err != nil {
		return "", err
	}
	fmt.Fprintf(ru.log, "step %d: checkpoint %s\n", step, final)
	return final, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !os.IsPermission(err) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return fileio.WriteAtomic(dst, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// prune removes all but the newest keep checkpoints, oldest first, each
// out of sight before it is deleted.
func prune(dir string, keep int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var steps []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), stepPrefix) {
			steps = append(steps, e.Name())
		}
	}
	sort.Strings(steps)
	for len(steps) > keep {
		if err := removeCheckpoint(dir, steps[0]); err != nil {
			return err
		}
		steps = steps[1:]
	}
	return nil
}

// resumeModel loads the model of checkpoint name in the output directory
// (Restore then reads its optimizer).
func (ru *run) resumeModel(name string) error {
	dir := filepath.Join(ru.r.Out, name)
	path := filepath.Join(dir, ModelName)
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	step, ok := f.GetUint("herd.step")
	if !ok {
		return fmt.Errorf("%s: no herd.step in the metadata: not a herd training checkpoint", path)
	}
	m, err := llama.FromGGUF(f)
	if err != nil {
		return err
	}
	if ru.m, err = m.CloneF32(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if ru.r.Preset != "" {
		p, err := llama.LookupPreset(ru.r.Preset)
		if err != nil {
			return err
		}
		want := p.Config
		got := ru.m.Config
		if want.Dim != got.Dim || want.NLayers != got.NLayers || want.NHeads != got.NHeads || want.NKVHeads != got.NKVHeads ||
			want.FFNDim != got.FFNDim || want.VocabSize != got.VocabSize {
			return fmt.Errorf("%s is not a %s model (dim %d, %d layers): resume with the recipe that started the run", path, p.Name, got.Dim, got.NLayers)
		}
	}
	if fmt.Sprintf("%s%08d", stepPrefix, step) != name {
		return fmt.Errorf("%s: herd.step is %d, the directory is %s", path, step, name)
	}
	ru.resumed = name
	return nil
}

// saveOptimizer writes AdamW's state as a GGUF file: its hyperparameters and
// step in herd.optimizer.*, and for each parameter NAME the tensors
// NAME.adam_m and NAME.adam_v.
func saveOptimizer(path string, o *AdamW, params []autograd.Param) error {
	w := gguf.NewWriter()
	for _, kv := range []struct {
		k string
		v any
	}{
		{"general.architecture", "herd-optimizer"},
		{"herd.optimizer", "adamw"},
		{"herd.optimizer.step", uint64(o.Step)},
		{"herd.optimizer.beta1", o.Beta1},
		{"herd.optimizer.beta2", o.Beta2},
		{"herd.optimizer.eps", o.Eps},
		{"herd.optimizer.weight_decay", o.WeightDecay},
	} {
		if err := w.Set(kv.k, kv.v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	for i, p := range params {
		dims := []uint64{uint64(len(p.Data))}
		if err := w.AddTensor(p.Name+".adam_m", tensor.F32, dims, tensor.BytesOfF32(o.M[i])); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := w.AddTensor(p.Name+".adam_v", tensor.F32, dims, tensor.BytesOfF32(o.V[i])); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return w.WriteFile(path)
}

// loadOptimizer reads the state saveOptimizer wrote for params.
func loadOptimizer(path string, params []autograd.Param) (*AdamW, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if k, _ := f.GetString("herd.optimizer"); k != "adamw" {
		return nil, fmt.Errorf("%s: herd.optimizer is %q, want adamw", path, k)
	}
	o := &AdamW{M: make([][]float32, len(params)), V: make([][]float32, len(params))}
	step, ok := f.GetUint("herd.optimizer.step")
	if !ok {
		return nil, fmt.Errorf("%s: missing herd.optimizer.step", path)
	}
	o.Step = int64(step)
	for _, h := range []struct {
		k string
		v *float64
	}{{"beta1", &o.Beta1}, {"beta2", &o.Beta2}, {"eps", &o.Eps}, {"weight_decay", &o.WeightDecay}} {
		if *h.v, ok = f.GetFloat("herd.optimizer." + h.k); !ok {
			return nil, fmt.Errorf("%s: missing herd.optimizer.%s", path, h.k)
		}
	}
	for i, p := range params {
		for _, mv := range []struct {
			suffix string
			dst    *[]float32
		}{{".adam_m", &o.M[i]}, {".adam_v", &o.V[i]}} {
			t, ok := f.Tensor(p.Name + mv.suffix)
			if !ok {
				return nil, fmt.Errorf("%s: missing tensor %s%s", path, p.Name, mv.suffix)
			}
			if t.DType != tensor.F32 || t.NumElements() != uint64(len(p.Data)) {
				return nil, fmt.Errorf("%s: tensor %s%s is %s × %d, want F32 × %d", path, p.Name, mv.suffix, t.DType, t.NumElements(), len(p.Data))
			}
			*mv.dst = append([]float32(nil), tensor.F32s(t.Data)...)
		}
	}
	if len(f.Tensors) != 2*len(params) {
		return nil, fmt.Errorf("%s: %d tensors, want %d for %d parameters", path, len(f.Tensors), 2*len(params), len(params))
	}
	return o, nil
}

// repairLink makes out/model.gguf the model of the checkpoint latest names
// (a run killed between moving latest and relinking left the previous
// one).
func repairLink(out string, log io.Writer) error {
	name, err := latestCheckpoint(out)
	if err != nil || name == "" {
		return err
	}
	want := filepath.Join(out, name, ModelName)
	wi, err := os.Stat(want)
	if err != nil {
		return fmt.Errorf("%s names %s: %w", filepath.Join(out, LatestName), name, err)
	}
	top := filepath.Join(out, ModelName)
	if ti, err := os.Stat(top); err == nil && os.SameFile(wi, ti) {
		return nil
	}
	if err := linkModel(out, want); err != nil {
		return err
	}
	fmt.Fprintf(log, "%s now links %s, as latest says\n", top, want)
	return nil
}

// linkModel points out/model.gguf at src: a hard link (a copy where links
// fail) renamed over the previous one.
func linkModel(out, src string) error {
	link := filepath.Join(out, ".tmp-"+ModelName)
	os.Remove(link)
	if err := os.Link(src, link); err != nil {
		if err := copyFile(src, link); err != nil {
			return err
		}
	}
	return os.Rename(link, filepath.Join(out, ModelName))
}
