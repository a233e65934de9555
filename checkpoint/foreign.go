package checkpoint

import (
	"fmt"
	"runtime"
	"strings"

	conv "github.com/herd-llm/herd/convert"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// ConvertOptions control ConvertGGUF.
type ConvertOptions struct {
	Name string // general.name
	// DType re-encodes the matrices (F32, F16, BF16, Q8_0, Q4_0, … any
	// type tensor.Quantize writes); 0 with Convert false keeps the source's.
	DType   tensor.DType
	Convert bool
	// Tokenizer replaces the source's own when set.
	Tokenizer tokenizer.Tokenizer
	// Progress, when set, is told the bytes written so far of the total.
	Progress func(done, total int64)
}

// baichuanMetadata is the metadata of an ALiBi model (Baichuan-13B): llama.cpp's
// "baichuan" architecture, which takes ALiBi for 40 blocks, and herd's
// ALiBiKey, which says so for any block count.
func baichuanMetadata(c llama.Config, name string) []KV {
	kv := modelMetadata(c, name)
	for i := range kv {
		if k, ok := strings.CutPrefix(kv[i].Key, "llama."); ok {
			kv[i].Key = "baichuan." + k
		}
	}
	kv[0].Value = "baichuan"
	return append(kv, KV{llama.ALiBiKey, true})
}

// modelMetadata is the llama.* metadata of a model of config c.
func modelMetadata(c llama.Config, name string) []KV {
	return []KV{
		{"general.architecture", "llama"},
		{"general.name", name},
		{"llama.context_length", uint32(c.ContextLen)},
		{"llama.embedding_length", uint32(c.Dim)},
		{"llama.block_count", uint32(c.NLayers)},
		{"llama.feed_forward_length", uint32(c.FFNDim)},
		{"llama.rope.dimension_count", uint32(c.HeadDim())},
		{"llama.attention.head_count", uint32(c.NHeads)},
		{"llama.attention.head_count_kv", uint32(c.NKVHeads)},
		{"llama.attention.layer_norm_rms_epsilon", c.NormEps},
		{"llama.rope.freq_base", c.RopeTheta},
		{"llama.vocab_size", uint32(c.VocabSize)},
	}
}

// ConvertGGUF writes a checkpoint of another tool (conv.Open) as a GGUF
// v3 file, atomically, one tensor at a time: each is read, transformed and
// re-encoded only when the writer reaches it, so memory holds about one
// tensor, not the model. Vectors (norm weights) are stored as F32. The
// tokenizer (the source's, or opt.Tokenizer) and the source's chat template
// go into the metadata.
func ConvertGGUF(path string, src *conv.Source, opt ConvertOptions) error {
	c := src.Config
	if c.Rope != llama.RopeInterleaved && !c.IsFalcon() {
		return fmt.Errorf("convert %s: GGUF llama models use interleaved RoPE", path)
	}
	tok := src.Tokenizer
	if opt.Tokenizer != nil {
		tok = opt.Tokenizer
	}
	if tok != nil && tok.VocabSize() != c.VocabSize {
		return fmt.Errorf("convert %s: the tokenizer has %d tokens but the model's vocabulary is %d", path, tok.VocabSize(), c.VocabSize)
	}
	kv := modelMetadata(c, opt.Name)
	if c.IsFalcon() {
		kv = falconMetadata(c, opt.Name)
	}
	if c.ALiBi {
		kv = baichuanMetadata(c, opt.Name)
	}
	tkv, err := TokenizerMetadata(tok)
	if err != nil {
		return fmt.Errorf("convert %s: %w", path, err)
	}
	kv = append(kv, tkv...)
	if src.ChatTemplate != "" {
		kv = append(kv, KV{"tokenizer.chat_template", src.ChatTemplate})
	}
	w := gguf.NewWriter()
	for _, e := range kv {
		if err := w.Set(e.Key, e.Value); err != nil {
			return fmt.Errorf("convert %s: %s: %w", path, e.Key, err)
		}
	}
	var done, total int64
	for i := range src.Tensors {
		t := &src.Tensors[i]
		dt := outDType(t, opt)
		total += tensorSize(dt, t.Dims)
		fill := func() ([]byte, error) {
			// the previous tensor is garbage now: collect it, so the heap
			// holds one tensor rather than the several GOGC would allow
			runtime.GC()
			b, err := t.Read()
			if err == nil {
				b, err = recode(b, t.DType, dt, int(t.Dims[0]))
			}
			if err != nil {
				return nil, fmt.Errorf("tensor %s: %w", t.Name, err)
			}
			done += int64(len(b))
			if opt.Progress != nil {
				opt.Progress(done, total)
			}
			return b, nil
		}
		if err := w.AddTensorFunc(t.Name, dt, t.Dims, fill); err != nil {
			return fmt.Errorf("convert %s: %w", path, err)
		}
	}
	if err := w.WriteFile(path); err != nil {
		return fmt.Errorf("convert %s: %w", path, err)
	}
	return nil
}

// outDType is the dtype tensor t is written as: vectors F32, matrices
// opt.DType when converting, else their own.
func outDType(t *conv.Tensor, opt ConvertOptions) tensor.DType {
	switch {
	case len(t.Dims) == 1:
		return tensor.F32
	case opt.Convert:
		return opt.DType
	}
	return t.DType
}

func tensorSize(dt tensor.DType, dims []uint64) int64 {
	rb, err := dt.RowBytes(int(dims[0]))
	if err != nil {
		return 0
	}
	n := int64(rb)
	for _, d := range dims[1:] {
		n *= int64(d)
	}
	return n
}

// recode re-encodes rows of n elements from dtype from to dtype to.
func recode(b []byte, from, to tensor.DType, n int) ([]byte, error) {
	if from == to {
		return b, nil
	}
	inRow, err := from.RowBytes(n)
	if err != nil {
		return nil, err
	}
	outRow, err := to.RowBytes(n)
	if err != nil {
		return nil, fmt.Errorf("%s rows of %d: %w", to, n, err)
	}
	rows := len(b) / inRow
	out := make([]byte, rows*outRow)
	row := make([]float32, n)
	for r := range rows {
		if err := tensor.Dequantize(from, row, b[r*inRow:(r+1)*inRow]); err != nil {
			return nil, err
		}
		if err := tensor.Quantize(to, out[r*outRow:(r+1)*outRow], row); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// openForeign loads a Hugging Face or Meta checkpoint directory: the model
// in memory and the directory's tokenizer (nil if it has none).
func openForeign(dir string) (*llama.Model, tokenizer.Tokenizer, error) {
	src, err := conv.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	m, err := src.Model()
	if err != nil {
		return nil, nil, err
	}
	return m, src.Tokenizer, nil
}
