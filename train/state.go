package train

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/tensor"
)

// StateDir is the Checkpointer of a run whose trainable set is all a
// checkpoint needs (fine-tuning: the base is given again at resume): Dir/
// step-N/state.safetensors holds every trained tensor (param.NAME) and the
// optimizer's moments (adam.m.NAME, adam.v.NAME), with the step and the
// optimizer's step count in the metadata, written atomically.
type StateDir struct {
	Dir  string
	Log  io.Writer // where Restore says what it resumed (nil: nowhere)
	Keep int       // checkpoints kept, the newest (0: all)
}

// StateName is the file of a StateDir checkpoint.
const StateName = "state.safetensors"

// Save writes Dir/step-N/state.safetensors.
func (d StateDir) Save(s Snapshot) (string, error) {
	dir := filepath.Join(d.Dir, fmt.Sprintf("step-%d", s.Step))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var ts []safetensors.Tensor
	for i, p := range s.Params {
		for _, e := range []struct {
			prefix string
			v      []float32
		}{{"param.", p.Data}, {"adam.m.", s.Opt.M[i]}, {"adam.v.", s.Opt.V[i]}} {
			// a view of the values, not a copy: a full model's state is
			// three times its float32 size
			ts = append(ts, safetensors.Tensor{Name: e.prefix + p.Name, DType: safetensors.F32, Shape: []int64{int64(len(e.v))}, Data: tensor.BytesOfF32(e.v)})
		}
	}
	meta := map[string]string{"step": strconv.Itoa(s.Step), "adam_step": strconv.FormatInt(s.Opt.Step, 10)}
	path := filepath.Join(dir, StateName)
	if err := safetensors.WriteFile(path, meta, ts); err != nil {
		return "", err
	}
	return path, d.prune()
}

// prune removes all but the newest Keep checkpoints, oldest first, each
// out of sight before it is deleted.
func (d StateDir) prune() error {
	if d.Keep <= 0 {
		return nil
	}
	ents, err := os.ReadDir(d.Dir)
	if err != nil {
		return err
	}
	var steps []int
	for _, e := range ents {
		if n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "step-")); err == nil && e.IsDir() && strings.HasPrefix(e.Name(), "step-") {
			steps = append(steps, n)
		}
	}
	slices.Sort(steps)
	for len(steps) > d.Keep {
		if err := removeCheckpoint(d.Dir, fmt.Sprintf("step-%d", steps[0])); err != nil {
			return err
		}
		steps = steps[1:]
	}
	return nil
}

// Latest is the step of the newest checkpoint in Dir, 0 for none.
func (d StateDir) Latest() (int, string, error) {
	ents, err := os.ReadDir(d.Dir)
	if err != nil && !os.IsNotExist(err) {
		return 0, "", err
	}
	best := 0
	for _, e := range ents {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "step-"))
		if err != nil || !e.IsDir() || !strings.HasPrefix(e.Name(), "step-") || n <= best {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.Dir, e.Name(), StateName)); err == nil {
			best = n
		}
	}
	if best == 0 {
		return 0, "", nil
	}
	return best, filepath.Join(d.Dir, fmt.Sprintf("step-%d", best), StateName), nil
}

// Restore loads the newest checkpoint of Dir into params and opt and
// returns its step; 0 when Dir has none.
func (d StateDir) Restore(params []autograd.Param, opt *AdamW) (int, error) {
	best, path, err := d.Latest()
	if err != nil || best == 0 {
		return 0, err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if s, _ := strconv.Atoi(f.Metadata["step"]); s != best {
		return 0, fmt.Errorf("%s: metadata step %q, want %d", path, f.Metadata["step"], best)
	}
	if opt.Step, err = strconv.ParseInt(f.Metadata["adam_step"], 10, 64); err != nil {
		return 0, fmt.Errorf("%s: adam_step: %w", path, err)
	}
	for i, p := range params {
		for _, e := range []struct {
			prefix string
			dst    []float32
		}{{"param.", p.Data}, {"adam.m.", opt.M[i]}, {"adam.v.", opt.V[i]}} {
			t, ok := f.Tensor(e.prefix + p.Name)
			if !ok {
				return 0, fmt.Errorf("%s: no tensor %s%s: a checkpoint of another method or shape", path, e.prefix, p.Name)
			}
			v, err := t.Float32()
			if err != nil {
				return 0, fmt.Errorf("%s: %w", path, err)
			}
			if len(v) != len(e.dst) {
				return 0, fmt.Errorf("%s: %s%s has %d values, the run %d", path, e.prefix, p.Name, len(v), len(e.dst))
			}
			copy(e.dst, v)
		}
	}
	if d.Log != nil {
		fmt.Fprintf(d.Log, "resuming from %s (step %d)\n", path, best)
	}
	return best, nil
}
