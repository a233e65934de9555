package lora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// PEFT's module names, and llama.cpp's, for each of Modules.
var (
	peftModules, ggufModules = moduleNames()
)

// moduleNames maps each of Modules to its PEFT and GGUF names
// (llama.BlockMatrices).
func moduleNames() (peft, gguf map[string]string) {
	peft, gguf = map[string]string{}, map[string]string{}
	for _, b := range llama.BlockMatrices {
		peft[b.Module], gguf[b.Module] = b.HF, b.GGUF
	}
	return peft, gguf
}

// PEFTName is PEFT's name of an adapter matrix ("A" or "B") of module
// in layer: base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight.
func PEFTName(layer int, module, ab string) string {
	return fmt.Sprintf("base_model.model.model.layers.%d.%s.lora_%s.weight", layer, peftModules[module], ab)
}

// peftConfig is the part of PEFT's adapter_config.json herd writes and reads.
type peftConfig struct {
	PEFTType      string   `json:"peft_type"`
	TaskType      string   `json:"task_type"`
	BaseModel     string   `json:"base_model_name_or_path"`
	R             int      `json:"r"`
	Alpha         float64  `json:"lora_alpha"`
	Dropout       float64  `json:"lora_dropout"`
	TargetModules []string `json:"target_modules"`
	RSLoRA        bool     `json:"use_rslora"`
	Bias          string   `json:"bias"`
	FanInFanOut   bool     `json:"fan_in_fan_out"`
	Inference     bool     `json:"inference_mode"`
}

// hfRows maps the output rows of a query or key projection between herd's
// interleaved-RoPE order (Meta's, GGUF's) and Hugging Face's rotate-half
// order, which PEFT adapters follow: within each head of hd rows, HF row
// j·hd/2 + i is interleaved row 2i + j. toHF selects the direction.
func hfRows(b []float32, rank, heads, hd int, toHF bool) []float32 {
	out := make([]float32, len(b))
	for h := range heads {
		for i := range hd / 2 {
			for j := range 2 {
				meta, hf := h*hd+2*i+j, h*hd+j*hd/2+i
				src, dst := meta, hf
				if !toHF {
					src, dst = hf, meta
				}
				copy(out[dst*rank:(dst+1)*rank], b[src*rank:(src+1)*rank])
			}
		}
	}
	return out
}

// permuted says whether module's B rows differ between herd's order and
// Hugging Face's for a model of config c, and the heads they are in.
func permuted(c llama.Config, module string) (int, bool) {
	if c.Rope == llama.RopeHalf {
		return 0, false
	}
	switch module {
	case "q":
		return c.NHeads, true
	case "k":
		return c.NKVHeads, true
	}
	return 0, false
}

// SavePEFT writes the set into dir as PEFT does: adapter_config.json and
// adapter_model.safetensors (F32, PEFT's tensor names, query and key rows
// in Hugging Face's order). base names the base model in the config.
func SavePEFT(dir string, s *Set, c llama.Config, base string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var targets []string
	for _, t := range s.Config.Targets {
		m := peftModules[t]
		targets = append(targets, m[strings.LastIndexByte(m, '.')+1:])
	}
	cfg := peftConfig{PEFTType: "LORA", TaskType: "CAUSAL_LM", BaseModel: base, R: s.Config.Rank, Alpha: s.Config.Alpha,
		Dropout: s.Config.Dropout, TargetModules: targets, RSLoRA: s.Config.RSLoRA, Bias: "none", Inference: true}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	var ts []safetensors.Tensor
	for _, a := range s.Adapters {
		b := a.B
		if heads, ok := permuted(c, a.Module); ok {
			b = hfRows(b, a.Rank, heads, c.HeadDim(), true)
		}
		ta, err := safetensors.FromFloat32(PEFTName(a.Layer, a.Module, "A"), safetensors.F32, []int64{int64(a.Rank), int64(a.In)}, a.A)
		if err != nil {
			return err
		}
		tb, err := safetensors.FromFloat32(PEFTName(a.Layer, a.Module, "B"), safetensors.F32, []int64{int64(a.Out), int64(a.Rank)}, b)
		if err != nil {
			return err
		}
		ts = append(ts, ta, tb)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), map[string]string{"format": "pt"}, ts); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "adapter_config.json"), append(js, '\n'), 0o644)
}

var peftTensor = regexp.MustCompile(`^base_model\.model\.model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$`)

// LoadPEFT reads a PEFT LoRA directory for a model of config c. The set
// carries no gradients (it is for inference or merging).
func LoadPEFT(dir string, c llama.Config) (*Set, error) {
	cp := filepath.Join(dir, "adapter_config.json")
	js, err := os.ReadFile(cp)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	var pc peftConfig
	if err := json.Unmarshal(js, &pc); err != nil {
		return nil, fmt.Errorf("lora %s: %w", cp, err)
	}
	if pc.PEFTType != "LORA" {
		return nil, fmt.Errorf("lora %s: peft_type %q, want LORA", cp, pc.PEFTType)
	}
	if pc.FanInFanOut {
		return nil, fmt.Errorf("lora %s: fan_in_fan_out adapters (GPT-2 Conv1D) are not LLaMA adapters", cp)
	}
	sp := filepath.Join(dir, "adapter_model.safetensors")
	f, err := safetensors.Open(sp)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	byModule := map[string]string{}
	for k, v := range peftModules {
		byModule[v] = k
	}
	type key struct {
		layer  int
		module string
	}
	pairs := map[key][2][]float32{}
	shapes := map[key][2][]int64{}
	for _, t := range f.Tensors {
		mm := peftTensor.FindStringSubmatch(t.Name)
		if mm == nil {
			return nil, fmt.Errorf("lora %s: tensor %q is not a LoRA matrix of a LLaMA attention or feed-forward module", sp, t.Name)
		}
		layer, _ := strconv.Atoi(mm[1])
		k := key{layer, byModule[mm[2]]}
		v, err := t.Float32()
		if err != nil {
			return nil, fmt.Errorf("lora %s: %w", sp, err)
		}
		p, sh := pairs[k], shapes[k]
		i := 0
		if mm[3] == "B" {
			i = 1
		}
		p[i], sh[i] = v, t.Shape
		pairs[k], shapes[k] = p, sh
	}
	cfg := Config{Rank: pc.R, Alpha: pc.Alpha, Dropout: pc.Dropout, RSLoRA: pc.RSLoRA}
	s := &Set{Config: cfg}
	for k, p := range pairs {
		sh := shapes[k]
		name := PEFTName(k.layer, k.module, "A")
		if p[0] == nil || p[1] == nil {
			return nil, fmt.Errorf("lora %s: %s: lora_A or lora_B missing", sp, name)
		}
		if len(sh[0]) != 2 || len(sh[1]) != 2 || sh[0][0] != int64(pc.R) || sh[1][1] != int64(pc.R) {
			return nil, fmt.Errorf("lora %s: %s: shapes %v and %v do not have rank r=%d", sp, name, sh[0], sh[1], pc.R)
		}
		a := &autograd.LoRA{Rank: pc.R, In: int(sh[0][1]), Out: int(sh[1][0]), A: p[0], B: p[1], Scale: cfg.Scale()}
		if heads, ok := permuted(c, k.module); ok {
			if a.Out != heads*c.HeadDim() {
				return nil, fmt.Errorf("lora %s: %s has %d rows, the model %d", sp, name, a.Out, heads*c.HeadDim())
			}
			a.B = hfRows(a.B, a.Rank, heads, c.HeadDim(), false)
		}
		s.Adapters = append(s.Adapters, Adapter{Layer: k.layer, Module: k.module, LoRA: a})
		if !slices.Contains(s.Config.Targets, k.module) {
			s.Config.Targets = append(s.Config.Targets, k.module)
		}
	}
	s.sort()
	return s, s.Config.Check()
}

// sort orders the adapters by layer, then module.
func (s *Set) sort() {
	slices.SortFunc(s.Adapters, func(a, b Adapter) int {
		if a.Layer != b.Layer {
			return a.Layer - b.Layer
		}
		return slices.Index(Modules, a.Module) - slices.Index(Modules, b.Module)
	})
	slices.SortFunc(s.Config.Targets, func(a, b string) int { return slices.Index(Modules, a) - slices.Index(Modules, b) })
}

// SaveGGUF writes the set as a llama.cpp LoRA adapter
// (convert_lora_to_gguf.py's layout): general.type "adapter", adapter.type
// "lora", adapter.lora.alpha, and per module blk.N.attn_q.weight.lora_a
// (ne = [In, Rank]) and .lora_b (ne = [Rank, Out]), F32. llama.cpp scales
// by alpha/rank, so an rsLoRA set is written with the alpha that gives its
// scale.
func SaveGGUF(path string, s *Set) error {
	w := gguf.NewWriter()
	for _, kv := range []struct {
		k string
		v any
	}{{"general.architecture", "llama"}, {"general.type", "adapter"}, {"adapter.type", "lora"},
		{"adapter.lora.alpha", float32(float64(s.Config.Scale()) * float64(s.Config.Rank))}} {
		if err := w.Set(kv.k, kv.v); err != nil {
			return err
		}
	}
	for _, a := range s.Adapters {
		base := fmt.Sprintf("blk.%d.%s.weight", a.Layer, ggufModules[a.Module])
		if err := w.AddTensor(base+".lora_a", tensor.F32, []uint64{uint64(a.In), uint64(a.Rank)}, tensor.BytesOfF32(a.A)); err != nil {
			return err
		}
		if err := w.AddTensor(base+".lora_b", tensor.F32, []uint64{uint64(a.Rank), uint64(a.Out)}, tensor.BytesOfF32(a.B)); err != nil {
			return err
		}
	}
	return w.WriteFile(path)
}

var ggufTensor = regexp.MustCompile(`^blk\.(\d+)\.(attn_[qkv]|attn_output|ffn_gate|ffn_up|ffn_down)\.weight\.lora_([ab])$`)

// LoadGGUF reads a llama.cpp LoRA adapter (F32, F16 or BF16 matrices).
func LoadGGUF(path string) (*Set, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	if t, _ := f.GetString("adapter.type"); t != "lora" {
		return nil, fmt.Errorf("lora %s: adapter.type %q, want lora", path, t)
	}
	alpha, ok := f.GetFloat("adapter.lora.alpha")
	if !ok {
		return nil, fmt.Errorf("lora %s: no adapter.lora.alpha", path)
	}
	byModule := map[string]string{}
	for k, v := range ggufModules {
		byModule[v] = k
	}
	type key struct {
		layer  int
		module string
	}
	mats := map[key][2]*gguf.TensorInfo{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		mm := ggufTensor.FindStringSubmatch(t.Name)
		if mm == nil {
			return nil, fmt.Errorf("lora %s: tensor %q is not a LoRA matrix of a LLaMA module", path, t.Name)
		}
		if len(t.Dims) != 2 {
			return nil, fmt.Errorf("lora %s: tensor %s has %d dimensions, want 2", path, t.Name, len(t.Dims))
		}
		layer, _ := strconv.Atoi(mm[1])
		k := key{layer, byModule[mm[2]]}
		p := mats[k]
		if mm[3] == "a" {
			p[0] = t
		} else {
			p[1] = t
		}
		mats[k] = p
	}
	s := &Set{}
	for k, p := range mats {
		if p[0] == nil || p[1] == nil {
			return nil, fmt.Errorf("lora %s: layer %d %s: lora_a or lora_b missing", path, k.layer, ggufModules[k.module])
		}
		in, rank, out := int(p[0].Dims[0]), int(p[0].Dims[1]), int(p[1].Dims[1])
		if int(p[1].Dims[0]) != rank || (s.Config.Rank != 0 && s.Config.Rank != rank) {
			return nil, fmt.Errorf("lora %s: layer %d %s: ranks %d and %d differ", path, k.layer, ggufModules[k.module], rank, p[1].Dims[0])
		}
		s.Config.Rank = rank
		a := &autograd.LoRA{Rank: rank, In: in, Out: out, A: make([]float32, rank*in), B: make([]float32, out*rank)}
		if err := tensor.Dequantize(p[0].DType, a.A, p[0].Data); err != nil {
			return nil, fmt.Errorf("lora %s: %s: %w", path, p[0].Name, err)
		}
		if err := tensor.Dequantize(p[1].DType, a.B, p[1].Data); err != nil {
			return nil, fmt.Errorf("lora %s: %s: %w", path, p[1].Name, err)
		}
		s.Adapters = append(s.Adapters, Adapter{Layer: k.layer, Module: k.module, LoRA: a})
		if !slices.Contains(s.Config.Targets, k.module) {
			s.Config.Targets = append(s.Config.Targets, k.module)
		}
	}
	s.Config.Alpha = alpha
	for _, a := range s.Adapters {
		a.Scale = s.Config.Scale()
	}
	s.sort()
	return s, s.Config.Check()
}

// Load reads an adapter: a PEFT directory, or a llama.cpp GGUF file.
func Load(path string, c llama.Config) (*Set, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return LoadPEFT(path, c)
	}
	return LoadGGUF(path)
}
