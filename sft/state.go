package sft

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/train"
)

// saveState writes dir/step-N/state.safetensors atomically: every
// trained tensor (param.NAME) and the optimizer's moments (adam.m.NAME,
// adam.v.NAME), with the step and the optimizer's step count in the
// metadata.
func saveState(dir string, step int, params []autograd.Param, adam *train.AdamW) error {
	d := filepath.Join(dir, fmt.Sprintf("step-%d", step))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	var ts []safetensors.Tensor
	for i, p := range params {
		for _, e := range []struct {
			prefix string
			v      []float32
		}{{"param.", p.Data}, {"adam.m.", adam.M[i]}, {"adam.v.", adam.V[i]}} {
			// a view of the values, not a copy: a full model's state is
			// three times its float32 size
			ts = append(ts, safetensors.Tensor{Name: e.prefix + p.Name, DType: safetensors.F32, Shape: []int64{int64(len(e.v))}, Data: tensor.BytesOfF32(e.v)})
		}
	}
	meta := map[string]string{"step": strconv.Itoa(step), "adam_step": strconv.FormatInt(adam.Step, 10)}
	return safetensors.WriteFile(filepath.Join(d, "state.safetensors"), meta, ts)
}

// latestStep is the step of the newest checkpoint in dir, 0 for none.
func latestStep(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	best := 0
	for _, e := range ents {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "step-"))
		if err != nil || !e.IsDir() || !strings.HasPrefix(e.Name(), "step-") || n <= best {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "state.safetensors")); err == nil {
			best = n
		}
	}
	return best, nil
}

// loadLatest restores the newest checkpoint of dir into params and adam
// and returns its step; 0 when dir has none.
func loadLatest(dir string, params []autograd.Param, adam *train.AdamW) (int, error) {
	best, err := latestStep(dir)
	if err != nil || best == 0 {
		return 0, err
	}
	path := filepath.Join(dir, fmt.Sprintf("step-%d", best), "state.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if s, _ := strconv.Atoi(f.Metadata["step"]); s != best {
		return 0, fmt.Errorf("%s: metadata step %q, want %d", path, f.Metadata["step"], best)
	}
	if adam.Step, err = strconv.ParseInt(f.Metadata["adam_step"], 10, 64); err != nil {
		return 0, fmt.Errorf("%s: adam_step: %w", path, err)
	}
	for i, p := range params {
		for _, e := range []struct {
			prefix string
			dst    []float32
		}{{"param.", p.Data}, {"adam.m.", adam.M[i]}, {"adam.v.", adam.V[i]}} {
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
	return best, nil
}
