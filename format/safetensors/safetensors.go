// Package safetensors reads and writes the safetensors format (Hugging
// Face): an 8-byte little-endian header length, a JSON header naming each
// tensor's dtype, shape and byte range, then the tensors' bytes, little
// endian and row-major. PEFT stores adapters in it
// (adapter_model.safetensors).
//
// The reader maps the file and validates the header strictly: a JSON object
// with no duplicate names, known dtypes, shapes whose element count matches
// the byte range, ranges inside the data that tile it without holes or
// overlaps, and __metadata__ holding only strings. Tensors' bytes alias the
// mapping.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/tensor"
)

// DType is a safetensors element type, as its header spells it.
type DType string

// The element types of the format.
const (
	BOOL    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	F8E5M2  DType = "F8_E5M2"
	F8E4M3  DType = "F8_E4M3"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	F64     DType = "F64"
	I64     DType = "I64"
	U64     DType = "U64"
	metaKey       = "__metadata__"
)

// Size is the number of bytes of one element, 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E5M2, F8E4M3:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case F64, I64, U64:
		return 8
	}
	return 0
}

// MaxHeader is the largest header accepted, in bytes (the reference
// implementation's limit).
const MaxHeader = 100 << 20

// Tensor is one tensor of a file: its name, dtype, shape and bytes (Data
// aliases the file's mapping when read).
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Float32 expands an F32, F16 or BF16 tensor into a new float32 slice.
func (t *Tensor) Float32() ([]float32, error) {
	n := int(t.NumElements())
	out := make([]float32, n)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = tensor.F16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = tensor.BF16ToF32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	default:
		return nil, fmt.Errorf("tensor %s: dtype %s is not a float type herd converts (F32, F16, BF16)", t.Name, t.DType)
	}
	return out, nil
}

// File is a parsed safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	Tensors  []Tensor // in the order of their bytes in the file
	byName   map[string]int
	unmap    func() error
}

// Open maps path and parses it. Close releases the mapping.
func Open(path string) (*File, error) {
	b, unmap, err := fileio.Map(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors %s: %w", path, err)
	}
	f, err := Parse(path, b)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// Close releases the file's mapping; the tensors' Data must not be used
// after it.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	u := f.unmap
	f.unmap = nil
	return u()
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (*Tensor, bool) {
	i, ok := f.byName[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// header is one tensor's header entry.
type header struct {
	DType       DType   `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// Parse reads a safetensors file held in b; name is used in errors. The
// tensors' Data alias b.
func Parse(name string, b []byte) (*File, error) {
	fail := func(format string, a ...any) (*File, error) {
		return nil, fmt.Errorf("safetensors %s: %s", name, fmt.Sprintf(format, a...))
	}
	if len(b) < 8 {
		return fail("%d bytes: too short for the 8-byte header length", len(b))
	}
	hn := binary.LittleEndian.Uint64(b)
	if hn > MaxHeader {
		return fail("header of %d bytes exceeds the limit of %d", hn, MaxHeader)
	}
	if hn > uint64(len(b)-8) {
		return fail("header of %d bytes but the file has %d after the length", hn, len(b)-8)
	}
	hb := b[8 : 8+hn]
	data := b[8+hn:]
	ts, meta, err := layout(hb, int64(len(data)))
	if err != nil {
		return fail("%v", err)
	}
	f := &File{Path: name, Metadata: meta, byName: make(map[string]int, len(ts))}
	for _, p := range ts {
		p.t.Data = data[p.begin:p.end:p.end]
		f.byName[p.t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, p.t)
	}
	return f, nil
}

// placed is a tensor's header entry with its byte range in the data.
type placed struct {
	t          Tensor
	begin, end int64
}

// layout validates a header (hb) for a data section of dataLen bytes and
// returns the tensors (without Data) sorted by offset.
func layout(hb []byte, dataLen int64) ([]placed, map[string]string, error) {
	fail := func(format string, a ...any) ([]placed, map[string]string, error) {
		return nil, nil, fmt.Errorf(format, a...)
	}
	if len(hb) == 0 || hb[0] != '{' {
		return fail("header does not start with '{'")
	}
	entries, meta, err := parseHeader(hb)
	if err != nil {
		return fail("header: %v", err)
	}
	ts := make([]placed, 0, len(entries))
	for _, e := range entries {
		h := e.h
		if h.DType.Size() == 0 {
			return fail("tensor %q: unknown dtype %q", e.name, h.DType)
		}
		if len(h.DataOffsets) != 2 {
			return fail("tensor %q: data_offsets has %d values, want 2", e.name, len(h.DataOffsets))
		}
		begin, end := h.DataOffsets[0], h.DataOffsets[1]
		if begin < 0 || end < begin || end > dataLen {
			return fail("tensor %q: data_offsets [%d, %d] outside the %d data bytes", e.name, begin, end, dataLen)
		}
		if h.Shape == nil {
			return fail("tensor %q: no shape", e.name)
		}
		n := int64(1)
		for _, d := range h.Shape {
			if d < 0 {
				return fail("tensor %q: negative dimension in shape %v", e.name, h.Shape)
			}
			if d != 0 && n > (end-begin)/d {
				n = -1 // more elements than bytes: reported below
				break
			}
			n *= d
		}
		if n < 0 || n*int64(h.DType.Size()) != end-begin {
			return fail("tensor %q: shape %v of %s does not fill data_offsets [%d, %d]", e.name, h.Shape, h.DType, begin, end)
		}
		ts = append(ts, placed{Tensor{Name: e.name, DType: h.DType, Shape: h.Shape}, begin, end})
	}
	// the ranges must tile the data exactly: sorted by offset, each starts
	// where the previous one ended, and the last ends with the file
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].begin != ts[j].begin {
			return ts[i].begin < ts[j].begin
		}
		if ts[i].end != ts[j].end {
			return ts[i].end < ts[j].end
		}
		return ts[i].t.Name < ts[j].t.Name // empty tensors at one offset
	})
	var at int64
	for _, p := range ts {
		if p.begin != at {
			if p.begin < at {
				return fail("tensor %q: data_offsets [%d, %d] overlap the previous tensor's bytes", p.t.Name, p.begin, p.end)
			}
			return fail("tensor %q: data_offsets [%d, %d] leave a hole at bytes %d..%d", p.t.Name, p.begin, p.end, at, p.begin)
		}
		at = p.end
	}
	if at != dataLen {
		return fail("%d data bytes after the last tensor", dataLen-at)
	}
	return ts, meta, nil
}

type entry struct {
	name string
	h    header
}

// parseHeader decodes the header object token by token, so that duplicate
// names and values of the wrong kind are errors rather than silently
// overwritten or ignored.
func parseHeader(hb []byte) ([]entry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	var (
		out  []entry
		meta map[string]string
		seen = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("key %v is not a string", tok)
		}
		if seen[key] {
			return nil, nil, fmt.Errorf("%q appears twice", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("%q: %w", key, err)
		}
		if key == metaKey {
			if err := strictUnmarshal(raw, &meta); err != nil {
				return nil, nil, fmt.Errorf("%s: want an object of strings: %w", metaKey, err)
			}
			continue
		}
		var h header
		if err := strictUnmarshal(raw, &h); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", key, err)
		}
		out = append(out, entry{key, h})
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	// after the object only the padding spaces writers add may follow
	if strings.Trim(string(hb[dec.InputOffset():]), " ") != "" {
		return nil, nil, errors.New("bytes other than spaces after the header object")
	}
	return out, meta, nil
}

// strictUnmarshal decodes raw into v, rejecting unknown fields.
func strictUnmarshal(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

func half(dt DType, x float32) uint16 {
	if dt == BF16 {
		return tensor.F32ToBF16(x)
	}
	return tensor.F32ToF16(x)
}
