package align

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// The files of a reward model: a whole model with its head (full), or
// the head beside a LoRA adapter's files.
const (
	RewardFile = "reward.gguf"
	HeadFile   = "score.safetensors"
)

// HeadKind is the metadata that says what the head is (GGUF key
// herd.reward.head_kind, safetensors metadata herd.reward).
const HeadKind = "LlamaForSequenceClassification, num_labels 1: reward = score.weight · the final normed hidden state of the last token (no bias)"

// SaveReward writes m, its tokenizer and the head as one GGUF file
// (atomically): the head as tensor score.weight (ggml dims [Dim, 1]) and
// metadata herd.reward.head / herd.reward.head_kind saying what it is,
// with extra metadata beside (the template's name, the recipe).
func SaveReward(path string, m *llama.Model, tok tokenizer.Tokenizer, head []float32, extra map[string]any) error {
	if len(head) != m.Config.Dim {
		return fmt.Errorf("reward model %s: a head of %d for a model of width %d", path, len(head), m.Config.Dim)
	}
	kv := map[string]any{"herd.reward.head": HeadName, "herd.reward.head_kind": HeadKind}
	for k, v := range extra {
		kv[k] = v
	}
	return checkpoint.SaveGGUF(path, m, tok, checkpoint.SaveOptions{Name: "herd rm", Extra: kv,
		Tensors: []checkpoint.Tensor{{Name: HeadName, DType: tensor.F32, Dims: []uint64{uint64(len(head)), 1}, Data: tensor.BytesOfF32(head)}}})
}

// SaveHead writes the head alone as safetensors (shape [1, Dim], the
// layout of Hugging Face's score.weight).
func SaveHead(path string, head []float32) error {
	t, err := safetensors.FromFloat32(HeadName, safetensors.F32, []int64{1, int64(len(head))}, head)
	if err != nil {
		return err
	}
	return safetensors.WriteFile(path, map[string]string{"format": "pt", "herd.reward": HeadKind}, []safetensors.Tensor{t})
}

// checkHead validates a head read from a file.
func checkHead(path string, h []float32, dim int) ([]float32, error) {
	if len(h) != dim {
		return nil, fmt.Errorf("%s: %s has %d values, the model's width is %d", path, HeadName, len(h), dim)
	}
	for _, x := range h {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%s: %s holds a value that is not finite", path, HeadName)
		}
	}
	return h, nil
}

// readHeadGGUF reads score.weight of a reward GGUF.
func readHeadGGUF(path string, dim int) ([]float32, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, ok := f.Tensor(HeadName)
	if !ok {
		return nil, fmt.Errorf("%s: no %s tensor: not a reward model (herd rm train writes one)", path, HeadName)
	}
	if t.NumElements() != uint64(dim) {
		return nil, fmt.Errorf("%s: %s has %d values, the model's width is %d", path, HeadName, t.NumElements(), dim)
	}
	h := make([]float32, dim)
	if err := tensor.Dequantize(t.DType, h, t.Data); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, HeadName, err)
	}
	return checkHead(path, h, dim)
}

// readHead reads score.safetensors.
func readHead(path string, dim int) ([]float32, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, ok := f.Tensor(HeadName)
	if !ok {
		return nil, fmt.Errorf("%s: no %s tensor", path, HeadName)
	}
	h, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, HeadName, err)
	}
	return checkHead(path, h, dim)
}

// LoadReward opens a reward model: a reward GGUF (or a directory holding
// reward.gguf), or a directory of a LoRA adapter and score.safetensors on
// base (when base is "", the base its adapter_config.json names; "" there
// too: the embedded model). tokPath overrides the tokenizer. Close the
// model when done.
func LoadReward(path, base, tokPath string) (*RewardModel, tokenizer.Tokenizer, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, RewardFile)); err == nil {
			path = filepath.Join(path, RewardFile)
		} else {
			return loadLoRAReward(path, base, tokPath)
		}
	}
	m, tok, err := checkpoint.Load(path, tokPath)
	if err != nil {
		return nil, nil, err
	}
	h, err := readHeadGGUF(path, m.Config.Dim)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return &RewardModel{Policy: &Policy{Model: m}, Head: h, Batch: 8}, tok, nil
}

func loadLoRAReward(dir, base, tokPath string) (*RewardModel, tokenizer.Tokenizer, error) {
	if base == "" {
		var cfg struct {
			Base string `json:"base_model_name_or_path"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
		if err != nil {
			return nil, nil, fmt.Errorf("reward model %s: neither %s nor a LoRA adapter: %w", dir, RewardFile, err)
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, nil, fmt.Errorf("%s/adapter_config.json: %w", dir, err)
		}
		base = cfg.Base
	}
	m, tok, err := checkpoint.Load(base, tokPath)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*RewardModel, tokenizer.Tokenizer, error) { m.Close(); return nil, nil, err }
	set, err := lora.LoadPEFT(dir, m.Config)
	if err != nil {
		return fail(err)
	}
	if err := set.Attach(m, 1); err != nil {
		return fail(err)
	}
	h, err := readHead(filepath.Join(dir, HeadFile), m.Config.Dim)
	if err != nil {
		return fail(err)
	}
	return &RewardModel{Policy: &Policy{Model: m, Adapters: set}, Head: h, Batch: 8}, tok, nil
}

// ScoreFile writes one JSON line per example of the preference or
// unpaired files: its file:line and the reward of each response (chosen
// and rejected, or the unpaired response and its label), the prompt and
// response rendered through tmpl as in training. Rewards are computed
// Batch sequences at a time through the batched forward pass.
func (r *RewardModel) ScoreFile(paths []string, skipBad bool, tok tokenizer.Tokenizer, tmpl *chat.Template, w io.Writer) (Stats, error) {
	exs, _, err := ReadAll(paths, skipBad)
	if err != nil {
		return Stats{}, err
	}
	enc := &Encoder{Tok: tok, Template: tmpl, MaxLen: r.Policy.Model.Config.ContextLen}
	ss, err := enc.EncodeAll(exs)
	if err != nil {
		return enc.Stats, err
	}
	type line struct {
		Where     string   `json:"where"`
		Chosen    *float64 `json:"chosen,omitempty"`
		Rejected  *float64 `json:"rejected,omitempty"`
		Reward    *float64 `json:"reward,omitempty"`
		Desirable *bool    `json:"label,omitempty"`
	}
	je := json.NewEncoder(w)
	for lo := 0; lo < len(ss); lo += r.Batch {
		part := ss[lo:min(len(ss), lo+r.Batch)]
		var seqs [][]int
		for i := range part {
			seqs = append(seqs, append(append([]int(nil), part[i].Prompt...), part[i].Chosen...))
			if part[i].Paired {
				seqs = append(seqs, append(append([]int(nil), part[i].Prompt...), part[i].Rejected...))
			}
		}
		rw, err := r.Score(seqs)
		if err != nil {
			return enc.Stats, err
		}
		at := 0
		for i := range part {
			l := line{Where: part[i].Where}
			if part[i].Paired {
				l.Chosen, l.Rejected = &rw[at], &rw[at+1]
				at += 2
			} else {
				l.Reward, l.Desirable = &rw[at], &part[i].Desirable
				at++
			}
			if err := je.Encode(l); err != nil {
				return enc.Stats, err
			}
		}
	}
	return enc.Stats, nil
}
