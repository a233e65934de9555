package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/herd-llm/herd/internal/fileio"
)

// Encode writes meta and tensors, in the given order, as a safetensors
// stream: the header padded with spaces to a multiple of 8 bytes, then each
// tensor's bytes. Every tensor is checked as Parse would check it.
func Encode(w io.Writer, meta map[string]string, tensors []Tensor) error {
	hdr := make(map[string]any, len(tensors)+1)
	if len(meta) > 0 {
		hdr[metaKey] = meta
	}
	var off int64
	for _, t := range tensors {
		if t.Name == metaKey || t.Name == "" {
			return fmt.Errorf("safetensors: tensor name %q is not allowed", t.Name)
		}
		if _, dup := hdr[t.Name]; dup {
			return fmt.Errorf("safetensors: tensor %q given twice", t.Name)
		}
		if t.DType.Size() == 0 {
			return fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
			}
		}
		if want := t.NumElements() * int64(t.DType.Size()); want != int64(len(t.Data)) {
			return fmt.Errorf("safetensors: tensor %q: shape %v of %s needs %d bytes, have %d", t.Name, t.Shape, t.DType, want, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		hdr[t.Name] = header{DType: t.DType, Shape: shape, DataOffsets: []int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	hb, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("safetensors: header: %w", err)
	}
	if pad := (8 - len(hb)%8) % 8; pad > 0 {
		hb = append(hb, bytes.Repeat([]byte{' '}, pad)...)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(hb)))
	bw.Write(n[:])
	bw.Write(hb)
	for _, t := range tensors {
		bw.Write(t.Data)
	}
	return bw.Flush()
}

// WriteFile writes a safetensors file atomically (a temporary file renamed
// into place).
func WriteFile(path string, meta map[string]string, tensors []Tensor) error {
	if err := fileio.WriteAtomic(path, func(w io.Writer) error { return Encode(w, meta, tensors) }); err != nil {
		return fmt.Errorf("safetensors %s: %w", path, err)
	}
	return nil
}

// FromFloat32 is a tensor of dtype F32, F16 or BF16 holding v (converted).
func FromFloat32(name string, dt DType, shape []int64, v []float32) (Tensor, error) {
	t := Tensor{Name: name, DType: dt, Shape: shape}
	switch dt {
	case F32:
		t.Data = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(x))
		}
	case F16, BF16:
		t.Data = make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(t.Data[2*i:], half(dt, x))
		}
	default:
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: cannot store floats as %s", name, dt)
	}
	if t.NumElements() != int64(len(v)) {
		return Tensor{}, fmt.Errorf("safetensors: tensor %q: shape %v for %d values", name, shape, len(v))
	}
	return t, nil
}
