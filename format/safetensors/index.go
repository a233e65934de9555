package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Entry is one tensor of a file read by OpenIndex: its header entry and
// where its bytes lie in the file.
type Entry struct {
	Name   string
	DType  DType
	Shape  []int64
	Offset int64 // from the start of the file
	Size   int64 // bytes
}

// Index is a safetensors file whose header has been read and validated
// (as Parse validates it) but whose tensors are read only on demand, with
// ReadAt: memory holds the tensors a caller reads, not the file.
type Index struct {
	Path     string
	Metadata map[string]string
	Entries  []Entry // in the order of their bytes
	byName   map[string]int
	f        *os.File
}

// OpenIndex reads the header of the safetensors file at path. Close
// releases the file.
func OpenIndex(path string) (*Index, error) {
	fail := func(format string, a ...any) (*Index, error) {
		return nil, fmt.Errorf("safetensors %s: %s", path, fmt.Sprintf(format, a...))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ix, err := readIndex(path, f)
	if err != nil {
		f.Close()
		return fail("%v", err)
	}
	ix.f = f
	return ix, nil
}

func readIndex(path string, f *os.File) (*Index, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var n [8]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return nil, fmt.Errorf("too short for the 8-byte header length")
	}
	hn := binary.LittleEndian.Uint64(n[:])
	if hn > MaxHeader || hn > uint64(st.Size()-8) {
		return nil, fmt.Errorf("header of %d bytes: over the limit of %d or past the end of the file", hn, MaxHeader)
	}
	hb := make([]byte, hn)
	if _, err := io.ReadFull(f, hb); err != nil {
		return nil, err
	}
	base := 8 + int64(hn)
	ts, meta, err := layout(hb, st.Size()-base)
	if err != nil {
		return nil, err
	}
	ix := &Index{Path: path, Metadata: meta, byName: make(map[string]int, len(ts))}
	for _, p := range ts {
		ix.byName[p.t.Name] = len(ix.Entries)
		ix.Entries = append(ix.Entries, Entry{Name: p.t.Name, DType: p.t.DType, Shape: p.t.Shape, Offset: base + p.begin, Size: p.end - p.begin})
	}
	return ix, nil
}

// Entry returns the tensor called name.
func (ix *Index) Entry(name string) (*Entry, bool) {
	i, ok := ix.byName[name]
	if !ok {
		return nil, false
	}
	return &ix.Entries[i], true
}

// Read reads one tensor's bytes into a new slice.
func (ix *Index) Read(e *Entry) ([]byte, error) {
	b := make([]byte, e.Size)
	if _, err := ix.f.ReadAt(b, e.Offset); err != nil {
		return nil, fmt.Errorf("safetensors %s: tensor %s: %w", ix.Path, e.Name, err)
	}
	return b, nil
}

// Close releases the file.
func (ix *Index) Close() error {
	if ix.f == nil {
		return nil
	}
	f := ix.f
	ix.f = nil
	return f.Close()
}
