package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sort"

	"github.com/herd-llm/herd/tensor"
)

// maxNesting is how deep arrays of arrays may nest.
const maxNesting = 8

// decoder walks the header of a GGUF file, checking every read against the
// bytes left.
type decoder struct {
	name string
	b    []byte
	off  int
	ctx  string // what is being read, e.g. `key "general.name"`, for errors
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("gguf %s: "+format, append([]any{d.name}, args...)...)
}

// left is the number of unread bytes.
func (d *decoder) left() uint64 { return uint64(len(d.b) - d.off) }

// at names the current context and field for an error.
func (d *decoder) at(what string) string {
	if d.ctx == "" {
		return what
	}
	return d.ctx + ": " + what
}

// take returns the next n bytes.
func (d *decoder) take(n uint64, what string) ([]byte, error) {
	if n > d.left() {
		return nil, d.errorf("%s at offset %d needs %d bytes, %d left (truncated file)", d.at(what), d.off, n, d.left())
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	p, err := d.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(p), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	p, err := d.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(p), nil
}

func (d *decoder) str(what string) (string, error) {
	n, err := d.u64(what)
	if err != nil {
		return "", err
	}
	if n > d.left() {
		return "", d.errorf("%s at offset %d: length %d exceeds the %d bytes left", d.at(what), d.off-8, n, d.left())
	}
	p, _ := d.take(n, what)
	return string(p), nil
}

// count reads an element count and checks that count elements of at least
// minSize bytes each fit in what is left of the file.
func (d *decoder) count(what string, minSize int) (int, error) {
	at := d.off
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(n, uint64(max(minSize, 1)))
	if hi != 0 || lo > d.left() {
		return 0, d.errorf("%s at offset %d is %d: cannot fit in the %d bytes left", d.at(what), at, n, d.left())
	}
	return int(n), nil
}

// value reads a value of type t.
func (d *decoder) value(t ValueType, depth int) (Value, error) {
	switch t {
	case TypeString:
		s, err := d.str("string")
		return Value{t, s}, err
	case TypeArray:
		return d.array(depth)
	case TypeBool:
		p, err := d.take(1, "bool")
		if err != nil {
			return Value{}, err
		}
		if p[0] > 1 {
			return Value{}, d.errorf("%s at offset %d is %d, not 0 or 1", d.at("bool"), d.off-1, p[0])
		}
		return Value{t, p[0] == 1}, nil
	}
	sz := t.size()
	if sz <= 0 {
		return Value{}, d.errorf("%s at offset %d", d.at(fmt.Sprintf("unknown value type %d", uint32(t))), d.off-4)
	}
	p, err := d.take(uint64(sz), typeNames[t])
	if err != nil {
		return Value{}, err
	}
	var v any
	switch t {
	case TypeUint8:
		v = p[0]
	case TypeInt8:
		v = int8(p[0])
	case TypeUint16:
		v = binary.LittleEndian.Uint16(p)
	case TypeInt16:
		v = int16(binary.LittleEndian.Uint16(p))
	case TypeUint32:
		v = binary.LittleEndian.Uint32(p)
	case TypeInt32:
		v = int32(binary.LittleEndian.Uint32(p))
	case TypeFloat32:
		v = math.Float32frombits(binary.LittleEndian.Uint32(p))
	case TypeUint64:
		v = binary.LittleEndian.Uint64(p)
	case TypeInt64:
		v = int64(binary.LittleEndian.Uint64(p))
	case TypeFloat64:
		v = math.Float64frombits(binary.LittleEndian.Uint64(p))
	}
	return Value{t, v}, nil
}

func (d *decoder) array(depth int) (Value, error) {
	if depth >= maxNesting {
		return Value{}, d.errorf("%s: arrays nested deeper than %d", d.ctx, maxNesting)
	}
	et, err := d.u32("array element type")
	if err != nil {
		return Value{}, err
	}
	t := ValueType(et)
	if t.minSize() < 0 {
		return Value{}, d.errorf("%s at offset %d", d.at(fmt.Sprintf("unknown array element type %d", et)), d.off-4)
	}
	n, err := d.count("array count", t.minSize())
	if err != nil {
		return Value{}, err
	}
	var p []byte
	if sz := t.size(); sz > 0 {
		p, _ = d.take(uint64(n*sz), "")
	}
	var v any
	switch t {
	case TypeUint8:
		a := make([]uint8, n)
		copy(a, p)
		v = a
	case TypeInt8:
		a := make([]int8, n)
		for i := range a {
			a[i] = int8(p[i])
		}
		v = a
	case TypeBool:
		a := make([]bool, n)
		for i := range a {
			if p[i] > 1 {
				return Value{}, d.errorf("%s: bool array element %d is %d, not 0 or 1", d.ctx, i, p[i])
			}
			a[i] = p[i] == 1
		}
		v = a
	case TypeUint16:
		a := make([]uint16, n)
		for i := range a {
			a[i] = binary.LittleEndian.Uint16(p[2*i:])
		}
		v = a
	case TypeInt16:
		a := make([]int16, n)
		for i := range a {
			a[i] = int16(binary.LittleEndian.Uint16(p[2*i:]))
		}
		v = a
	case TypeUint32:
		a := make([]uint32, n)
		for i := range a {
			a[i] = binary.LittleEndian.Uint32(p[4*i:])
		}
		v = a
	case TypeInt32:
		a := make([]int32, n)
		for i := range a {
			a[i] = int32(binary.LittleEndian.Uint32(p[4*i:]))
		}
		v = a
	case TypeFloat32:
		a := make([]float32, n)
		for i := range a {
			a[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
		}
		v = a
	case TypeUint64:
		a := make([]uint64, n)
		for i := range a {
			a[i] = binary.LittleEndian.Uint64(p[8*i:])
		}
		v = a
	case TypeInt64:
		a := make([]int64, n)
		for i := range a {
			a[i] = int64(binary.LittleEndian.Uint64(p[8*i:]))
		}
		v = a
	case TypeFloat64:
		a := make([]float64, n)
		for i := range a {
			a[i] = math.Float64frombits(binary.LittleEndian.Uint64(p[8*i:]))
		}
		v = a
	case TypeString:
		a := make([]string, n)
		for i := range a {
			s, err := d.str("array element")
			if err != nil {
				return Value{}, err
			}
			a[i] = s
		}
		v = a
	case TypeArray:
		a := make([]Value, n)
		for i := range a {
			e, err := d.array(depth + 1)
			if err != nil {
				return Value{}, err
			}
			a[i] = e
		}
		v = a
	}
	return Value{TypeArray, v}, nil
}

// Parse parses a GGUF file held in data; name labels errors and File.Path.
// Tensor data slices alias data.
func Parse(name string, data []byte) (*File, error) {
	d := &decoder{name: name, b: data}
	magic, err := d.take(4, "magic")
	if err != nil {
		return nil, err
	}
	if string(magic) != Magic {
		return nil, d.errorf("not a GGUF file: magic %q, want %q", magic, Magic)
	}
	version, err := d.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case version == 1:
		return nil, d.errorf("GGUF version 1 is not supported (32-bit counts); convert the file to version 3")
	case version != 0 && version&0xffff == 0 && bits.ReverseBytes32(version) <= 3:
		return nil, d.errorf("big-endian GGUF files are not supported")
	case version != 2 && version != 3:
		return nil, d.errorf("unsupported GGUF version %d (want 2 or 3)", version)
	}
	// A tensor info takes at least 32 bytes (name length, one dim, type,
	// offset) and a key-value pair at least 13 (key length, type, one byte).
	nTensors, err := d.count("tensor count", 32)
	if err != nil {
		return nil, err
	}
	nKV, err := d.count("metadata count", 13)
	if err != nil {
		return nil, err
	}
	f := &File{
		Path:      name,
		Version:   version,
		Alignment: DefaultAlignment,
		KV:        make([]KV, 0, nKV),
		kvIndex:   make(map[string]int, nKV),
	}
	for i := 0; i < nKV; i++ {
		d.ctx = fmt.Sprintf("metadata key %d", i)
		key, err := d.str("length")
		if err != nil {
			return nil, err
		}
		if _, dup := f.kvIndex[key]; dup {
			return nil, d.errorf("duplicate metadata key %q", key)
		}
		d.ctx = fmt.Sprintf("key %q", key)
		t, err := d.u32("type")
		if err != nil {
			return nil, err
		}
		v, err := d.value(ValueType(t), 0)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{key, v})
	}
	if v, ok := f.Get(AlignmentKey); ok {
		a, isU32 := v.Any().(uint32)
		if !isU32 {
			return nil, d.errorf("%s is a %s, want uint32", AlignmentKey, v.Type)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, d.errorf("%s is %d, want a power of two", AlignmentKey, a)
		}
		f.Alignment = int(a)
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tIndex = make(map[string]int, nTensors)
	sizes := make([]int64, 0, nTensors)
	for i := 0; i < nTensors; i++ {
		d.ctx = fmt.Sprintf("tensor %d", i)
		tname, err := d.str("name")
		if err != nil {
			return nil, err
		}
		if _, dup := f.tIndex[tname]; dup {
			return nil, d.errorf("duplicate tensor name %q", tname)
		}
		d.ctx = fmt.Sprintf("tensor %q", tname)
		nd, err := d.u32("dim count")
		if err != nil {
			return nil, err
		}
		if nd == 0 || nd > MaxDims {
			return nil, d.errorf("tensor %q has %d dims (want 1 to %d)", tname, nd, MaxDims)
		}
		dims := make([]uint64, nd)
		for j := range dims {
			if dims[j], err = d.u64(fmt.Sprintf("dim %d", j)); err != nil {
				return nil, err
			}
		}
		typ, err := d.u32("type")
		if err != nil {
			return nil, err
		}
		dt := tensor.DType(typ)
		if !Supported(dt) {
			return nil, d.errorf("unsupported tensor type %s in tensor %s", dt, tname)
		}
		off, err := d.u64("offset")
		if err != nil {
			return nil, err
		}
		if off%uint64(f.Alignment) != 0 {
			return nil, d.errorf("tensor %q: offset %d is not a multiple of the alignment %d", tname, off, f.Alignment)
		}
		size, err := tensorBytes(dt, dims)
		if err != nil {
			return nil, d.errorf("tensor %q: %v", tname, err)
		}
		f.tIndex[tname] = len(f.Tensors)
		f.Tensors = append(f.Tensors, TensorInfo{Name: tname, Dims: dims, DType: dt, Offset: off})
		sizes = append(sizes, size)
	}

	f.DataOffset = alignUp(int64(d.off), f.Alignment)
	var dataLen uint64
	if f.DataOffset < int64(len(data)) {
		dataLen = uint64(int64(len(data)) - f.DataOffset)
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset > dataLen || uint64(sizes[i]) > dataLen-t.Offset {
			return nil, d.errorf("tensor %q: data [%d, +%d) runs past the end of the file (%d data bytes)", t.Name, t.Offset, sizes[i], dataLen)
		}
		start := f.DataOffset + int64(t.Offset)
		t.Data = data[start : start+sizes[i] : start+sizes[i]]
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return f.Tensors[order[a]].Offset < f.Tensors[order[b]].Offset })
	last := -1 // the non-empty tensor ending furthest so far
	var end uint64
	for _, i := range order {
		if sizes[i] == 0 {
			continue
		}
		if last >= 0 && f.Tensors[i].Offset < end {
			return nil, d.errorf("tensors %q and %q overlap", f.Tensors[last].Name, f.Tensors[i].Name)
		}
		last, end = i, f.Tensors[i].Offset+uint64(sizes[i])
	}
	return f, nil
}
