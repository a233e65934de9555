package imatrix

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/tensor"
)

// Apply prepares opt (for quant.File on in) to weight the quantization
// searches with importance matrix m, loaded from the file named file, as
// llama-quantize --imatrix does: every tensor with an entry is quantized
// row by row with tensor.QuantizeRowWeighted (the k-quant, IQ4_NL and
// legacy searches weighted by the entry's mean squares; Q8_0 ignores
// them, as ggml does), tensors without one as usual, and the file records
// quantize.imatrix.file, .dataset, .entries_count and .chunks_count after
// general.file_type. An entry whose length differs from its tensor's rows,
// or a non-finite value, is an error, as in llama.cpp. (llama.cpp also
// refuses its IQ1/IQ2 and Q2_K_S mixes without an imatrix; herd writes
// none of those, so no tensor of a herd mix requires one.) The returned
// function reports, after quant.File, an error from a weighted tensor.
func Apply(opt *quant.Options, in *gguf.File, m *Matrix, file string) (func() error, error) {
	means := m.Means()
	for _, e := range m.Entries {
		for i, v := range e.Values {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%s: entry %s: value %d is %g (llama-quantize refuses non-finite importance)", file, e.Name, i, v)
			}
		}
	}
	opt.HasImatrix = true
	plan, err := quant.PlanWith(in, opt.Type, true)
	if err != nil {
		return nil, err
	}
	for _, c := range plan {
		if v, ok := means[c.Name]; ok && c.Quantized() && uint64(len(v)) != c.Dims[0] {
			return nil, fmt.Errorf("%s: entry %s has %d values, the tensor's rows %d", file, c.Name, len(v), c.Dims[0])
		}
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	var failed error
	var mu sync.Mutex
	opt.Replace = func(c quant.Choice) []byte {
		qw, ok := means[c.Name]
		if !ok {
			return nil
		}
		t, _ := in.Tensor(c.Name)
		data, err := weighted(t, c.To, qw, threads)
		if err != nil {
			mu.Lock()
			failed = fmt.Errorf("tensor %s: %w", c.Name, err)
			mu.Unlock()
			return nil // quant.File converts it unweighted; the error is reported after
		}
		return data
	}
	add := func(k string, v any) {
		val, _ := gguf.ValueOf(v)
		opt.Extra = append(opt.Extra, gguf.KV{Key: k, Value: val})
	}
	add("quantize.imatrix.file", truncate(file))
	if m.Dataset != "" {
		add("quantize.imatrix.dataset", truncate(m.Dataset))
	}
	add("quantize.imatrix.entries_count", int32(len(m.Entries)))
	if m.LastCall > 0 {
		add("quantize.imatrix.chunks_count", m.LastCall)
	}
	return func() error { mu.Lock(); defer mu.Unlock(); return failed }, nil
}

// truncate keeps the first 127 bytes, as llama-quantize's 128-byte
// override strings do.
func truncate(s string) string {
	if len(s) > 127 {
		return s[:127]
	}
	return s
}

// weighted quantizes every row of t to dt with importance weights qw.
func weighted(t *gguf.TensorInfo, dt tensor.DType, qw []float32, threads int) ([]byte, error) {
	n := int(t.Dims[0])
	rows := 1
	for _, d := range t.Dims {
		rows *= int(d)
	}
	rows /= n
	inRow, err := t.DType.RowBytes(n)
	if err != nil {
		return nil, err
	}
	outRow, err := dt.RowBytes(n)
	if err != nil {
		return nil, err
	}
	out := make([]byte, rows*outRow)
	errs := make([]error, threads)
	var wg sync.WaitGroup
	for w := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := make([]float32, n)
			for r := w; r < rows; r += threads {
				if err := tensor.Dequantize(t.DType, row, t.Data[r*inRow:(r+1)*inRow]); err != nil {
					errs[w] = err
					return
				}
				o := out[r*outRow : (r+1)*outRow]
				if err := tensor.QuantizeRowWeighted(dt, o, row, qw); err != nil {
					errs[w] = err
					return
				}
				if err := tensor.ValidateBlocks(dt, o); err != nil {
					errs[w] = fmt.Errorf("row %d: quantized data validation failed (non-finite input weights?): %w", r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
