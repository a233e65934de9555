package gguf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// TestAddTensorFunc writes tensors produced while writing and reads them
// back; a failing or mis-sized producer fails the write and leaves no file.
func TestAddTensorFunc(t *testing.T) {
	w := NewWriter()
	a := tensor.BytesOfF32([]float32{1, 2, 3, 4, 5, 6})
	calls := 0
	if err := w.AddTensorFunc("a", tensor.F32, []uint64{3, 2}, func() ([]byte, error) { calls++; return a, nil }); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("b", tensor.F32, []uint64{1}, tensor.BytesOfF32([]float32{7})); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "x.gguf")
	if err := w.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if calls != 1 || len(f.Tensors) != 2 || !bytes.Equal(f.Tensors[0].Data, a) || f.Tensors[1].Data[3] != 0x40 {
		t.Fatalf("calls %d, tensors %+v", calls, f.Tensors)
	}
	for _, fill := range []func() ([]byte, error){
		func() ([]byte, error) { return nil, errors.New("boom") },
		func() ([]byte, error) { return a[:4], nil },
	} {
		w := NewWriter()
		if err := w.AddTensorFunc("a", tensor.F32, []uint64{3, 2}, fill); err != nil {
			t.Fatal(err)
		}
		q := filepath.Join(t.TempDir(), "y.gguf")
		if err := w.WriteFile(q); err == nil {
			t.Error("a failing producer wrote a file")
		}
		if _, err := os.Stat(q); err == nil {
			t.Error("a half-written file was left")
		}
	}
}
