package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herd-llm/herd/format/safetensors"
)

// PEFTCheck is what CheckPEFT found.
type PEFTCheck struct {
	Adapters int // LoRA matrices pairs checked
	// BaseMismatch is set when adapter_config.json's
	// base_model_name_or_path does not name the exported directory (PEFT
	// loads the base from it).
	BaseMismatch string
}

// CheckPEFT checks that the PEFT LoRA adapter in adapterDir fits the Hugging
// Face base model in baseDir: every target module of adapter_config.json is
// a module of the base, and every lora_A/lora_B pair belongs to a weight of
// the base with matching shapes (A: [r, in], B: [out, r]). It also reports
// whether base_model_name_or_path names baseDir.
func CheckPEFT(adapterDir, baseDir string) (PEFTCheck, error) {
	var res PEFTCheck
	cpath := filepath.Join(adapterDir, "adapter_config.json")
	data, err := os.ReadFile(cpath)
	if err != nil {
		return res, err
	}
	var cfg struct {
		Base        string         `json:"base_model_name_or_path"`
		R           int            `json:"r"`
		Targets     []string       `json:"target_modules"`
		RankPattern map[string]int `json:"rank_pattern"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return res, fmt.Errorf("%s: %w", cpath, err)
	}
	w, err := openHFWeights(baseDir)
	if err != nil {
		return res, err
	}
	defer w.close()
	modules := map[string]bool{}
	for _, n := range w.order {
		if p := strings.Split(strings.TrimSuffix(n, ".weight"), "."); len(p) > 0 {
			modules[p[len(p)-1]] = true
		}
	}
	for _, t := range cfg.Targets {
		if !modules[t] {
			return res, fmt.Errorf("%s: target module %q is not a module of the base in %s", cpath, t, baseDir)
		}
	}
	apath := filepath.Join(adapterDir, "adapter_model.safetensors")
	ix, err := safetensors.OpenIndex(apath)
	if err != nil {
		return res, err
	}
	defer ix.Close()
	names := make([]string, 0, len(ix.Entries))
	for _, e := range ix.Entries {
		names = append(names, e.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		e, _ := ix.Entry(n)
		mod, ok := strings.CutSuffix(n, ".lora_A.weight")
		isA := ok
		if !ok {
			if mod, ok = strings.CutSuffix(n, ".lora_B.weight"); !ok {
				return res, fmt.Errorf("%s: tensor %s is not a lora_A or lora_B weight", apath, n)
			}
		}
		baseName := strings.TrimPrefix(mod, "base_model.model.") + ".weight"
		bt, ok := w.byName[baseName]
		if !ok {
			return res, fmt.Errorf("%s: tensor %s adapts %s, which the base in %s does not have", apath, n, baseName, baseDir)
		}
		r := cfg.R
		if v, ok := cfg.RankPattern[mod[strings.LastIndexByte(mod, '.')+1:]]; ok {
			r = v
		}
		want := []int64{int64(r), bt.shape[1]}
		if !isA {
			want = []int64{bt.shape[0], int64(r)}
			res.Adapters++
		}
		if !equalShape(e.Shape, want) {
			return res, fmt.Errorf("%s: tensor %s has shape %v; for %s of shape %v and r %d it must be %v", apath, n, e.Shape, baseName, bt.shape, r, want)
		}
	}
	if abs(cfg.Base) != abs(baseDir) {
		res.BaseMismatch = fmt.Sprintf("%s: base_model_name_or_path is %q, not the exported base %s (set it to load the adapter with PEFT)", cpath, cfg.Base, baseDir)
	}
	return res, nil
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
