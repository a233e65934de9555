// Package pytorch reads the state dicts torch.save writes (PyTorch's zip
// archive format since 1.6: pytorch_model.bin, Meta's consolidated.NN.pth):
// a zip holding ARCHIVE/data.pkl, a pickle describing the tensors, and
// ARCHIVE/data/KEY, the raw little-endian bytes of each storage.
//
// The pickle is run by a restricted machine that knows only the opcodes and
// the globals a state dict needs (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 and _rebuild_parameter, the torch.XStorage
// types). Any other global (os.system, builtins.eval, a model class) or
// opcode is refused with an error before anything is built: loading a
// checkpoint never executes code from it. Tensors' bytes are read on demand,
// one at a time, with ReadAt from the archive's stored entries.
package pytorch

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/herd-llm/herd/format/safetensors"
)

// DType is an element type, spelled as safetensors spells it.
type DType = safetensors.DType

// The element types of torch storages.
const (
	F32  = safetensors.F32
	F64  = safetensors.F64
	F16  = safetensors.F16
	BF16 = safetensors.BF16
	I64  = safetensors.I64
	I32  = safetensors.I32
	I16  = safetensors.I16
	I8   = safetensors.I8
	U8   = safetensors.U8
	BOOL = safetensors.BOOL
)

// maxPickle is the largest data.pkl read (a 65B model's index is ~100 KB).
const maxPickle = 256 << 20

// Tensor is one entry of a state dict: a view of a storage.
type Tensor struct {
	Name   string
	DType  DType
	Shape  []int64
	Stride []int64 // elements
	Offset int64   // elements into the storage
	store  *storage
}

// NumElements is the product of the shape.
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Contiguous reports whether the view is row-major without gaps.
func (t *Tensor) Contiguous() bool {
	want := int64(1)
	for i := len(t.Shape) - 1; i >= 0; i-- {
		if t.Shape[i] != 1 && t.Stride[i] != want {
			return false
		}
		want *= t.Shape[i]
	}
	return true
}

// File is an open torch.save archive.
type File struct {
	Path    string
	Tensors []Tensor // in the order of the state dict
	byName  map[string]int
	f       *os.File
	r       io.ReaderAt
	records map[string]*zip.File
}

// Open reads the archive's directory and its pickle. Close releases it.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	pf, err := parse(path, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	pf.f = f
	return pf, nil
}

// Parse reads a torch.save archive held in b (for tests and fuzzing).
func Parse(name string, b []byte) (*File, error) {
	return parse(name, bytes.NewReader(b), int64(len(b)))
}

func parse(name string, r io.ReaderAt, size int64) (*File, error) {
	fail := func(format string, a ...any) (*File, error) {
		return nil, fmt.Errorf("pytorch %s: "+format, append([]any{name}, a...)...)
	}
	var head [4]byte
	if _, err := r.ReadAt(head[:], 0); err != nil || string(head[:2]) != "PK" {
		if err == nil && head[0] == 0x80 {
			return fail("a legacy (pre-1.6, non-zip) torch.save file; re-save it with a current torch or convert it to safetensors")
		}
		return fail("not a zip archive (torch.save writes one since PyTorch 1.6)")
	}
	z, err := zip.NewReader(r, size)
	if err != nil {
		return fail("%v", err)
	}
	pf := &File{Path: name, r: r, records: map[string]*zip.File{}, byName: map[string]int{}}
	var pkl *zip.File
	prefix := ""
	for _, e := range z.File {
		if strings.HasSuffix(e.Name, "/data.pkl") && strings.Count(e.Name, "/") == 1 {
			if pkl != nil {
				return fail("two data.pkl records")
			}
			pkl, prefix = e, strings.TrimSuffix(e.Name, "data.pkl")
		}
	}
	if pkl == nil {
		return fail("no ARCHIVE/data.pkl record")
	}
	for _, e := range z.File {
		if k, ok := strings.CutPrefix(e.Name, prefix+"data/"); ok {
			pf.records[k] = e
		}
		if e.Name == prefix+"byteorder" {
			b, err := readRecord(e, 16)
			if err != nil {
				return fail("byteorder: %v", err)
			}
			if string(b) != "little" {
				return fail("byteorder %q: only little-endian archives are read", b)
			}
		}
	}
	data, err := readRecord(pkl, maxPickle)
	if err != nil {
		return fail("%s: %v", pkl.Name, err)
	}
	v, err := unpickle(data)
	if err != nil {
		return fail("%s: %w", pkl.Name, err)
	}
	if err := pf.stateDict(v); err != nil {
		return fail("%w", err)
	}
	return pf, nil
}

// readRecord reads a whole (small) record.
func readRecord(e *zip.File, limit int64) ([]byte, error) {
	if e.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%d bytes, more than the limit of %d", e.UncompressedSize64, limit)
	}
	rc, err := e.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, limit))
}

// stateDict takes the tensors out of the unpickled value: a dict of
// names to tensors (a top-level {"state_dict": …} or {"model": …} wrapper is
// looked through).
func (pf *File) stateDict(v any) error {
	d, ok := v.(*dict)
	if !ok {
		return fmt.Errorf("the pickle holds a %s, not a state dict", typeName(v))
	}
	if len(d.keys) == 1 {
		if k, _ := d.keys[0].(string); k == "state_dict" || k == "model" {
			if inner, ok := d.vals[k].(*dict); ok {
				d = inner
			}
		}
	}
	for _, k := range d.keys {
		name, ok := k.(string)
		if !ok {
			return fmt.Errorf("state dict key %v is a %s, not a string", k, typeName(k))
		}
		t, ok := d.vals[k].(*Tensor)
		if !ok {
			return fmt.Errorf("state dict entry %q is a %s, not a tensor", name, typeName(d.vals[k]))
		}
		rec, ok := pf.records[t.store.key]
		if !ok {
			return fmt.Errorf("tensor %q: storage record data/%s is missing", name, t.store.key)
		}
		if need := uint64(t.store.numel) * uint64(t.DType.Size()); rec.UncompressedSize64 < need {
			return fmt.Errorf("tensor %q: storage data/%s holds %d bytes, its %d elements of %s need %d", name, t.store.key,
				rec.UncompressedSize64, t.store.numel, t.DType, need)
		}
		tt := *t
		tt.Name = name
		pf.byName[name] = len(pf.Tensors)
		pf.Tensors = append(pf.Tensors, tt)
	}
	return nil
}

// Tensor returns the tensor called name.
func (pf *File) Tensor(name string) (*Tensor, bool) {
	i, ok := pf.byName[name]
	if !ok {
		return nil, false
	}
	return &pf.Tensors[i], true
}

// Close releases the file.
func (pf *File) Close() error {
	if pf.f == nil {
		return nil
	}
	f := pf.f
	pf.f = nil
	return f.Close()
}

// Read returns the tensor's elements, row-major and contiguous, as
// little-endian bytes (a strided view is gathered).
func (pf *File) Read(t *Tensor) ([]byte, error) {
	rec := pf.records[t.store.key]
	es := int64(t.DType.Size())
	lo, hi := t.span()
	if t.NumElements() == 0 {
		return []byte{}, nil
	}
	raw := make([]byte, (hi-lo)*es)
	if err := pf.readAt(rec, raw, lo*es); err != nil {
		return nil, fmt.Errorf("pytorch %s: tensor %s: %w", pf.Path, t.Name, err)
	}
	if t.Contiguous() {
		return raw, nil
	}
	out := make([]byte, t.NumElements()*es)
	idx := make([]int64, len(t.Shape))
	for o := int64(0); o < int64(len(out)); o += es {
		var src int64
		for i, x := range idx {
			src += x * t.Stride[i]
		}
		src += t.Offset - lo
		copy(out[o:o+es], raw[src*es:(src+1)*es])
		for i := len(idx) - 1; i >= 0; i-- {
			if idx[i]++; idx[i] < t.Shape[i] {
				break
			}
			idx[i] = 0
		}
	}
	return out, nil
}

// span is the range of storage elements [lo, hi) the view touches.
func (t *Tensor) span() (lo, hi int64) {
	lo, hi = t.Offset, t.Offset+1
	for i, d := range t.Shape {
		if d == 0 {
			return t.Offset, t.Offset
		}
		hi += (d - 1) * t.Stride[i]
	}
	return lo, hi
}

// readAt reads len(p) bytes at offset off of a record: straight from the
// file for a stored (uncompressed) record, as torch writes them, otherwise
// by decompressing up to it.
func (pf *File) readAt(rec *zip.File, p []byte, off int64) error {
	if rec.Method == zip.Store {
		base, err := rec.DataOffset()
		if err != nil {
			return err
		}
		sr := io.NewSectionReader(pf.r, base+off, int64(len(p)))
		_, err = io.ReadFull(sr, p)
		return err
	}
	rc, err := rec.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return err
	}
	_, err = io.ReadFull(rc, p)
	return err
}

// call applies one of the allowed globals to its arguments.
func call(g global, args tuple) (any, error) {
	switch g.module + "." + g.name {
	case "collections.OrderedDict":
		if len(args) != 0 {
			return nil, fmt.Errorf("takes no arguments here, got %d", len(args))
		}
		return newDict(), nil
	case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
		return rebuildTensor(args)
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		if len(args) < 1 {
			return nil, fmt.Errorf("no arguments")
		}
		t, ok := args[0].(*Tensor)
		if !ok {
			return nil, fmt.Errorf("data is a %s, not a tensor", typeName(args[0]))
		}
		return t, nil
	}
	return nil, fmt.Errorf("is not callable")
}

// rebuildTensor is _rebuild_tensor_v2(storage, storage_offset, size,
// stride, requires_grad, backward_hooks[, metadata]).
func rebuildTensor(args tuple) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("%d arguments, want at least 4", len(args))
	}
	st, ok := args[0].(*storage)
	if !ok {
		return nil, fmt.Errorf("storage is a %s", typeName(args[0]))
	}
	off, ok := args[1].(int64)
	if !ok || off < 0 {
		return nil, fmt.Errorf("storage offset %v is not a non-negative int", args[1])
	}
	shape, err := ints(args[2])
	if err != nil {
		return nil, fmt.Errorf("size: %w", err)
	}
	stride, err := ints(args[3])
	if err != nil {
		return nil, fmt.Errorf("stride: %w", err)
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("size %v and stride %v differ in length", shape, stride)
	}
	t := &Tensor{DType: st.dtype, Shape: shape, Stride: stride, Offset: off, store: st}
	n := int64(1)
	for _, d := range shape {
		if d != 0 && n > (1<<50)/d {
			return nil, fmt.Errorf("size %v is absurd", shape)
		}
		n *= d
	}
	if n > st.numel {
		return nil, fmt.Errorf("view of size %v has more elements than its storage of %d (an expanded view; save a contiguous copy)", shape, st.numel)
	}
	if lo, hi := t.span(); n > 0 && (hi > st.numel || lo > hi) {
		return nil, fmt.Errorf("view of size %v, stride %v at offset %d reaches element %d of a storage of %d", shape, stride, off, hi-1, st.numel)
	}
	return t, nil
}

// ints reads a tuple of non-negative ints (a size or a stride).
func ints(v any) ([]int64, error) {
	t, ok := v.(tuple)
	if !ok {
		return nil, fmt.Errorf("a %s, not a tuple", typeName(v))
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 || n > 1<<40 {
			return nil, fmt.Errorf("element %d (%v) is not a non-negative int", i, x)
		}
		out[i] = n
	}
	return out, nil
}
