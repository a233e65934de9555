package sft

import (
	"fmt"
	"path/filepath"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/tokenizer"
)

// The files a run's method leaves in its output directory.
const (
	ModelFile   = "model.gguf"          // full, embed: the tuned model with its tokenizer
	AdapterGGUF = "adapter.gguf"        // lora, qlora, embed with LoRA: llama.cpp's adapter
	PrefixFile  = "adapter.safetensors" // adapter: the adaption prompts and gates
	// lora.SavePEFT's adapter_config.json and adapter_model.safetensors
	// sit beside adapter.gguf.
)

// SaveOptions say what the output records beside the weights.
type SaveOptions struct {
	Base      string              // the base model's path, for the PEFT config
	Tokenizer tokenizer.Tokenizer // model.gguf's vocabulary
	Template  string              // herd's name of the chat template trained with (herd.chat_template)
	Recipe    string              // the run's effective recipe (herd.recipe)
	Extra     map[string]any      // further model.gguf metadata
}

// Save writes what res's method produces into dir and returns the paths:
// the adaption prompts (adapter), the adapter in PEFT's and llama.cpp's
// layouts (lora, qlora; embed with LoRA as well), the tuned model (full,
// embed; without the LoRA, which is detached from res.Model first). A
// model.gguf records the chat template's name and the recipe.
func (res *Result) Save(dir, method string, o SaveOptions) ([]string, error) {
	if method == Adapter {
		p := filepath.Join(dir, PrefixFile)
		return []string{p}, lora.SavePrefixes(p, res.Model)
	}
	var wrote []string
	if res.Adapters != nil {
		if err := lora.SavePEFT(dir, res.Adapters, res.Model.Config, o.Base); err != nil {
			return nil, err
		}
		if err := lora.SaveGGUF(filepath.Join(dir, AdapterGGUF), res.Adapters); err != nil {
			return nil, err
		}
		wrote = append(wrote, filepath.Join(dir, "adapter_model.safetensors"), filepath.Join(dir, AdapterGGUF))
		if method != Embed {
			return wrote, nil
		}
		res.Adapters.Detach(res.Model) // model.gguf holds the weights alone
	}
	extra := map[string]any{}
	for k, v := range o.Extra {
		extra[k] = v
	}
	if o.Template != "" {
		extra[chat.HerdTemplateKey] = o.Template
	}
	if o.Recipe != "" {
		extra["herd.recipe"] = o.Recipe
	}
	p := filepath.Join(dir, ModelFile)
	if err := checkpoint.SaveGGUF(p, res.Model, o.Tokenizer, checkpoint.SaveOptions{Name: "herd sft " + method, Extra: extra}); err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	return append(wrote, p), nil
}
