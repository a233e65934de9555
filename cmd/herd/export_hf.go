package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/checkpoint"
	conv "github.com/herd-llm/herd/convert"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// hfExportFlags are herd export's flags for --format hf.
type hfExportFlags struct {
	dtype, maxShard, peft string
}

func (h *hfExportFlags) register(f *pflag.FlagSet) {
	f.StringVar(&h.dtype, "dtype", "", "hf: matrices as f32, f16 or bf16 (default: each weight's own float type; quantized ones widened to f32)")
	f.StringVar(&h.maxShard, "max-shard-size", "", "hf: split model.safetensors into shards of at most this size (e.g. 2GB, 500MB) with model.safetensors.index.json")
	f.StringVar(&h.peft, "peft", "", "hf: check that this PEFT LoRA directory fits the exported base (target modules, shapes, base_model_name_or_path)")
}

// exportHF writes the model at in as a Hugging Face directory.
func exportHF(cmd *cobra.Command, in, out, tokPath string, h hfExportFlags) error {
	if out == "" {
		return fmt.Errorf("give the output directory with -o")
	}
	m, tok, err := checkpoint.Load(in, tokPath)
	if err != nil {
		return err
	}
	defer m.Close()
	var opt conv.HFOptions
	if h.dtype != "" {
		dt, err := tensor.ParseDType(h.dtype)
		if err != nil {
			return err
		}
		names := map[tensor.DType]safetensors.DType{tensor.F32: safetensors.F32, tensor.F16: safetensors.F16, tensor.BF16: safetensors.BF16}
		if opt.DType = names[dt]; opt.DType == "" {
			return fmt.Errorf("--dtype %s: safetensors weights are f32, f16 or bf16", h.dtype)
		}
	}
	if h.maxShard != "" {
		if opt.MaxShardBytes, err = parseSize(h.maxShard); err != nil {
			return fmt.Errorf("--max-shard-size: %w", err)
		}
	}
	if kind, err := llama.Format(in); err == nil && kind == "gguf" {
		if f, err := gguf.Open(in); err == nil {
			opt.ChatTemplate, _ = f.GetString("tokenizer.chat_template")
			f.Close()
		}
	}
	if err := conv.WriteHF(out, m, tok, opt); err != nil {
		return err
	}
	arch := "LlamaForCausalLM"
	if m.Config.IsFalcon() {
		arch = "FalconForCausalLM"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %s, %d layers, dim %d, vocab %d\n", out, arch, m.Config.NLayers, m.Config.Dim, m.Config.VocabSize)
	if h.peft == "" {
		return nil
	}
	res, err := conv.CheckPEFT(h.peft, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d LoRA pairs fit the exported base\n", h.peft, res.Adapters)
	if res.BaseMismatch != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", res.BaseMismatch)
	}
	return nil
}

// parseSize reads a size as transformers' max_shard_size spells it: a byte
// count, or a number with KB, MB, GB (powers of 1000) or KiB, MiB, GiB.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := 1.0
	num := strings.TrimSpace(s)
	for _, u := range units {
		if v, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v > 0) {
		return 0, fmt.Errorf("%q is not a positive size (e.g. 2GB, 500MB, 1048576)", s)
	}
	return int64(v * mult), nil
}
