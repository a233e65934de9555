package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
)

// Falcon's module names in PEFT. herd adapts Falcon's fused
// query_key_value through its three views (q, k, v); in PEFT's layout they
// are one adapter of the fused module: A the q, k and v adapters' A stacked
// (rank the sum of theirs), B block-diagonal, its rows in Falcon's
// per-KV-group order. That is exact both ways: a fused adapter read back is
// three adapters sharing A, each with its rows of B.
var falconPEFTModules = map[string]string{"o": "self_attention.dense", "up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"}

const falconQKV = "self_attention.query_key_value"

var falconPEFTTensor = regexp.MustCompile(`^base_model\.model\.transformer\.h\.(\d+)\.(self_attention\.query_key_value|self_attention\.dense|mlp\.dense_h_to_4h|mlp\.dense_4h_to_h)\.lora_([AB])\.weight$`)

func falconPEFTName(layer int, module, ab string) string {
	return fmt.Sprintf("base_model.model.transformer.h.%d.%s.lora_%s.weight", layer, module, ab)
}

// falconPEFTConfig is adapter_config.json with the per-module ranks and
// alphas of the fused adapter.
type falconPEFTConfig struct {
	peftConfig
	RankPattern  map[string]int     `json:"rank_pattern,omitempty"`
	AlphaPattern map[string]float64 `json:"alpha_pattern,omitempty"`
}

// savePEFTFalcon is SavePEFT for a Falcon model.
func savePEFTFalcon(dir string, s *Set, c llama.Config, base string) error {
	pc := falconPEFTConfig{peftConfig: peftConfig{PEFTType: "LORA", TaskType: "CAUSAL_LM", BaseModel: base, R: s.Config.Rank,
		Alpha: s.Config.Alpha, Dropout: s.Config.Dropout, RSLoRA: s.Config.RSLoRA, Bias: "none", Inference: true}}
	var ts []safetensors.Tensor
	add := func(name string, shape []int64, v []float32) error {
		t, err := safetensors.FromFloat32(name, safetensors.F32, shape, v)
		ts = append(ts, t)
		return err
	}
	byLayer := map[int][]Adapter{}
	for _, a := range s.Adapters {
		byLayer[a.Layer] = append(byLayer[a.Layer], a)
	}
	for li := range c.NLayers {
		var qkv []Adapter
		for _, a := range byLayer[li] {
			if m, ok := falconPEFTModules[a.Module]; ok {
				if err := add(falconPEFTName(li, m, "A"), []int64{int64(a.Rank), int64(a.In)}, a.A); err != nil {
					return err
				}
				if err := add(falconPEFTName(li, m, "B"), []int64{int64(a.Out), int64(a.Rank)}, a.B); err != nil {
					return err
				}
				if sm := shortModule(m); !slices.Contains(pc.TargetModules, sm) {
					pc.TargetModules = append(pc.TargetModules, sm)
				}
				continue
			}
			if a.Module != "q" && a.Module != "k" && a.Module != "v" {
				return fmt.Errorf("lora: Falcon has no %q module", a.Module)
			}
			qkv = append(qkv, a)
		}
		if len(qkv) == 0 {
			continue
		}
		a, b, rank, err := fuseQKV(qkv, c)
		if err != nil {
			return fmt.Errorf("lora: layer %d: %w", li, err)
		}
		if err := add(falconPEFTName(li, falconQKV, "A"), []int64{int64(rank), int64(c.Dim)}, a); err != nil {
			return err
		}
		if err := add(falconPEFTName(li, falconQKV, "B"), []int64{int64(c.Dim + 2*c.KVDim()), int64(rank)}, b); err != nil {
			return err
		}
		if !slices.Contains(pc.TargetModules, "query_key_value") {
			pc.TargetModules = append(pc.TargetModules, "query_key_value")
		}
		// the fused adapter keeps the views' scale: alpha/r (or /√r) at its own rank
		scale := float64(qkv[0].Scale)
		alpha := scale * float64(rank)
		if s.Config.RSLoRA {
			alpha = scale * math.Sqrt(float64(rank))
		}
		pc.RankPattern = map[string]int{"query_key_value": rank}
		pc.AlphaPattern = map[string]float64{"query_key_value": alpha}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(pc, "", "  ")
	if err != nil {
		return err
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), map[string]string{"format": "pt"}, ts); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "adapter_config.json"), append(js, '\n'), 0o644)
}

func shortModule(m string) string {
	for i := len(m) - 1; i >= 0; i-- {
		if m[i] == '.' {
			return m[i+1:]
		}
	}
	return m
}

// fuseQKV stacks the A of a layer's q, k and v adapters and lays their B
// out block-diagonally over the fused rows, in Falcon's order.
func fuseQKV(qkv []Adapter, c llama.Config) (a, b []float32, rank int, err error) {
	rowOff := map[string]int{"q": 0, "k": c.Dim, "v": c.Dim + c.KVDim()}
	rows := c.Dim + 2*c.KVDim()
	for _, x := range qkv {
		if x.Scale != qkv[0].Scale {
			return nil, nil, 0, fmt.Errorf("the q, k and v adapters differ in scale")
		}
		rank += x.Rank
	}
	b = make([]float32, rows*rank)
	col := 0
	for _, x := range qkv {
		a = append(a, x.A...)
		for r := range x.Out {
			copy(b[(rowOff[x.Module]+r)*rank+col:], x.B[r*x.Rank:(r+1)*x.Rank])
		}
		col += x.Rank
	}
	return a, falconRows(b, rank, c, true), rank, nil
}

// falconRows reorders rows of width w between herd's fused order (all
// query heads, then the key heads, then the value heads) and Falcon's (per
// KV head: its query heads, its key head, its value head); toFalcon picks
// the direction.
func falconRows(b []float32, w int, c llama.Config, toFalcon bool) []float32 {
	hd, kv := c.HeadDim(), c.NKVHeads
	rep := c.NHeads / kv
	out := make([]float32, len(b))
	head := hd * w
	for g := range kv {
		for j := range rep + 2 {
			herd := (g*rep + j) * head // a query head
			switch j {
			case rep:
				herd = (c.NHeads + g) * head
			case rep + 1:
				herd = (c.NHeads + kv + g) * head
			}
			falcon := (g*(rep+2) + j) * head
			src, dst := herd, falcon
			if !toFalcon {
				src, dst = falcon, herd
			}
			copy(out[dst:dst+head], b[src:src+head])
		}
	}
	return out
}

// loadPEFTFalcon is LoadPEFT for a Falcon model.
func loadPEFTFalcon(dir string, c llama.Config) (*Set, error) {
	cp := filepath.Join(dir, "adapter_config.json")
	js, err := os.ReadFile(cp)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	var pc falconPEFTConfig
	if err := json.Unmarshal(js, &pc); err != nil {
		return nil, fmt.Errorf("lora %s: %w", cp, err)
	}
	if pc.PEFTType != "LORA" || pc.FanInFanOut {
		return nil, fmt.Errorf("lora %s: peft_type %q (fan_in_fan_out %v), want a LORA of linear layers", cp, pc.PEFTType, pc.FanInFanOut)
	}
	sp := filepath.Join(dir, "adapter_model.safetensors")
	f, err := safetensors.Open(sp)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer f.Close()
	type key struct {
		layer  int
		module string
	}
	pairs := map[key][2]*safetensors.Tensor{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		mm := falconPEFTTensor.FindStringSubmatch(t.Name)
		if mm == nil {
			return nil, fmt.Errorf("lora %s: tensor %q is not a LoRA matrix of a Falcon module", sp, t.Name)
		}
		layer, _ := strconv.Atoi(mm[1])
		k := key{layer, mm[2]}
		p := pairs[k]
		p[map[string]int{"A": 0, "B": 1}[mm[3]]] = t
		pairs[k] = p
	}
	s := &Set{Config: Config{Rank: pc.R, Alpha: pc.Alpha, Dropout: pc.Dropout, RSLoRA: pc.RSLoRA}}
	for k, p := range pairs {
		if p[0] == nil || p[1] == nil || len(p[0].Shape) != 2 || len(p[1].Shape) != 2 || p[0].Shape[0] != p[1].Shape[1] {
			return nil, fmt.Errorf("lora %s: layer %d %s: lora_A and lora_B missing or of mismatched rank", sp, k.layer, k.module)
		}
		if k.layer < 0 || k.layer >= c.NLayers {
			return nil, fmt.Errorf("lora %s: layer %d, the model has %d", sp, k.layer, c.NLayers)
		}
		adapters, err := falconAdapters(k.layer, k.module, p[0], p[1], pc, c)
		if err != nil {
			return nil, fmt.Errorf("lora %s: %w", sp, err)
		}
		for _, a := range adapters {
			s.Adapters = append(s.Adapters, a)
			if !slices.Contains(s.Config.Targets, a.Module) {
				s.Config.Targets = append(s.Config.Targets, a.Module)
			}
		}
	}
	s.sort()
	return s, s.Config.Check()
}

// falconAdapters turns one PEFT adapter of a Falcon module into herd's: the
// fused query_key_value into q, k and v adapters sharing A.
func falconAdapters(layer int, module string, ta, tb *safetensors.Tensor, pc falconPEFTConfig, c llama.Config) ([]Adapter, error) {
	A, err := ta.Float32()
	if err != nil {
		return nil, err
	}
	B, err := tb.Float32()
	if err != nil {
		return nil, err
	}
	rank, in, out := int(ta.Shape[0]), int(ta.Shape[1]), int(tb.Shape[0])
	short := shortModule(module)
	alpha := pc.Alpha
	if v, ok := pc.AlphaPattern[short]; ok {
		alpha = v
	}
	if r, ok := pc.RankPattern[short]; ok && r != rank || !ok && rank != pc.R {
		return nil, fmt.Errorf("layer %d %s: rank %d disagrees with adapter_config.json", layer, module, rank)
	}
	scale := float32(alpha / float64(rank))
	if pc.RSLoRA {
		scale = float32(alpha / math.Sqrt(float64(rank)))
	}
	mk := func(name string, out int, b []float32) Adapter {
		return Adapter{Layer: layer, Module: name, LoRA: &autograd.LoRA{Rank: rank, In: in, Out: out, A: A, B: b, Scale: scale}}
	}
	if module != falconQKV {
		for name, m := range falconPEFTModules {
			if m == module {
				return []Adapter{mk(name, out, B)}, nil
			}
		}
	}
	if in != c.Dim || out != c.Dim+2*c.KVDim() {
		return nil, fmt.Errorf("layer %d %s: %d×%d, the model's fused QKV is %d×%d", layer, module, out, in, c.Dim+2*c.KVDim(), c.Dim)
	}
	B = falconRows(B, rank, c, false)
	kv := c.KVDim()
	return []Adapter{mk("q", c.Dim, B[:c.Dim*rank]), mk("k", kv, B[c.Dim*rank:(c.Dim+kv)*rank]), mk("v", kv, B[(c.Dim+kv)*rank:])}, nil
}
