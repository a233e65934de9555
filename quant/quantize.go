package quant

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// QuantizationVersion is ggml's GGML_QNT_VERSION, written as
// general.quantization_version.
const QuantizationVersion = 2

// Options control File.
type Options struct {
	Type    FileType // the mix to write
	Threads int      // worker goroutines; 0 means one per CPU
	// Progress, when set, is called from the quantizing goroutines with the
	// number of input weights done so far and the total to do.
	Progress func(done, total int64)
	// Warn, when set, receives warnings: tensors that are already
	// quantized (dequantized then quantized again, which adds error) and
	// row lengths llama.cpp has no fallback for.
	Warn func(msg string)
	// Replace, when set, may return the bytes of a tensor quantized
	// elsewhere (by GPTQ) in the type the plan chose for it; they are
	// written instead of the reference quantizer's. nil means quantize as
	// usual.
	Replace func(c Choice) []byte
	// Extra metadata, written after general.file_type in this order (how
	// llama-quantize records an importance matrix: quantize.imatrix.*).
	Extra []gguf.KV
	// HasImatrix plans the mix as llama.cpp does when it is given an
	// importance matrix (see PlanWith).
	HasImatrix bool
}

// Result describes a quantized file.
type Result struct {
	Plan     []Choice // every tensor, in file order
	InBytes  int64    // tensor data of the input
	OutBytes int64    // tensor data of the output
}

// Fallbacks counts the tensors whose mix type did not fit their rows.
func (r *Result) Fallbacks() int {
	n := 0
	for _, c := range r.Plan {
		if c.Fallback {
			n++
		}
	}
	return n
}

// File quantizes the model in the open GGUF file in to mix opt.Type and
// writes it to out: every metadata key kept in order, then
// general.quantization_version and general.file_type (moved to the end, as
// llama.cpp's gguf writer does), the tensors in llama.cpp's order, each
// quantized with ggml's reference quantizer for its chosen type, rows
// spread over opt.Threads goroutines. The output is byte-identical to
// llama-quantize's (without an importance matrix) wherever llama.cpp
// accepts the model.
func File(in *gguf.File, out string, opt Options) (*Result, error) {
	if err := Validate(in); err != nil {
		return nil, err
	}
	plan, err := PlanWith(in, opt.Type, opt.HasImatrix)
	if err != nil {
		return nil, err
	}
	warn := func(format string, args ...any) {
		if opt.Warn != nil {
			opt.Warn(fmt.Sprintf(format, args...))
		}
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	w := gguf.NewWriter()
	for _, kv := range in.KV {
		if kv.Key == "general.quantization_version" || kv.Key == "general.file_type" {
			continue
		}
		if err := w.Set(kv.Key, kv.Value); err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path, err)
		}
	}
	if err := w.Set("general.quantization_version", uint32(QuantizationVersion)); err != nil {
		return nil, err
	}
	if err := w.Set("general.file_type", uint32(opt.Type)); err != nil {
		return nil, err
	}
	for _, kv := range opt.Extra {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			return nil, fmt.Errorf("%s: %w", kv.Key, err)
		}
	}
	res := &Result{Plan: plan}
	var total, done int64
	for _, c := range plan {
		if c.Quantized() {
			total += int64(elements(c.Dims))
		}
	}
	for _, c := range plan {
		t, _ := in.Tensor(c.Name)
		res.InBytes += int64(len(t.Data))
		data := t.Data
		if c.Quantized() {
			if c.From.IsQuantized() {
				warn("tensor %s is already %s: dequantizing and quantizing again to %s adds error", c.Name, c.From, c.To)
			}
			if c.Refused {
				warn("tensor %s: rows of %d are not whole %s blocks and llama.cpp has no fallback for that (it refuses the model); writing F16",
					c.Name, c.Dims[0], mixBase(opt.Type))
			}
			data = nil
			if opt.Replace != nil {
				data = opt.Replace(c)
			}
		}
		if c.Quantized() && data == nil {
			data, err = convert(t, c.To, threads, func(n int64) {
				if opt.Progress != nil {
					opt.Progress(atomic.AddInt64(&done, n), total)
				}
			})
			if err != nil {
				return nil, fmt.Errorf("%s: tensor %s: %w", in.Path, c.Name, err)
			}
		}
		res.OutBytes += int64(len(data))
		if err := w.AddTensor(c.Name, c.To, c.Dims, data); err != nil {
			return nil, err
		}
	}
	if err := w.WriteFile(out); err != nil {
		return nil, err
	}
	return res, nil
}

// Validate checks in as herd's loaders would before anything is
// quantized, so that quantize never turns a file herd refuses into one
// that looks new: every tensor has positive dims; a "llama" model must
// build (llama.FromGGUF: hyperparameters, shapes, block scales) and its
// tokenizer, when the metadata holds one, must load and match the
// vocabulary (checkpoint.TokenizerFromGGUF), as herd run loads them.
// Other architectures, and LLaMA mixtures of experts (Mixtral), which
// herd cannot run, get the structural checks only.
func Validate(in *gguf.File) error {
	for _, t := range in.Tensors {
		for i, d := range t.Dims {
			if d == 0 {
				return fmt.Errorf("%s: tensor %s has dimension %d = 0 (dims %v)", in.Path, t.Name, i, t.Dims)
			}
		}
	}
	if arch, _ := in.GetString("general.architecture"); arch != "llama" {
		return nil
	}
	if n, _ := in.GetUint("llama.expert_count"); n > 0 {
		return nil // a mixture of experts (Mixtral): llama.cpp's mix rules know it, herd's model does not
	}
	m, err := llama.FromGGUF(in)
	if err != nil {
		return fmt.Errorf("not quantizing a model herd cannot load: %w", err)
	}
	if _, ok := in.Get("tokenizer.ggml.model"); !ok {
		return nil
	}
	tok, err := checkpoint.TokenizerFromGGUF(in)
	if err != nil {
		return fmt.Errorf("not quantizing a model whose tokenizer herd cannot load: %w", err)
	}
	if tok.VocabSize() != m.Config.VocabSize {
		return fmt.Errorf("%s: the tokenizer has %d tokens but the model's vocabulary is %d", in.Path, tok.VocabSize(), m.Config.VocabSize)
	}
	return nil
}

func mixBase(ft FileType) tensor.DType {
	t, _ := ft.Base()
	return t
}

func elements(dims []uint64) uint64 {
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// convert re-encodes a tensor as type to, row by row on threads
// goroutines: each row is expanded to float32 and quantized with ggml's
// reference (rows are independent, so the bytes do not depend on the
// split). The result is checked for non-finite block scales, as
// llama-quantize checks its output.
func convert(t *gguf.TensorInfo, to tensor.DType, threads int, progress func(int64)) ([]byte, error) {
	if len(t.Dims) == 0 || elements(t.Dims) == 0 || elements(t.Dims) > 1<<40 {
		return nil, fmt.Errorf("dims %v: not a tensor to quantize", t.Dims)
	}
	n := int(t.Dims[0])
	rows := int(elements(t.Dims)) / n
	inRow, err := t.DType.RowBytes(n)
	if err != nil {
		return nil, err
	}
	outRow, err := to.RowBytes(n)
	if err != nil {
		return nil, err
	}
	out := make([]byte, rows*outRow)
	// chunks of at least 32·512 weights, as llama.cpp hands them out
	chunk := max(1, (32*512+n-1)/n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, threads)
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			row := make([]float32, n)
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= rows {
					return
				}
				hi := min(rows, lo+chunk)
				for r := lo; r < hi; r++ {
					if err := tensor.Dequantize(t.DType, row, t.Data[r*inRow:(r+1)*inRow]); err != nil {
						errs[w] = err
						return
					}
					if err := tensor.Quantize(to, out[r*outRow:(r+1)*outRow], row); err != nil {
						errs[w] = err
						return
					}
				}
				if err := tensor.ValidateBlocks(to, out[lo*outRow:hi*outRow]); err != nil {
					errs[w] = fmt.Errorf("quantized data validation failed (non-finite input weights?): %w", err)
					return
				}
				progress(int64((hi - lo) * n))
			}
		}(w)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
