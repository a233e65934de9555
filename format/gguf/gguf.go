// Package gguf reads and writes GGUF files, llama.cpp's container for model
// metadata and tensors (versions 2 and 3).
//
// A file is a header ("GGUF", uint32 version, uint64 tensor count, uint64
// metadata count), the metadata key-value pairs, one info record per tensor
// (name, dims, ggml type, offset), zero padding to the alignment (metadata
// key general.alignment, 32 by default), then the tensor data, each tensor
// at an aligned offset from the start of the data section. All numbers are
// little-endian.
//
// Dims are in ggml order: Dims[0] is the row length (the fastest-varying
// index), Dims[1] the number of rows, and so on.
//
// Open maps the file read-only and hands out tensor data as zero-copy slices
// of the mapping; Parse does the same over a byte slice. Every count, length
// and offset is checked against the bytes actually present before it is used,
// so a damaged or hostile file gives an error naming the file and the fault,
// never a panic or an allocation sized by an unchecked count.
package gguf

import (
	"fmt"
	"github.com/herd-llm/herd/internal/fileio"
	"math/bits"
	"slices"

	"github.com/herd-llm/herd/tensor"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// AlignmentKey is the metadata key that overrides DefaultAlignment (uint32).
const AlignmentKey = "general.alignment"

// MaxDims is the most dimensions a GGUF tensor may have.
const MaxDims = 4

// supportedTypes lists the tensor types Open accepts; files holding any
// other type are refused. Widen it as herd learns more block formats.
var supportedTypes = []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.Q8_0, tensor.Q4_0,
	tensor.Q4_1, tensor.Q5_0, tensor.Q5_1, tensor.Q2_K, tensor.Q3_K, tensor.Q4_K, tensor.Q5_K, tensor.Q6_K,
	tensor.Q8_K, tensor.IQ4_NL}

// Supported reports whether herd reads and writes GGUF tensors of type d.
func Supported(d tensor.DType) bool { return slices.Contains(supportedTypes, d) }

// File is a parsed GGUF file. Tensor data slices alias the file's mapping
// (or the bytes given to Parse) and are valid until Close.
type File struct {
	Path       string       // the file name given to Open or Parse
	Version    uint32       // 2 or 3
	Alignment  int          // data alignment in bytes
	DataOffset int64        // file offset of the tensor data section
	KV         []KV         // metadata in file order
	Tensors    []TensorInfo // tensor infos in file order

	kvIndex map[string]int
	tIndex  map[string]int
	unmap   func() error
	drop    func([]byte) // Release's, where Open mapped the file
}

// TensorInfo describes one tensor and holds its bytes.
type TensorInfo struct {
	Name   string
	Dims   []uint64     // ggml order: Dims[0] is the row length
	DType  tensor.DType // element type
	Offset uint64       // offset of the data from the start of the data section
	Data   []byte       // the tensor's bytes, a zero-copy view
}

// NumElements returns the product of the dims.
func (t *TensorInfo) NumElements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Close releases the file mapping. Tensor data must not be used afterwards;
// metadata stays valid.
func (f *File) Close() error {
	for i := range f.Tensors {
		f.Tensors[i].Data = nil
	}
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	if err != nil {
		return fmt.Errorf("gguf %s: close: %w", f.Path, err)
	}
	return nil
}

// Get returns the value stored under key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// GetString returns the string stored under key.
func (f *File) GetString(key string) (string, bool) { v, _ := f.Get(key); return v.AsString() }

// GetUint returns the non-negative integer (of any integer type) stored under key.
func (f *File) GetUint(key string) (uint64, bool) { v, _ := f.Get(key); return v.AsUint() }

// GetInt returns the integer (of any integer type) stored under key.
func (f *File) GetInt(key string) (int64, bool) { v, _ := f.Get(key); return v.AsInt() }

// GetFloat returns the float32 or float64 stored under key.
func (f *File) GetFloat(key string) (float64, bool) { v, _ := f.Get(key); return v.AsFloat() }

// GetBool returns the bool stored under key.
func (f *File) GetBool(key string) (bool, bool) { v, _ := f.Get(key); return v.AsBool() }

// GetStrings returns the string array stored under key (shared, read-only).
func (f *File) GetStrings(key string) ([]string, bool) { v, _ := f.Get(key); return v.AsStrings() }

// GetFloat32s returns the float32 array stored under key (shared, read-only).
func (f *File) GetFloat32s(key string) ([]float32, bool) { v, _ := f.Get(key); return v.AsFloat32s() }

// GetInt32s returns the int32 array stored under key (shared, read-only).
func (f *File) GetInt32s(key string) ([]int32, bool) { v, _ := f.Get(key); return v.AsInt32s() }

// Tensor returns the tensor named name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// Open maps the GGUF file at path read-only and parses it. Call Close when
// done with the tensor data.
func Open(path string) (*File, error) {
	data, unmap, drop, err := fileio.MapDroppable(path)
	if err != nil {
		return nil, fmt.Errorf("gguf %s: %w", path, err)
	}
	f, err := Parse(path, data)
	if err != nil {
		_ = unmap()
		return nil, err
	}
	f.unmap, f.drop = unmap, drop
	return f, nil
}

// Release tells the system that the bytes b of a tensor (a slice of a
// TensorInfo's Data) will not be read again soon: where Open mapped the
// file, the pages wholly inside b leave the process's resident memory (a
// model that copied a tensor into a new layout keeps only the copy). The
// bytes stay valid; reading them again reads the file.
func (f *File) Release(b []byte) {
	if f.drop != nil {
		f.drop(b)
	}
}

// tensorBytes returns the size in bytes of a tensor of type d with the given
// dims, refusing overflow and rows that are not whole blocks.
func tensorBytes(d tensor.DType, dims []uint64) (int64, error) {
	if len(dims) == 0 || len(dims) > MaxDims {
		return 0, fmt.Errorf("%d dims (want 1 to %d)", len(dims), MaxDims)
	}
	n := uint64(1)
	for _, x := range dims {
		hi, lo := bits.Mul64(n, x)
		if hi != 0 || lo > 1<<62 {
			return 0, fmt.Errorf("dims %v overflow the element count", dims)
		}
		n = lo
	}
	if dims[0] > 1<<31 {
		return 0, fmt.Errorf("row length %d is too large", dims[0])
	}
	return d.Bytes(int64(n), int(dims[0]))
}

func alignUp(x int64, a int) int64 {
	if r := x % int64(a); r != 0 {
		return x + int64(a) - r
	}
	return x
}
