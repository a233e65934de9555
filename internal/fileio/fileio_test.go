package fileio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.bin")
	if err := WriteAtomic(p, func(w io.Writer) error { _, err := w.Write([]byte("old")); return err }); err != nil {
		t.Fatal(err)
	}
	// a failing write leaves the old file and no temporary behind
	boom := errors.New("boom")
	if err := WriteAtomic(p, func(w io.Writer) error { w.Write([]byte("half")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("file holds %q after a failed write", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries left in the directory", len(ents))
	}
	b, unmap, err := Map(p)
	if err != nil || string(b) != "old" {
		t.Fatalf("Map: %q, %v", b, err)
	}
	if err := unmap(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Map(dir); err == nil {
		t.Error("mapped a directory")
	}
}
