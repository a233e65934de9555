package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/herd-llm/herd/internal/fileio"
	"io"
	"math"

	"github.com/herd-llm/herd/tensor"
)

// MaxNameLen is the longest tensor name the Writer accepts: llama.cpp keeps
// names in a 64-byte buffer with a terminating NUL.
const MaxNameLen = 63

// Writer collects metadata and tensors and writes them as a GGUF version 3
// file. Tensor data is written in the order the tensors were added, each at
// an offset aligned to general.alignment (32 unless set).
type Writer struct {
	kv      []KV
	kvIndex map[string]int
	tensors []TensorInfo
	tIndex  map[string]int
	lazy    map[string]lazyTensor // tensors whose bytes are produced while writing
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{kvIndex: map[string]int{}, tIndex: map[string]int{}}
}

// Set stores x under key, replacing an earlier value of that key in place
// (so key order is first-set order). x is a Value or any Go type ValueOf
// accepts; general.alignment must be a uint32 power of two.
func (w *Writer) Set(key string, x any) error {
	v, err := ValueOf(x)
	if err != nil {
		return fmt.Errorf("gguf: key %q: %w", key, err)
	}
	if err := checkValue(v, 0); err != nil {
		return fmt.Errorf("gguf: key %q: %w", key, err)
	}
	if key == AlignmentKey {
		a, ok := v.Any().(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf: %s must be a uint32 power of two, got %s %v", AlignmentKey, v.Type, v)
		}
	}
	if i, ok := w.kvIndex[key]; ok {
		w.kv[i].Value = v
		return nil
	}
	w.kvIndex[key] = len(w.kv)
	w.kv = append(w.kv, KV{key, v})
	return nil
}

// checkValue refuses values that ValueOf cannot have built, such as a
// zero Value or an array of arrays nested too deep to read back.
func checkValue(v Value, depth int) error {
	if v.v == nil {
		return fmt.Errorf("empty value")
	}
	if vs, ok := v.v.([]Value); ok {
		if len(vs) > 0 && depth+1 >= maxNesting {
			return fmt.Errorf("arrays nested deeper than %d", maxNesting)
		}
		for i, e := range vs {
			if e.Type != TypeArray {
				return fmt.Errorf("array of arrays: element %d is a %s", i, e.Type)
			}
			if err := checkValue(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddTensor appends a tensor. dims are in ggml order (dims[0] is the row
// length) and data must hold exactly the tensor's bytes; it is not copied
// and must stay unchanged until the file is written.
func (w *Writer) AddTensor(name string, dtype tensor.DType, dims []uint64, data []byte) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("gguf: tensor name %q is longer than %d bytes", name, MaxNameLen)
	}
	if _, dup := w.tIndex[name]; dup {
		return fmt.Errorf("gguf: duplicate tensor name %q", name)
	}
	if !Supported(dtype) {
		return fmt.Errorf("gguf: unsupported tensor type %s in tensor %s", dtype, name)
	}
	size, err := tensorBytes(dtype, dims)
	if err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	if int64(len(data)) != size {
		return fmt.Errorf("gguf: tensor %q: %d bytes of data, want %d for %s %v", name, len(data), size, dtype, dims)
	}
	w.tIndex[name] = len(w.tensors)
	w.tensors = append(w.tensors, TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), DType: dtype, Data: data})
	return nil
}

// alignment is the data alignment the written file will declare.
func (w *Writer) alignment() int {
	if i, ok := w.kvIndex[AlignmentKey]; ok {
		return int(w.kv[i].Value.Any().(uint32))
	}
	return DefaultAlignment
}

// encoder appends little-endian GGUF encodings to a buffered writer and
// remembers the first error.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) bytes(p []byte) {
	if e.err != nil {
		return
	}
	var n int
	n, e.err = e.w.Write(p)
	e.n += int64(n)
}

func (e *encoder) u8(x uint8) { e.buf[0] = x; e.bytes(e.buf[:1]) }
func (e *encoder) u16(x uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], x)
	e.bytes(e.buf[:2])
}
func (e *encoder) u32(x uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], x)
	e.bytes(e.buf[:4])
}
func (e *encoder) u64(x uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], x)
	e.bytes(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		var n int
		n, e.err = e.w.WriteString(s)
		e.n += int64(n)
	}
}
func (e *encoder) pad(align int) {
	for e.err == nil && e.n%int64(align) != 0 {
		e.u8(0)
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value writes the payload of v (without its type tag).
func (e *encoder) value(v Value) {
	switch x := v.v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.u8(b2u(x))
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	default:
		e.u32(uint32(v.Elem()))
		e.u64(uint64(v.Len()))
		e.array(v)
	}
}

func (e *encoder) array(v Value) {
	switch a := v.v.(type) {
	case []uint8:
		e.bytes(a)
	case []int8:
		for _, x := range a {
			e.u8(uint8(x))
		}
	case []uint16:
		for _, x := range a {
			e.u16(x)
		}
	case []int16:
		for _, x := range a {
			e.u16(uint16(x))
		}
	case []uint32:
		for _, x := range a {
			e.u32(x)
		}
	case []int32:
		for _, x := range a {
			e.u32(uint32(x))
		}
	case []float32:
		for _, x := range a {
			e.u32(math.Float32bits(x))
		}
	case []bool:
		for _, x := range a {
			e.u8(b2u(x))
		}
	case []string:
		for _, x := range a {
			e.str(x)
		}
	case []uint64:
		for _, x := range a {
			e.u64(x)
		}
	case []int64:
		for _, x := range a {
			e.u64(uint64(x))
		}
	case []float64:
		for _, x := range a {
			e.u64(math.Float64bits(x))
		}
	case []Value:
		for _, x := range a {
			e.value(x)
		}
	}
}

// WriteTo writes the GGUF file to out and returns the number of bytes written.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	align := w.alignment()
	e := &encoder{w: bufio.NewWriterSize(out, 1<<20)}
	e.bytes([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	var off uint64
	for _, t := range w.tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.DType))
		e.u64(off)
		off = uint64(alignUp(int64(off)+w.size(t), align))
	}
	e.pad(align)
	for _, t := range w.tensors {
		data, err := w.data(t)
		if err != nil {
			return e.n, fmt.Errorf("gguf: tensor %s: %w", t.Name, err)
		}
		e.bytes(data)
		e.pad(align)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return e.n, fmt.Errorf("gguf: write: %w", e.err)
	}
	return e.n, nil
}

// WriteFile writes the GGUF file to path atomically: into a temporary file
// in the same directory, synced, then renamed over path, and the directory
// synced.
func (w *Writer) WriteFile(path string) error {
	if err := fileio.WriteAtomic(path, func(f io.Writer) error {
		_, err := w.WriteTo(f)
		return err
	}); err != nil {
		return fmt.Errorf("gguf %s: %w", path, err)
	}
	return nil
}
