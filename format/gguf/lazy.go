package gguf

import (
	"fmt"

	"github.com/herd-llm/herd/tensor"
)

// lazyTensor is a tensor whose bytes a function produces when the file is
// written.
type lazyTensor struct {
	size int64
	fill func() ([]byte, error)
}

// AddTensorFunc appends a tensor whose bytes fill returns when WriteTo
// reaches it, so that a converter holds one tensor in memory at a time, not
// the model. fill must return exactly the tensor's bytes (checked).
func (w *Writer) AddTensorFunc(name string, dtype tensor.DType, dims []uint64, fill func() ([]byte, error)) error {
	size, err := tensorBytes(dtype, dims)
	if err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("gguf: tensor name %q is longer than %d bytes", name, MaxNameLen)
	}
	if _, dup := w.tIndex[name]; dup {
		return fmt.Errorf("gguf: duplicate tensor name %q", name)
	}
	if !Supported(dtype) {
		return fmt.Errorf("gguf: unsupported tensor type %s in tensor %s", dtype, name)
	}
	if w.lazy == nil {
		w.lazy = map[string]lazyTensor{}
	}
	w.lazy[name] = lazyTensor{size, fill}
	w.tIndex[name] = len(w.tensors)
	w.tensors = append(w.tensors, TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), DType: dtype})
	return nil
}

// size is the number of bytes of t's data.
func (w *Writer) size(t TensorInfo) int64 {
	if l, ok := w.lazy[t.Name]; ok {
		return l.size
	}
	return int64(len(t.Data))
}

// data returns t's bytes, producing a lazy tensor's.
func (w *Writer) data(t TensorInfo) ([]byte, error) {
	l, ok := w.lazy[t.Name]
	if !ok {
		return t.Data, nil
	}
	b, err := l.fill()
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != l.size {
		return nil, fmt.Errorf("%d bytes produced, want %d for %s %v", len(b), l.size, t.DType, t.Dims)
	}
	return b, nil
}
